//! The docs cite only files that exist: every `path/like/this.rs` (or `.md`,
//! `.sh`, `.lua`, `.toml`) in a code span of the crates' sources, their
//! docs and the README names a file of the repository.

use std::path::{Path, PathBuf};

const EXTENSIONS: &[&str] = &[".rs", ".md", ".sh", ".lua", ".toml"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "md") {
            out.push(path);
        }
    }
}

/// Paths in backticks: `a/b.rs`, `tests/tests/x.rs::name` (the part before `::`).
fn cited_paths(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|span| span.split("::").next().unwrap_or("").trim().to_owned())
        .filter(|p| {
            p.contains('/')
                && !p.contains(' ')
                && !p.contains("://")
                && !p.contains('*')
                && !p.contains('{')
                && EXTENSIONS.iter().any(|e| p.ends_with(e))
        })
        .collect()
}

#[test]
fn every_file_the_docs_cite_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut sources = vec![root.join("README.md"), root.join("CHANGELOG.md")];
    for dir in ["qtasks/src", "qtasks/docs", "qtasks-macros/src", "qtasks-plugins/src", "benches/README.md"] {
        let path = root.join(dir);
        if path.is_dir() {
            files(&path, &mut sources);
        } else {
            sources.push(path);
        }
    }
    let bases = [
        root.clone(),
        root.join("qtasks"),
        root.join("qtasks/src"),
        root.join("qtasks-macros/src"),
        root.join("tests"),
    ];
    let mut missing = Vec::new();
    for source in &sources {
        let text = std::fs::read_to_string(source).unwrap();
        for cited in cited_paths(&text) {
            let here = source.parent().unwrap().join(&cited);
            if !here.exists() && !bases.iter().any(|b| b.join(&cited).exists()) {
                missing.push(format!("{} cites `{cited}`", source.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(missing.is_empty(), "files cited in the docs that do not exist:\n{}", missing.join("\n"));
}
