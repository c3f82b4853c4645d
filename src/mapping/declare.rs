//! Target profiles as people write them: TOML tables, checked into
//! [`TargetProfile`]s with every problem pointing at its file and line.
//!
//! The built-in profiles are the files of `targets/`, compiled in; the
//! config file's `[[targets]]` entries add profiles or replace a built-in
//! one of the same name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::profile::{
    AppIndex, ApplyMode, Blank, DateStorage, FieldKind, FieldSpec, IndexSpec, MergeRules, OnMissing, Reference,
    TargetProfile,
};
use super::record::MAX_FIELDS;
use super::values::labels::label_words;
use super::values::{EnumSpec, fold_label};

/// The built-in profiles: (file name, text).
const BUILT_IN: [(&str, &str); 2] = [
    (
        "targets/sales_records.toml",
        include_str!("../../targets/sales_records.toml"),
    ),
    ("targets/customers.toml", include_str!("../../targets/customers.toml")),
];

const KINDS: &str = "text, number, integer, date, month, enum, list, bool";

/// One `[[targets]]` table, or a built-in profile file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDecl {
    pub name: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    pub key: Spanned<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_link: Option<Spanned<String>>,
    /// `swap` (the default) or `merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_missing: Option<OnMissing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blank: Option<Blank>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dates: Option<DateStorage>,
    pub fields: Vec<FieldDecl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<ReferenceDecl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDecl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_indexes: Vec<AppIndexDecl>,
    /// Header labels of the sources that no field takes, on purpose: not
    /// reported as new columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_columns: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDecl {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Spanned<String>>,
    /// `month` fields: the date field an empty month is taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_from: Option<Spanned<String>>,
    /// `enum` fields: the accepted values, other spellings of them, and
    /// whether values carry a one-letter ordering prefix (`B Legals`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_aliases: Vec<Spanned<(String, String)>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub letter_prefixed: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceDecl {
    pub field: Spanned<String>,
    pub id_field: String,
    pub collection: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDecl {
    pub keys: Spanned<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppIndexDecl {
    pub collection: String,
    pub keys: Spanned<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
}

/// Where a declaration was read: a file and its text, to turn byte spans
/// into line numbers.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub file: &'a str,
    pub text: &'a str,
}

impl Origin<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count()
            + 1
    }
}

/// A problem with a profile declaration, where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DeclError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Every problems of some declarations, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DeclErrors(pub Vec<DeclError>);

impl fmt::Display for DeclErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// Collects problems with their lines while one declaration is checked.
struct Checker<'a> {
    origin: Origin<'a>,
    problems: Vec<DeclError>,
}

impl Checker<'_> {
    fn problem(&mut self, span: std::ops::Range<usize>, message: String) {
        self.problems.push(DeclError {
            file: self.origin.file.to_owned(),
            line: self.origin.line_of(span),
            message,
        });
    }
}

