//! The module tree is the architecture: each top-level module of
//! `qtasks/src` uses only the modules below it in [`LAYERS`]. This test
//! reads the sources and fails on a use that goes up (which would make a
//! cycle between layers), naming the file and the module it reached.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// From the bottom up. A module may use the ones before it.
const LAYERS: &[&str] = &[
    "error", "trace", "model", "queue", "config", "task", "dispatch", "plugin", "backend", "app", "client", "runtime",
    "web", "cli", "testing",
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `X` of every `crate::X` in code (not in comments).
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let ident: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() {
                out.push(ident);
            }
            rest = after;
        }
    }
    out
}

/// Root re-exports (`pub use module::…::{A, B}`) mapped to their module.
fn root_items(lib: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    let lib = lib.replace('\n', " ");
    for statement in lib.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else { continue };
        let module = rest.split("::").next().unwrap_or("").trim().to_owned();
        let names = rest.rsplit("::").next().unwrap_or("");
        for name in names.trim_matches(|c| c == '{' || c == '}' || c == ' ').split(',') {
            let name = name.split(" as ").last().unwrap_or("").trim();
            if !name.is_empty() {
                items.insert(name.to_owned(), module.clone());
            }
        }
    }
    items
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let items = root_items(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let from =
            relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        let Some(level) = LAYERS.iter().position(|l| *l == from) else { continue };
        for path in crate_paths(&std::fs::read_to_string(&file).unwrap()) {
            let to = if LAYERS.contains(&path.as_str()) { Some(path.clone()) } else { items.get(&path).cloned() };
            let Some(to) = to else { continue };
            let Some(to_level) = LAYERS.iter().position(|l| *l == to) else { continue };
            if to_level > level {
                upward.insert(format!("{} uses `crate::{path}` (layer `{to}`, above `{from}`)", relative.display()));
            }
        }
    }
    assert!(upward.is_empty(), "uses that go up the layers:\n{}", upward.into_iter().collect::<Vec<_>>().join("\n"));
}
