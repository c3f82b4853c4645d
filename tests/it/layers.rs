//! Keeps the library's layers one-way: a module may import only the modules
//! below it in the README's layer list, and no two source files may reach
//! each other (directly or round a longer circle). The README's Layout
//! section is the single source of the order, and must name every file.
//!
//! Imports are read from the source text (`use` statements and `crate::`,
//! `super::`, `self::` paths in code), with comments, string literals and
//! `#[cfg(test)]` modules left out: a test module may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One library source file: its module path and the files it imports.
#[derive(Debug)]
struct SourceFile {
    module: Vec<String>,
    imports: BTreeSet<PathBuf>,
}

#[test]
fn layers_point_one_way_and_no_files_import_each_other() {
    let layers = declared_layers();
    let files = library_files();
    let mut problems = Vec::new();
    let top_modules: BTreeSet<&str> = files
        .values()
        .filter_map(|file| file.module.first().map(String::as_str))
        .collect();
    for module in &top_modules {
        if !layers.contains_key(*module) {
            problems.push(format!("src/{module} is in no layer of the README's `Layers` line"));
        }
    }
    for (path, file) in &files {
        let Some(own) = file.module.first() else { continue };
        for import in &file.imports {
            let Some(other) = files[import].module.first() else {
                continue;
            };
            if other == own {
                continue;
            }
            if let (Some(own_rank), Some(other_rank)) = (layers.get(own.as_str()), layers.get(other.as_str()))
                && other_rank >= own_rank
            {
                problems.push(format!(
                    "{} (layer `{own}`) imports {} (layer `{other}`), which is not below it in the README's \
                         `Layers` line",
                    path.display(),
                    import.display()
                ));
            }
        }
    }
    for circle in circles(&files) {
        let edges: Vec<String> = circle
            .iter()
            .flat_map(|path| {
                files[path]
                    .imports
                    .iter()
                    .filter(|import| circle.contains(import))
                    .map(move |import| format!("{} -> {}", path.display(), import.display()))
            })
            .collect();
        problems.push(format!(
            "these files import each other (a circle): {}",
            edges.join(", ")
        ));
    }
    assert!(problems.is_empty(), "layering problems:\n  {}", problems.join("\n  "));
}