/// Checks one declaration and builds its profile.
pub fn build(decl: &TargetDecl, origin: Origin<'_>) -> Result<TargetProfile, DeclErrors> {
    let mut checker = Checker {
        origin,
        problems: Vec::new(),
    };
    let target = decl.name.get_ref();
    if target.trim().is_empty() {
        checker.problem(decl.name.span(), "a target needs a name".to_owned());
    }
    let fields: Vec<FieldSpec> = decl
        .fields
        .iter()
        .filter_map(|field| build_field(field, &mut checker))
        .collect();
    check_labels(decl, &mut checker);
    if decl.fields.len() > MAX_FIELDS {
        checker.problem(
            decl.name.span(),
            format!(
                "target {target:?} declares {} fields; at most {MAX_FIELDS} are supported",
                decl.fields.len()
            ),
        );
    }
    let declared = |name: &str| decl.fields.iter().any(|field| field.name.get_ref() == name);
    if decl.key.get_ref().is_empty() {
        checker.problem(decl.key.span(), format!("target {target:?} has an empty key"));
    }
    let field_named = |name: &str| decl.fields.iter().find(|field| field.name.get_ref() == name);
    for key in decl.key.get_ref() {
        match field_named(key.get_ref()) {
            None => checker.problem(
                key.span(),
                format!("key field {:?} is not a declared field", key.get_ref()),
            ),
            Some(field) if !field.required => {
                checker.problem(
                    key.span(),
                    format!("key field {:?} must be `required = true`", key.get_ref()),
                );
            }
            // Keys are compared as folded text.
            // (An unknown kind is reported once, with its field.)
            Some(field)
                if KINDS.split(", ").any(|kind| kind == field.kind.get_ref())
                    && !matches!(field.kind.get_ref().as_str(), "text" | "enum") =>
            {
                checker.problem(
                    key.span(),
                    format!("key field {:?} must be of kind text or enum", key.get_ref()),
                );
            }
            Some(_) => {}
        }
    }
    for field in &decl.fields {
        if let Some(reason) = unusable_field_name(field.name.get_ref()) {
            checker.problem(field.name.span(), format!("field {:?} {reason}", field.name.get_ref()));
        }
    }
    if let Some(link) = &decl.identity_link
        && !declared(link.get_ref())
    {
        checker.problem(
            link.span(),
            format!("identity_link {:?} is not a declared field", link.get_ref()),
        );
    }
    for field in &decl.fields {
        if let Some(source) = &field.derive_from {
            let is_date = decl
                .fields
                .iter()
                .any(|other| other.name.get_ref() == source.get_ref() && other.kind.get_ref() == "date");
            if !is_date {
                checker.problem(
                    source.span(),
                    format!("derive_from {:?} is not a date field", source.get_ref()),
                );
            }
        }
    }
    for reference in &decl.references {
        let name = reference.field.get_ref();
        let span = reference.field.span();
        match field_named(name) {
            None => checker.problem(
                span.clone(),
                format!("reference field {name:?} is not a declared field"),
            ),
            Some(field) if field.kind.get_ref() != "text" => checker.problem(
                span.clone(),
                format!("reference field {name:?} must be of kind text (a name or an e-mail)"),
            ),
            Some(_) => {}
        }
        if let Some(reason) = unusable_field_name(&reference.id_field) {
            checker.problem(
                span.clone(),
                format!("id_field {:?} of reference {name:?} {reason}", reference.id_field),
            );
        }
        if declared(&reference.id_field) {
            checker.problem(
                span.clone(),
                format!(
                    "id_field {:?} of reference {name:?} is also a mapped field",
                    reference.id_field
                ),
            );
        }
        if reference.collection.is_empty() || reference.collection.contains('$') {
            checker.problem(span, format!("reference {name:?} names no valid collection"));
        }
    }
    for keys in decl
        .indexes
        .iter()
        .map(|index| &index.keys)
        .chain(decl.app_indexes.iter().map(|index| &index.keys))
    {
        if keys.get_ref().is_empty() {
            checker.problem(keys.span(), "an index needs at least one key".to_owned());
        }
    }
    let apply = build_apply(decl, &mut checker);
    if !checker.problems.is_empty() {
        return Err(DeclErrors(checker.problems));
    }
    Ok(TargetProfile {
        name: target.clone(),
        collection: decl.collection.clone(),
        fields,
        key: decl.key.get_ref().iter().map(|key| key.get_ref().clone()).collect(),
        identity_link: decl.identity_link.as_ref().map(|link| link.get_ref().clone()),
        apply: apply.unwrap_or(ApplyMode::ReplaceCollection),
        ignore_columns: decl.ignore_columns.clone(),
        indexes: decl.indexes.iter().map(index_spec).collect(),
        app_indexes: decl
            .app_indexes
            .iter()
            .map(|index| AppIndex {
                collection: index.collection.clone(),
                index: IndexSpec {
                    keys: index.keys.get_ref().clone(),
                    unique: index.unique,
                    expire_after_seconds: None,
                },
            })
            .collect(),
    })
}

/// Why a field name cannot be written by a sync, if it cannot: the
/// identity and timestamps sheetsync manages, and names MongoDB reads as
/// paths or operators.
fn unusable_field_name(name: &str) -> Option<&'static str> {
    if ["_id", "id", "created_at", "updated_at"].contains(&name) {
        Some("is managed by sheetsync (identity and timestamps) and cannot be mapped from a sheet")
    } else if name.is_empty() || name.contains('.') || name.starts_with('$') || name.contains('\0') {
        Some("is not a usable document field name (empty, or with `.`, a leading `$` or NUL)")
    } else {
        None
    }
}

fn index_spec(index: &IndexDecl) -> IndexSpec {
    IndexSpec {
        keys: index.keys.get_ref().clone(),
        unique: index.unique,
        expire_after_seconds: index.expire_after_seconds,
    }
}

