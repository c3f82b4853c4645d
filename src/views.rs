//! The dashboard's views, read fresh from the `views` collection on every
//! sync (the admin UI edits it), resolved into what to read and where to write.

use futures_util::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};
use serde::Serialize;

use crate::config::Config;
use crate::mapping::conventions::ReadSettings;
use crate::redact::redact_url;
use crate::source::SourceSpec;
use crate::source::policy::SourcePolicy;
use crate::store::{Operation, StoreError, Within};

pub const VIEWS_COLLECTION: &str = "views";

/// The schema's `VIEW_COLLECTION_MAP`.
pub const DEFAULT_COLLECTIONS: [(&str, &str); 4] = [
    ("Organic", "sales_records"),
    ("Signal", "sales_records_signal"),
    ("Full Funnel", "sales_records_fullfunnel"),
    ("Market", "sales_records_market"),
];

/// One view and what sheetsync will do with it.
#[derive(Debug, Clone)]
pub struct ViewPlan {
    pub name: String,
    /// `views.id`, which `data_metadata.view_id` refers to.
    pub view_id: String,
    pub resolution: Resolution,
}

#[derive(Debug, Clone)]
pub enum Resolution {
    /// Ready to sync.
    Sync(SyncTarget),
    /// The Master view aggregates the others and has no collection of its own.
    Master,
    /// Cannot be synced as configured; the reason says what to change.
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct SyncTarget {
    pub collection: String,
    pub source: SourceSpec,
    /// The source as recorded in `data_metadata.source_url` (secrets redacted).
    pub source_url: String,
    /// How the source's cells are read.
    pub read_settings: ReadSettings,
}

/// A view as `sheetsync check` lists it.
#[derive(Debug, Serialize)]
pub struct ViewSummary {
    pub name: String,
    pub view_id: String,
    pub collection: Option<String>,
    pub source: Option<String>,
    pub status: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error(transparent)]
    Read(#[from] StoreError),
    #[error("view {0:?} is the Master view: it aggregates the others and has no collection to sync")]
    MasterSelected(String),
    #[error("unknown view(s) {unknown}; the views collection has: {available}")]
    Unknown { unknown: String, available: String },
}

/// Reads every view and resolves it against the config.
pub async fn load_plans(db: &Database, config: &Config) -> Result<Vec<ViewPlan>, ViewsError> {
    let views = db.collection::<Document>(VIEWS_COLLECTION);
    let describe = || format!("reading the `{VIEWS_COLLECTION}` collection");
    let documents: Vec<Document> = views
        .find(doc! {})
        .sort(doc! { "name": 1 })
        .within(Operation::Read, describe)
        .await?
        .try_collect()
        .within(Operation::Read, describe)
        .await?;
    let policy = SourcePolicy::new(&config.sources);
    let mut plans: Vec<ViewPlan> = documents.iter().map(|view| resolve(view, config, &policy)).collect();
    refuse_shared_targets(&mut plans);
    Ok(plans)
}

/// Two views writing one collection would overwrite each other's data at
/// every refresh; both are refused until the config separates them.
fn refuse_shared_targets(plans: &mut [ViewPlan]) {
    let collections: Vec<Option<String>> = plans
        .iter()
        .map(|plan| plan.target().map(|target| target.collection.clone()))
        .collect();
    for (index, collection) in collections.iter().enumerate() {
        let Some(collection) = collection else { continue };
        let sharing: Vec<&str> = collections
            .iter()
            .zip(plans.iter())
            .filter(|(other, _)| other.as_ref() == Some(collection))
            .map(|(_, plan)| plan.name.as_str())
            .collect();
        if sharing.len() > 1 {
            let reason = format!(
                "views {} all write collection `{collection}`; give each view its own collection in the config",
                sharing.join(", ")
            );
            plans[index].resolution = Resolution::Invalid(reason);
        }
    }
}

/// Collections the dashboard or sheetsync itself keeps: a view's target
/// replaces its collection wholesale, so it may never be one of these.
fn is_reserved_collection(name: &str) -> bool {
    name == VIEWS_COLLECTION
        || name.starts_with(crate::store::apply::STAGING_PREFIX)
        || crate::store::indexes::FIXED_INDEXES
            .iter()
            .any(|(collection, _)| *collection == name)
}

/// Keeps the named views (all when `names` is empty). Names match
/// case-insensitively; an unknown name is an error listing the known ones.
pub fn select(plans: Vec<ViewPlan>, names: &[String]) -> Result<Vec<ViewPlan>, ViewsError> {
    if names.is_empty() {
        return Ok(plans);
    }
    let unknown: Vec<&String> = names
        .iter()
        .filter(|name| !plans.iter().any(|plan| plan.name.eq_ignore_ascii_case(name)))
        .collect();
    if !unknown.is_empty() {
        return Err(ViewsError::Unknown {
            unknown: unknown
                .iter()
                .map(|name| format!("{name:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            available: plans
                .iter()
                .map(|plan| format!("{:?}", plan.name))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let selected: Vec<ViewPlan> = plans
        .into_iter()
        .filter(|plan| names.iter().any(|name| plan.name.eq_ignore_ascii_case(name)))
        .collect();
    if let Some(master) = selected.iter().find(|plan| plan.is_master()) {
        return Err(ViewsError::MasterSelected(master.name.clone()));
    }
    Ok(selected)
}

fn resolve(view: &Document, config: &Config, policy: &SourcePolicy) -> ViewPlan {
    let text = |field: &str| match view.get(field) {
        Some(Bson::String(value)) if !value.trim().is_empty() => Some(value.trim().to_owned()),
        _ => None,
    };
    let name = text("name").unwrap_or_default();
    let view_id = text("id").unwrap_or_default();
    let resolution = if view.get_bool("is_master").unwrap_or(false) {
        Resolution::Master
    } else if name.is_empty() || view_id.is_empty() {
        Resolution::Invalid(format!(
            "the view document {} has no `name` or no `id`; fix it in the admin UI",
            view.get_object_id("_id").map(|id| id.to_hex()).unwrap_or_default()
        ))
    } else {
        let overrides = config.views.get(&name).cloned().unwrap_or_default();
        let read_settings = ReadSettings {
            date_order: overrides.date_order.unwrap_or(config.sync.date_order),
            time_zone: config.time_zone,
        };
        match resolve_target(
            &name,
            overrides,
            text("sheet_url"),
            text("sheet_name"),
            read_settings,
            policy,
        ) {
            Ok(target) => Resolution::Sync(target),
            Err(reason) => Resolution::Invalid(reason),
        }
    };
    ViewPlan {
        name,
        view_id,
        resolution,
    }
}

fn resolve_target(
    name: &str,
    overrides: crate::config::ViewOverride,
    sheet_url: Option<String>,
    sheet_name: Option<String>,
    read_settings: ReadSettings,
    policy: &SourcePolicy,
) -> Result<SyncTarget, String> {
    let collection = overrides
        .collection
        .or_else(|| default_collection(name).map(str::to_owned))
        .ok_or_else(|| {
            format!("no collection is known for view {name:?}; set `collection` under [views.\"{name}\"] in the config")
        })?;
    if is_reserved_collection(&collection) {
        return Err(format!(
            "view {name:?} would replace `{collection}`, which holds other data; choose another collection"
        ));
    }
    let source = overrides.source.or(sheet_url).ok_or_else(|| {
        format!("view {name:?} has no sheet_url; set one in the admin UI or `source` under [views.\"{name}\"]")
    })?;
    let sheet_name = overrides.sheet_name.or(sheet_name);
    let spec = SourceSpec::parse(&source, sheet_name.as_deref()).map_err(|error| error.to_string())?;
    let spec = policy
        .admit(spec)
        .map_err(|refusal| format!("view {name:?}: {refusal}"))?;
    let source_url = match &spec {
        SourceSpec::CsvFile(_) => spec.describe(),
        _ => redact_url(&source),
    };
    Ok(SyncTarget {
        collection,
        source: spec,
        source_url,
        read_settings,
    })
}

pub fn default_collection(view_name: &str) -> Option<&'static str> {
    DEFAULT_COLLECTIONS
        .iter()
        .find(|(name, _)| *name == view_name)
        .map(|(_, collection)| *collection)
}

impl ViewPlan {
    /// What to read and where to write, for a view that can be synced.
    pub fn target(&self) -> Option<&SyncTarget> {
        match &self.resolution {
            Resolution::Sync(target) => Some(target),
            _ => None,
        }
    }

    pub fn is_master(&self) -> bool {
        matches!(self.resolution, Resolution::Master)
    }

    pub fn summary(&self) -> ViewSummary {
        let (collection, source, status) = match &self.resolution {
            Resolution::Sync(target) => (
                Some(target.collection.clone()),
                Some(target.source.describe()),
                format!("ok ({})", target.source.source_type().as_str()),
            ),
            Resolution::Master => (
                None,
                None,
                "master view: aggregates the others, never written".to_owned(),
            ),
            Resolution::Invalid(reason) => (None, None, format!("error: {reason}")),
        };
        ViewSummary {
            name: self.name.clone(),
            view_id: self.view_id.clone(),
            collection,
            source,
            status,
        }
    }
}
