//! The code's layout, as docs/ARCHITECTURE.md describes it: the modules of `src/` import one
//! another without circles, so that what two modules share lives below both.
//!
//! Reads every `crate::…` and `super::…` path in `src/` (in `use` items and in code), takes
//! the module each names (the longest prefix that is a module), and looks for a circle in
//! the graph of who imports whom.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src/`, by path (`commands::print`), with its source.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).expect("below src").with_extension("");
            let mut parts: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = if parts == ["main"] { "crate".to_owned() } else { parts.join("::") };
            found.insert(name, std::fs::read_to_string(&path).expect("read source"));
        }
    }
    found
}

/// The paths `source` names from the crate's root: `crate::a::b`, `crate::{a, b::c}`, and
/// `super::x` (read against `module`).
fn paths(module: &str, source: &str) -> Vec<Vec<String>> {
    let parent: Vec<&str> = module.split("::").filter(|p| *p != "crate").collect();
    let parent = &parent[..parent.len().saturating_sub(1)];
    let mut out = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.to_vec())] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                for item in expand(rest) {
                    let mut path: Vec<String> = base.iter().map(|s| (*s).to_owned()).collect();
                    path.extend(item);
                    out.push(path);
                }
            }
        }
    }
    out
}

/// The paths of a use tree at the start of `text`: `a::b`, `a::{b, c::{d, e}}`.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        rest = &rest[name.len()..];
        if !name.is_empty() {
            prefix.push(name);
        }
        if let Some(after) = rest.strip_prefix("::") {
            rest = after;
            continue;
        }
        break;
    }
    let Some(inner) = rest.strip_prefix('{') else { return vec![prefix] };
    // The items of the group, split at the commas of this level.
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&inner[start..at]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.into_iter().flat_map(expand).map(|tail| prefix.iter().cloned().chain(tail).collect()).collect()
}

/// The module a path names: its longest prefix that is a module.
fn module_of(path: &[String], modules: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|name| modules.contains_key(name))
}

/// Who imports whom, each module's own submodules and parents left out (those are
/// declarations and the way down, not imports).
fn graph(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, source) in modules {
        let targets = edges.entry(name.clone()).or_default();
        for path in paths(name, source) {
            let Some(target) = module_of(&path, modules) else { continue };
            let nested = target.starts_with(&format!("{name}::")) || name.starts_with(&format!("{target}::"));
            if target != *name && !nested {
                targets.insert(target);
            }
        }
    }
    edges
}

/// The circles: strongly connected components of more than one module (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(walk: &mut Walk<'a>, node: &'a str) {
        let n = walk.index.len();
        walk.index.insert(node, n);
        walk.low.insert(node, n);
        walk.stack.push(node);
        for next in walk.edges.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !walk.index.contains_key(next) {
                visit(walk, next);
                let low = walk.low[node].min(walk.low[next]);
                walk.low.insert(node, low);
            } else if walk.stack.contains(&next) {
                let low = walk.low[node].min(walk.index[next]);
                walk.low.insert(node, low);
            }
        }
        if walk.low[node] == walk.index[node] {
            let mut component = Vec::new();
            while let Some(top) = walk.stack.pop() {
                component.push(top.to_owned());
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                walk.found.push(component);
            }
        }
    }
    let mut walk =
        Walk { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for node in edges.keys() {
        if !walk.index.contains_key(node.as_str()) {
            visit(&mut walk, node);
        }
    }
    walk.found
}

#[test]
fn the_modules_import_one_another_without_circles() {
    let modules = modules();
    assert!(
        modules.contains_key("commands::print") && modules.contains_key("config"),
        "{:?}",
        modules.keys()
    );
    let edges = graph(&modules);
    let found = circles(&edges);
    let shown: Vec<String> = found
        .iter()
        .map(|c| {
            let inside: Vec<String> = c
                .iter()
                .flat_map(|a| edges[a].iter().filter(|b| c.contains(b)).map(move |b| format!("{a} -> {b}")))
                .collect();
            inside.join(", ")
        })
        .collect();
    assert!(found.is_empty(), "import circles:\n{}", shown.join("\n"));
}

#[test]
fn the_checker_finds_a_circle_and_reads_grouped_and_relative_paths() {
    let modules: BTreeMap<String, String> = [
        ("a", "use crate::{b::Thing, c};\nuse crate::f::{g, h::{i, j}};"),
        ("b", "fn f() { super::a::g() }"),
        ("c", "use crate::d;"),
        ("d", "pub fn free() {}"),
        ("e", "use crate::e::inner; let url = \"https://crate::a\";"),
        ("e::inner", "use crate::a;"),
        ("f", ""),
        ("f::h", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let edges = graph(&modules);
    assert_eq!(edges["a"], BTreeSet::from(["b", "c", "f", "f::h"].map(str::to_owned)));
    assert_eq!(edges["b"], BTreeSet::from(["a".to_owned()]));
    assert!(edges["e"].is_empty(), "a submodule, and a path inside a string after //: {:?}", edges["e"]);
    assert_eq!(circles(&edges), [vec!["a".to_owned(), "b".to_owned()]]);
}