fn build_apply(decl: &TargetDecl, checker: &mut Checker<'_>) -> Option<ApplyMode> {
    let merge_only = decl.on_missing.is_some() || decl.blank.is_some() || decl.dates.is_some();
    match decl
        .apply
        .as_ref()
        .map(|apply| (apply.get_ref().as_str(), apply.span()))
    {
        None | Some(("swap", _)) => {
            if merge_only || !decl.references.is_empty() {
                checker.problem(
                    decl.name.span(),
                    "on_missing, blank, dates and references apply to `apply = \"merge\"` targets only".to_owned(),
                );
            }
            Some(ApplyMode::ReplaceCollection)
        }
        Some(("merge", _)) => Some(ApplyMode::Merge(MergeRules {
            on_missing: decl.on_missing.unwrap_or_default(),
            blank: decl.blank.unwrap_or_default(),
            dates: decl.dates.unwrap_or_default(),
            references: decl
                .references
                .iter()
                .map(|reference| Reference {
                    field: reference.field.get_ref().clone(),
                    id_field: reference.id_field.clone(),
                    collection: reference.collection.clone(),
                })
                .collect(),
        })),
        Some((other, span)) => {
            checker.problem(
                span,
                format!("unknown apply mode {other:?}; expected \"swap\" or \"merge\""),
            );
            None
        }
    }
}

fn build_field(field: &FieldDecl, checker: &mut Checker<'_>) -> Option<FieldSpec> {
    let name = field.name.get_ref();
    let kind = match field.kind.get_ref().as_str() {
        "text" => FieldKind::Text,
        "number" => FieldKind::Number,
        "integer" => FieldKind::Integer,
        "date" => FieldKind::Date,
        "list" => FieldKind::List,
        "bool" => FieldKind::Bool,
        "month" => FieldKind::Month {
            derive_from: field.derive_from.as_ref().map(|source| source.get_ref().clone()),
        },
        "enum" => {
            let spec = EnumSpec {
                values: field.values.clone(),
                value_aliases: field.value_aliases.iter().map(|pair| pair.get_ref().clone()).collect(),
                letter_prefixed: field.letter_prefixed,
            };
            check_enum(field, &spec, checker);
            FieldKind::Enum(spec)
        }
        other => {
            checker.problem(
                field.kind.span(),
                format!("field {name:?} has unknown kind {other:?}; expected one of {KINDS}"),
            );
            return None;
        }
    };
    let enum_only = !field.values.is_empty() || !field.value_aliases.is_empty() || field.letter_prefixed;
    if enum_only && !matches!(kind, FieldKind::Enum(_)) {
        checker.problem(
            field.kind.span(),
            format!("values and value_aliases are for enum fields, and {name:?} is not one"),
        );
    }
    if field.derive_from.is_some() && !matches!(kind, FieldKind::Month { .. }) {
        checker.problem(
            field.kind.span(),
            format!("derive_from is for month fields, and {name:?} is not one"),
        );
    }
    Some(FieldSpec {
        name: name.clone(),
        kind,
        aliases: field.aliases.iter().map(|alias| alias.get_ref().clone()).collect(),
        required: field.required,
    })
}

fn check_enum(field: &FieldDecl, spec: &EnumSpec, checker: &mut Checker<'_>) {
    let name = field.name.get_ref();
    if spec.values.is_empty() {
        checker.problem(field.kind.span(), format!("enum field {name:?} declares no values"));
    }
    for pair in &field.value_aliases {
        let (alias, value) = pair.get_ref();
        if !spec.values.contains(value) {
            checker.problem(
                pair.span(),
                format!("value alias {alias:?} of field {name:?} names {value:?}, which is not one of its values"),
            );
        }
    }
    for (spelling, value) in spec.clashes() {
        let span = field
            .value_aliases
            .iter()
            .find(|pair| pair.get_ref().0 == spelling)
            .map_or(field.kind.span(), Spanned::span);
        checker.problem(
            span,
            format!("duplicate value spelling {spelling:?} of field {name:?}: it already means {value:?}"),
        );
    }
}