#[test]
fn readme_layout_names_every_source_file() {
    let layout = readme_layout();
    let tree: Vec<&str> = layout
        .split("```")
        .nth(1)
        .expect("the Layout section has a code block")
        .lines()
        .collect();
    let mut missing = Vec::new();
    for path in library_files()
        .keys()
        .chain(std::iter::once(&PathBuf::from("src/main.rs")))
    {
        let parts: Vec<String> = path.iter().map(|part| part.to_string_lossy().into_owned()).collect();
        if !names_in_tree(&tree, &parts) {
            missing.push(path.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "the README's Layout section does not name these files under their folders: {missing:?}"
    );
}

/// Whether the tree names `parts` (`src`, folders..., file): each folder as
/// a line of its own (`name/`) among its parent's direct children, and the
/// file on that folder's line or among the lines below it that are
/// indented deeper; a `mod.rs` is named by its folder.
fn names_in_tree(tree: &[&str], parts: &[String]) -> bool {
    let (folders, file) = parts.split_at(parts.len() - 1);
    let mut heading_line = "";
    let mut contents: &[&str] = tree;
    for folder in folders {
        let heading = format!("{folder}/");
        let depth = contents
            .iter()
            .filter(|line| !line.trim().is_empty())
            .map(|line| indentation(line))
            .min();
        let Some(at) = contents
            .iter()
            .position(|line| Some(indentation(line)) == depth && line.trim_start().starts_with(&heading))
        else {
            return false;
        };
        let indent = indentation(contents[at]);
        let end = contents[at + 1..]
            .iter()
            .position(|line| !line.trim().is_empty() && indentation(line) <= indent)
            .map_or(contents.len(), |end| at + 1 + end);
        heading_line = contents[at];
        contents = &contents[at + 1..end];
    }
    file[0] == "mod.rs"
        || std::iter::once(&heading_line).chain(contents).any(|line| {
            line.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | ';' | '+'))
                .any(|word| word == file[0])
        })
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[test]
fn the_reader_sees_imports_the_compiler_sees() {
    let text = r#"
        use crate::a::{b::{self, C}, d};
        use super::e::F; // crate::not_this
        /* use crate::nor_this; */
        fn f() { let _ = "crate::nor_in_a_string"; crate::g::h(); child::i(); crate::j::child::k(); }
        #[cfg(test)]
        mod tests { use crate::only_in_tests; }
    "#;
    let paths = imported_paths(&strip(text), &["child".to_owned()]);
    assert_eq!(
        paths,
        vec![
            vec!["crate", "a", "b"],
            vec!["crate", "a", "b", "C"],
            vec!["crate", "a", "d"],
            vec!["super", "e", "F"],
            vec!["crate", "g", "h"],
            vec!["child", "i"],
            vec!["crate", "j", "child", "k"],
        ]
        .into_iter()
        .map(|path| path.into_iter().map(str::to_owned).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
}

#[test]
fn the_tree_scopes_files_to_their_folders() {
    let tree = ["src/", "  a/   x.rs (one), z.rs", "    b/  y.rs", "  c.rs   leaf"];
    let named = |path: &str| names_in_tree(&tree, &path.split('/').map(str::to_owned).collect::<Vec<_>>());
    assert!(named("src/a/x.rs") && named("src/a/z.rs") && named("src/a/b/y.rs") && named("src/c.rs"));
    assert!(named("src/a/mod.rs") && named("src/a/b/mod.rs"));
    assert!(!named("src/a/c.rs"), "c.rs is named outside a/");
    assert!(!named("src/b/y.rs"), "b/ is a folder of a/, not of src/");
    assert!(!named("src/a/b/x.rs"), "x.rs is named in a/, not in a/b/");
}

#[test]
fn circles_are_found_however_long() {
    let file = |imports: &[&str]| SourceFile {
        module: vec!["m".to_owned()],
        imports: imports.iter().map(PathBuf::from).collect(),
    };
    let files: BTreeMap<PathBuf, SourceFile> = [
        ("a", file(&["b"])),
        ("b", file(&["c"])),
        ("c", file(&["a"])),
        ("d", file(&["a"])),
        ("e", file(&[])),
    ]
    .into_iter()
    .map(|(name, file)| (PathBuf::from(name), file))
    .collect();
    assert_eq!(
        circles(&files),
        vec![vec![PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c")]]
    );
}

/// The README's `Layers` line: module names, highest first, joined by `>`.
/// Returns each module's rank, 0 for the lowest.
fn declared_layers() -> BTreeMap<String, usize> {
    let layout = readme_layout();
    let line = layout
        .lines()
        .find_map(|line| line.trim().strip_prefix("Layers, highest first:"))
        .expect("the README's Layout section has a `Layers, highest first: a > b > ...` line");
    let names: Vec<String> = line
        .split('>')
        .map(|name| name.trim().trim_end_matches('/').trim_end_matches(".rs").to_owned())
        .collect();
    let count = names.len();
    names
        .into_iter()
        .enumerate()
        .map(|(index, name)| (name, count - 1 - index))
        .collect()
}

fn readme_layout() -> String {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md is readable");
    let start = readme.find("\n## Layout").expect("the README has a Layout section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |end| end + 3);
    rest[..end].to_owned()
}

/// Every file of the library (`src/` without the binary's `main.rs`), by
/// path relative to the crate root, with its imports resolved to files.
fn library_files() -> BTreeMap<PathBuf, SourceFile> {
    let mut paths = Vec::new();
    collect_rs(&Path::new(ROOT).join("src"), &mut paths);
    let modules: BTreeMap<Vec<String>, PathBuf> = paths
        .iter()
        .filter(|path| !path.ends_with("src/main.rs"))
        .map(|path| (module_of(path), path.clone()))
        .collect();
    modules
        .iter()
        .map(|(module, path)| {
            let text = std::fs::read_to_string(Path::new(ROOT).join(path)).expect("source file is readable");
            let children: Vec<String> = modules
                .keys()
                .filter(|other| other.len() == module.len() + 1 && other.starts_with(module))
                .filter_map(|other| other.last().cloned())
                .collect();
            let imports = imported_paths(&strip(&text), &children)
                .into_iter()
                .filter_map(|import| resolve(module, path, &import, &modules))
                .filter(|target| target != path)
                .collect();
            (
                path.clone(),
                SourceFile {
                    module: module.clone(),
                    imports,
                },
            )
        })
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            out.push(path.strip_prefix(ROOT).expect("under the crate root").to_owned());
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` the root.
fn module_of(path: &Path) -> Vec<String> {
    let relative = path.strip_prefix("src").expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The file an import path lands in: the longest prefix of the absolute
/// path that is a module with a file. `None` for other crates.
fn resolve(
    module: &[String],
    path: &Path,
    import: &[String],
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<PathBuf> {
    let mut absolute: Vec<String> = match import.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self") => module.to_vec(),
        Some("super") => {
            let mut base = module.to_vec();
            base.pop();
            base
        }
        // `use child::Item` from the parent's file names a child module.
        Some(first) if modules.contains_key(&[module, &[first.to_owned()]].concat()) => {
            let _ = path;
            module.to_vec()
        }
        _ => return None,
    };
    let mut rest = &import[usize::from(matches!(import[0].as_str(), "crate" | "self" | "super"))..];
    while rest.first().map(String::as_str) == Some("super") {
        absolute.pop();
        rest = &rest[1..];
    }
    absolute.extend(rest.iter().cloned());
    (0..=absolute.len())
        .rev()
        .find_map(|length| modules.get(&absolute[..length]).cloned())
}

/// Groups of two or more files that reach one another (Tarjan's strongly
/// connected components).
fn circles(files: &BTreeMap<PathBuf, SourceFile>) -> Vec<Vec<PathBuf>> {
    struct Tarjan<'a> {
        files: &'a BTreeMap<PathBuf, SourceFile>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        found: Vec<Vec<PathBuf>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, path: &'a PathBuf) {
            let next = self.index.len();
            self.index.insert(path, next);
            self.low.insert(path, next);
            self.stack.push(path);
            self.on_stack.insert(path);
            for import in &self.files[path].imports {
                if !self.index.contains_key(import) {
                    self.visit(import);
                    let low = self.low[path].min(self.low[import]);
                    self.low.insert(path, low);
                } else if self.on_stack.contains(import) {
                    let low = self.low[path].min(self.index[import]);
                    self.low.insert(path, low);
                }
            }
            if self.low[path] == self.index[path] {
                let mut group = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    group.push(member.clone());
                    if member == path {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort();
                    self.found.push(group);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        files,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for path in files.keys() {
        if !tarjan.index.contains_key(path) {
            tarjan.visit(path);
        }
    }
    tarjan.found
}

/// The code without comments, string and char literals, and `#[cfg(test)]`
/// modules (each replaced by a space, so tokens stay apart).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < chars.len() {
        let rest = &chars[at..];
        if rest.starts_with(&['/', '/']) {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while at < chars.len() {
                if chars[at..].starts_with(&['/', '*']) {
                    depth += 1;
                    at += 2;
                } else if chars[at..].starts_with(&['*', '/']) {
                    depth -= 1;
                    at += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    at += 1;
                }
            }
            out.push(' ');
        } else if rest[0] == 'r' && matches!(rest.get(1), Some('"' | '#')) && !preceded_by_ident(&chars, at) {
            let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                out.push(rest[0]);
                at += 1;
                continue;
            }
            at += 2 + hashes;
            while at < chars.len() {
                if chars[at] == '"' && chars[at + 1..].iter().take(hashes).filter(|&&c| c == '#').count() == hashes {
                    at += 1 + hashes;
                    break;
                }
                at += 1;
            }
            out.push(' ');
        } else if rest[0] == '"' {
            at += 1;
            while at < chars.len() && chars[at] != '"' {
                at += if chars[at] == '\\' { 2 } else { 1 };
            }
            at += 1;
            out.push(' ');
        } else if rest[0] == '\'' && rest.get(2) == Some(&'\'') {
            at += 3;
            out.push(' ');
        } else if rest[0] == '\'' && rest.get(1) == Some(&'\\') {
            at += 2;
            while at < chars.len() && chars[at] != '\'' {
                at += 1;
            }
            at += 1;
            out.push(' ');
        } else {
            out.push(rest[0]);
            at += 1;
        }
    }
    drop_test_modules(&out)
}

fn preceded_by_ident(chars: &[char], at: usize) -> bool {
    at > 0 && (chars[at - 1].is_alphanumeric() || chars[at - 1] == '_')
}

/// Cuts every `#[cfg(test)] mod name { ... }` out of comment-free code.
fn drop_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(start) = rest.find("#[cfg(test)]") {
        let after = &rest[start + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_module = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let open = trimmed.find(['{', ';']);
        if !is_module || open.is_none_or(|open| trimmed.as_bytes()[open] == b';') {
            out.push_str(&rest[..start + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..start]);
        let body_start = after.len() - trimmed.len() + open.unwrap_or(0);
        let mut depth = 0usize;
        let mut end = after.len();
        for (offset, c) in after[body_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = body_start + offset + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every path a file names: `use` trees expanded, and `crate::`, `super::`
/// and `self::` paths in code.
fn imported_paths(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut prefixes: Vec<String> = ["crate::", "super::", "self::"].map(str::to_owned).to_vec();
    prefixes.extend(children.iter().map(|child| format!("{child}::")));
    let mut paths = Vec::new();
    let mut rest = code;
    loop {
        let next_use = find_word(rest, "use");
        let next_path = prefixes.iter().filter_map(|prefix| find_path_start(rest, prefix)).min();
        match (next_use, next_path) {
            (Some(at), path) if path.is_none_or(|path| at < path) => {
                let end = rest[at..].find(';').map_or(rest.len(), |end| at + end);
                expand_tree(&[], rest[at + 3..end].trim(), &mut paths);
                rest = &rest[end..];
            }
            (_, Some(at)) => {
                let length = rest[at..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len() - at);
                let path: Vec<String> = rest[at..at + length]
                    .split("::")
                    .filter(|part| !part.is_empty())
                    .map(str::to_owned)
                    .collect();
                paths.push(path);
                rest = &rest[at + length..];
            }
            _ => break,
        }
    }
    paths
}

/// The first place a path starting with `prefix` (`crate::`...) stands.
fn find_path_start(text: &str, prefix: &str) -> Option<usize> {
    let word = prefix.trim_end_matches(':');
    let mut from = 0;
    while let Some(found) = find_word(&text[from..], word) {
        let at = from + found;
        // Not the middle of a longer path (`crate::a::prefix::`).
        if text[at..].starts_with(prefix) && !text[..at].ends_with(':') {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The first place `word` stands as a whole word.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary(before) && (boundary(after) || after == Some(':')) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// `a::{b::{self, C}, d}` with `prefix` into `a::b`, `a::b::C`, `a::d`.
fn expand_tree(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect();
        let base = [prefix, &head].concat();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        for item in split_top_level(inner) {
            expand_tree(&base, item, out);
        }
        return;
    }
    let tree = tree.split(" as ").next().unwrap_or(tree).trim();
    let mut path = prefix.to_vec();
    for part in tree.split("::").map(str::trim).filter(|part| !part.is_empty()) {
        if part != "self" || path.is_empty() {
            path.push(part.to_owned());
        }
    }
    if path.last().map(String::as_str) == Some("*") {
        path.pop();
    }
    if !path.is_empty() {
        out.push(path);
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}
