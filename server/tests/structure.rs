//! The shape of the code base, checked: the server's top-level modules depend on each other
//! without a cycle (so each can be read, and changed, from its dependencies up), and no source
//! file of our crates is longer than a reader can hold — 600 lines of code before its unit tests.
//!
//! A dependency is a `crate::<module>` path in code (comments and doc comments are ignored, so
//! an intra-doc link is not a dependency). `lib.rs` and `main.rs`, which wire everything
//! together, are not nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Longest a source file may be, counting the lines before its `#[cfg(test)]` unit tests.
const MAX_CODE_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ sits in the workspace")
        .to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments (line comments, doc comments) and without its
/// `#[cfg(test)]` part.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect()
}

/// Top-level module of the server a file belongs to (`store` for `store/memory/tables.rs`).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

#[test]
fn server_modules_have_no_dependency_cycle() {
    let src = workspace().join("server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for line in code_lines(&text) {
            for part in line.split("crate::").skip(1) {
                let dep: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !dep.is_empty() && dep != module {
                    deps.insert(dep);
                }
            }
        }
    }
    let shown: Vec<String> = graph.iter().map(|(m, d)| format!("{m} -> {d:?}")).collect();
    eprintln!("{}", shown.join("\n"));
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            panic!("dependency cycle: {} -> {node}", path[at..].join(" -> "));
        }
        if !done.insert(node.to_owned()) {
            return;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            visit(dep, graph, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn no_source_file_is_longer_than_a_reader_can_hold() {
    let root = workspace();
    let mut files = Vec::new();
    for dir in [
        "server/src",
        "agent/src",
        "common/src",
        "vendor/tiny_http/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        // Files that hold only unit tests.
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
        .filter_map(|f| {
            let text = fs::read_to_string(f).unwrap();
            let n = code_lines(&text).len();
            (n > MAX_CODE_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_CODE_LINES} lines of code before the unit tests: {long:#?}"
    );
}

#[test]
fn comments_doc_links_and_unit_tests_are_not_dependencies() {
    let code =
        code_lines("use crate::a; // crate::b\n/// [`crate::c`]\n#[cfg(test)]\nuse crate::d;");
    assert_eq!(code.concat().matches("crate::").count(), 1);
}