/// Every header label (field names and aliases, folded) must select one
/// field, once.
fn check_labels(decl: &TargetDecl, checker: &mut Checker<'_>) {
    let mut seen: HashMap<String, &str> = HashMap::new();
    // Labels are also matched by their words (any order, little words
    // aside): two fields whose labels share them would make a header
    // ambiguous at sync time, so that is refused here, with the line.
    let mut words_seen: HashMap<String, &str> = HashMap::new();
    let mut names = HashMap::new();
    for field in &decl.fields {
        let name = field.name.get_ref();
        if names.insert(name.as_str(), ()).is_some() {
            checker.problem(field.name.span(), format!("field {name:?} is declared twice"));
            continue;
        }
        for label in std::iter::once(&field.name).chain(&field.aliases) {
            let folded = fold_label(label.get_ref());
            if folded.is_empty() {
                checker.problem(
                    label.span(),
                    format!("label {:?} has no letters or digits", label.get_ref()),
                );
                continue;
            }
            let words = label_words(label.get_ref());
            match words_seen.get(&words) {
                Some(owner) if !words.is_empty() && *owner != name.as_str() && !seen.contains_key(&folded) => {
                    checker.problem(
                        label.span(),
                        format!(
                            "label {:?} of field {name:?} has the same words as a label of field {owner:?}; a \
                             header could not tell them apart",
                            label.get_ref()
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    words_seen.insert(words, name.as_str());
                }
            }
            match seen.get(&folded) {
                Some(owner) => checker.problem(
                    label.span(),
                    format!(
                        "duplicate alias {:?} of field {name:?}: it reads as the same header as a label of field \
                         {owner:?}",
                        label.get_ref()
                    ),
                ),
                None => {
                    seen.insert(folded, name.as_str());
                }
            }
        }
    }
}

/// Where an effective profile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    BuiltIn(&'static str),
    Config { file: String, line: usize },
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::BuiltIn(file) => write!(f, "built in ({file})"),
            Provenance::Config { file, line } => write!(f, "{file}:{line}"),
        }
    }
}

/// One effective profile, with its declaration (for `sheetsync targets`).
#[derive(Debug, Clone)]
pub struct DeclaredProfile {
    pub profile: Arc<TargetProfile>,
    pub declaration: TargetDecl,
    pub provenance: Provenance,
}

/// The effective target profiles: the built-in ones, then the config's.
#[derive(Debug, Clone)]
pub struct Targets {
    declared: Vec<DeclaredProfile>,
}

static BUILT_IN_TARGETS: LazyLock<Targets> = LazyLock::new(|| match Targets::parse_built_in() {
    Ok(targets) => targets,
    // The files are compiled in and a unit test checks them, so this is a
    // build defect, not a runtime condition.
    Err(errors) => panic!("a built-in target profile is invalid:\n{errors}"),
});

impl Targets {
    /// The built-in profiles alone.
    pub fn built_in() -> Targets {
        BUILT_IN_TARGETS.clone()
    }

    fn parse_built_in() -> Result<Targets, DeclErrors> {
        let mut declared = Vec::new();
        for (file, text) in BUILT_IN {
            let declaration: TargetDecl = toml::from_str(text).map_err(|error| {
                DeclErrors(vec![DeclError {
                    file: file.to_owned(),
                    line: error.span().map_or(1, |span| Origin { file, text }.line_of(span)),
                    message: error.message().to_owned(),
                }])
            })?;
            let profile = build(&declaration, Origin { file, text })?;
            declared.push(DeclaredProfile {
                profile: Arc::new(profile),
                declaration,
                provenance: Provenance::BuiltIn(file),
            });
        }
        Ok(Targets { declared })
    }

