//! The top-level modules of this crate depend on each other in one direction
//! only: a cycle between them (say `broker` using `cluster` while `cluster`
//! uses `broker`) means neither can be read, tested or moved without the
//! other. This test reads the sources, builds the graph of `crate::<module>`
//! references (and `super::` paths that climb to the crate root) between
//! top-level modules, and fails naming the first cycle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// One source file: its top-level module, its depth below the crate root
/// (`a.rs` and `a/mod.rs` are 1, `a/b.rs` is 2) and its text.
struct Source {
    path: PathBuf,
    top: String,
    depth: usize,
    text: String,
}

fn sources(dir: &Path, root: &Path, found: &mut Vec<Source>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, root, found);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let relative = path.strip_prefix(root).expect("under the root");
        let parts: Vec<String> = relative
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let top = parts[0].clone();
        if parts.len() == 1 && matches!(top.as_str(), "lib" | "main" | "module_graph") {
            continue;
        }
        let depth = parts.len() - usize::from(parts.last().is_some_and(|p| p == "mod"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        found.push(Source {
            path: relative.to_owned(),
            top,
            depth,
            text,
        });
    }
}

/// `text` without `//` comments (doc links are no dependency).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first path segment at `rest`: one identifier, or each item's first
/// identifier of a `{…}` group.
fn first_segments(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        let mut names = Vec::new();
        let mut depth = 0usize;
        let mut item_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && depth == 0 && is_ident(c) => {
                    let end = group[i..]
                        .find(|c| !is_ident(c))
                        .map_or(group.len(), |n| i + n);
                    names.push(group[i..end].to_owned());
                    item_start = false;
                }
                _ => {}
            }
        }
        names
    } else {
        let end = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
        vec![rest[..end].to_owned()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// The names that `code`, in a file `depth` levels below the crate root, uses
/// as top-level modules: `crate::name`, and `super::…::name` climbing to the root.
fn referenced_names(code: &str, depth: usize) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let starts_path =
        |at: usize| !code[..at].ends_with(|c: char| is_ident(c) || c == '$' || c == ':');
    for (at, _) in code.match_indices("crate::") {
        if starts_path(at) {
            names.extend(first_segments(code[at + "crate::".len()..].trim_start()));
        }
    }
    for (at, _) in code.match_indices("super::") {
        if !starts_path(at) {
            continue;
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = after;
        }
        // Inside an inline `mod tests` one more `super` is needed: counting
        // `>=` may see a module too many, never one too few.
        if climbs >= depth {
            names.extend(first_segments(rest.trim_start()));
        }
    }
    names
}

/// The graph between the top-level modules under `root`, and for each edge the
/// files that make it.
fn top_level_graph(root: &Path) -> (Graph, BTreeMap<(String, String), Vec<PathBuf>>) {
    let mut found = Vec::new();
    sources(root, root, &mut found);
    let tops: BTreeSet<String> = found.iter().map(|s| s.top.clone()).collect();
    let mut graph = Graph::new();
    let mut witnesses: BTreeMap<(String, String), Vec<PathBuf>> = BTreeMap::new();
    for source in &found {
        graph.entry(source.top.clone()).or_default();
        for name in referenced_names(&code(&source.text), source.depth) {
            if name != source.top && tops.contains(&name) {
                graph
                    .entry(source.top.clone())
                    .or_default()
                    .insert(name.clone());
                witnesses
                    .entry((source.top.clone(), name))
                    .or_default()
                    .push(source.path.clone());
            }
        }
    }
    (graph, witnesses)
}

/// A cycle of `graph`, as the path `a, b, …, a`; `None` when it has none.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        graph: &'a Graph,
        node: &'a str,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(node, Mark::Open);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let from = path.iter().position(|n| *n == next).expect("on the path");
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|n| n.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(graph, next, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if !marks.contains_key(node.as_str())
            && let Some(cycle) = visit(graph, node, &mut marks, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (graph, witnesses) = top_level_graph(&root);
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = cycle
            .windows(2)
            .map(|pair| {
                let files = &witnesses[&(pair[0].clone(), pair[1].clone())];
                format!("  {} -> {}: {files:?}", pair[0], pair[1])
            })
            .collect();
        panic!(
            "the top-level modules form a cycle: {}\n{}",
            cycle.join(" -> "),
            edges.join("\n")
        );
    }
}

#[test]
fn finds_a_cycle_only_where_there_is_one() {
    let graph = |edges: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph
                .entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])),
        None
    );
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "d"), ("d", "b")])),
        Some(vec!["b".into(), "c".into(), "d".into(), "b".into()])
    );
    assert_eq!(
        find_cycle(&graph(&[("x", "y"), ("y", "x")])),
        Some(vec!["x".into(), "y".into(), "x".into()])
    );
}

#[test]
fn reads_crate_and_super_paths() {
    let snippet = "use crate::{a::X, b, c::{d, e}};\n\
                use super::super::f::G;\n\
                use super::h;\n\
                fn go() { crate::i::run(); $crate::j::k(); other_crate::l::m(); }";
    let names: Vec<String> = referenced_names(snippet, 2).into_iter().collect();
    assert_eq!(names, ["a", "b", "c", "f", "i"]);
    let names: Vec<String> = referenced_names("use super::h;", 1).into_iter().collect();
    assert_eq!(names, ["h"]);
    assert!(referenced_names(&code("// crate::a\n/// [`crate::b`]"), 1).is_empty());
}