    /// The built-in profiles with the config file's `[[targets]]` added or
    /// put in place of the built-in of the same name.
    pub fn with_config(declarations: &[TargetDecl], origin: Origin<'_>) -> Result<Targets, DeclErrors> {
        let mut targets = Targets::built_in();
        let mut problems = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        for declaration in declarations {
            let name = declaration.name.get_ref();
            if names.contains(&name.as_str()) {
                problems.push(DeclError {
                    file: origin.file.to_owned(),
                    line: origin.line_of(declaration.name.span()),
                    message: format!("target {name:?} is declared twice in this file"),
                });
                continue;
            }
            names.push(name);
            match build(declaration, origin) {
                Ok(profile) => {
                    let declared = DeclaredProfile {
                        profile: Arc::new(profile),
                        declaration: declaration.clone(),
                        provenance: Provenance::Config {
                            file: origin.file.to_owned(),
                            line: origin.line_of(declaration.name.span()),
                        },
                    };
                    match targets.declared.iter_mut().find(|known| known.profile.name == *name) {
                        Some(known) => *known = declared,
                        None => targets.declared.push(declared),
                    }
                }
                Err(DeclErrors(errors)) => problems.extend(errors),
            }
        }
        if problems.is_empty() {
            Ok(targets)
        } else {
            Err(DeclErrors(problems))
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<TargetProfile>> {
        self.declared
            .iter()
            .find(|declared| declared.profile.name == name)
            .map(|declared| Arc::clone(&declared.profile))
    }

    pub fn names(&self) -> Vec<&str> {
        self.declared
            .iter()
            .map(|declared| declared.profile.name.as_str())
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &DeclaredProfile> {
        self.declared.iter()
    }

    /// The sales dashboard's profile, as configured.
    pub fn sales_records(&self) -> Arc<TargetProfile> {
        match self.get(SALES_RECORDS_TARGET) {
            Some(profile) => profile,
            // `with_config` only ever replaces profiles, never removes one.
            None => Arc::clone(&BUILT_IN_TARGETS.declared[0].profile),
        }
    }
}

/// The name of the profile every sales view uses.
pub const SALES_RECORDS_TARGET: &str = "sales_records";

/// A built-in profile by name.
pub fn built_in(name: &str) -> Option<Arc<TargetProfile>> {
    BUILT_IN_TARGETS.get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<TargetProfile, String> {
        let declaration: TargetDecl = toml::from_str(text).map_err(|error| error.to_string())?;
        build(&declaration, Origin { file: "t.toml", text }).map_err(|errors| errors.to_string())
    }

    const MINIMAL: &str = "name = \"t\"\nkey = [\"a\"]\n\n[[fields]]\nname = \"a\"\nkind = \"text\"\nrequired = true\n";

    #[test]
    fn built_in_profiles_are_valid() {
        let targets = Targets::parse_built_in().unwrap();
        assert_eq!(targets.names(), ["sales_records", "customers"]);
    }

    #[test]
    fn a_minimal_profile_swaps() {
        let profile = check(MINIMAL).unwrap();
        assert_eq!(profile.apply, ApplyMode::ReplaceCollection);
        assert_eq!(profile.key, ["a"]);
    }

    #[test]
    fn problems_name_their_line() {
        let unknown_kind = MINIMAL.replace("kind = \"text\"", "kind = \"txt\"");
        assert_eq!(
            check(&unknown_kind).unwrap_err(),
            format!("t.toml:6: field \"a\" has unknown kind \"txt\"; expected one of {KINDS}")
        );
        let undeclared_key = MINIMAL.replace("key = [\"a\"]", "key = [\"a\", \"b\"]");
        assert_eq!(
            check(&undeclared_key).unwrap_err(),
            "t.toml:2: key field \"b\" is not a declared field"
        );
        let duplicate =
            format!("{MINIMAL}aliases = [\"x\"]\n\n[[fields]]\nname = \"b\"\nkind = \"text\"\naliases = [\"X \"]\n");
        assert_eq!(
            check(&duplicate).unwrap_err(),
            "t.toml:13: duplicate alias \"X \" of field \"b\": it reads as the same header as a label of field \"a\""
        );
        let same_words = format!(
            "{MINIMAL}aliases = [\"start date\"]\n\n[[fields]]\nname = \"b\"\nkind = \"text\"\naliases = [\"date of start\"]\n"
        );
        assert_eq!(
            check(&same_words).unwrap_err(),
            "t.toml:13: label \"date of start\" of field \"b\" has the same words as a label of field \"a\"; a header \
             could not tell them apart"
        );
    }

    #[test]
    fn keys_must_be_text_and_managed_fields_cannot_be_mapped() {
        let integer_key = MINIMAL.replace("kind = \"text\"", "kind = \"integer\"");
        assert_eq!(
            check(&integer_key).unwrap_err(),
            "t.toml:2: key field \"a\" must be of kind text or enum"
        );
        let id_field = format!("{MINIMAL}\n[[fields]]\nname = \"id\"\nkind = \"text\"\n");
        assert!(
            check(&id_field)
                .unwrap_err()
                .starts_with("t.toml:10: field \"id\" is managed by sheetsync"),
            "{}",
            check(&id_field).unwrap_err()
        );
    }

    #[test]
    fn config_profiles_replace_built_ins_and_report_every_problem() {
        let text = format!(
            "[[targets]]\n{}",
            MINIMAL
                .replace("name = \"t\"", "name = \"customers\"")
                .replace("[[fields]]", "[[targets.fields]]")
        );
        #[derive(Deserialize)]
        struct File {
            targets: Vec<TargetDecl>,
        }
        let file: File = toml::from_str(&text).unwrap();
        let targets = Targets::with_config(
            &file.targets,
            Origin {
                file: "c.toml",
                text: &text,
            },
        )
        .unwrap();
        assert_eq!(targets.get("customers").unwrap().fields.len(), 1);
        assert_eq!(targets.sales_records().name, "sales_records");

        let broken = format!("{text}\n[[targets]]\nname = \"x\"\nkey = [\"nope\"]\nfields = []\napply = \"upsert\"\n");
        let file: File = toml::from_str(&broken).unwrap();
        let errors = Targets::with_config(
            &file.targets,
            Origin {
                file: "c.toml",
                text: &broken,
            },
        )
        .unwrap_err();
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "c.toml:12: key field \"nope\" is not a declared field",
                "c.toml:14: unknown apply mode \"upsert\"; expected \"swap\" or \"merge\""
            ]
        );
    }
}
