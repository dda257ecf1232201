//! `cargo xtask cycles`: no module of a crate may depend, through `crate::` paths, on a module
//! that depends back on it. The check works on each crate's top-level modules (`src/<name>.rs`
//! or `src/<name>/`), reading every `crate::<name>` path in non-test code; a dependency cycle
//! among them is printed and fails the command (CI runs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The crates whose module graphs are checked.
pub const CRATES: [&str; 5] = [
    "bomf-bo",
    "bomf-data",
    "bomf-models",
    "bomf-core",
    "bomf-cli",
];

/// Top-level module → the top-level modules its non-test code names through `crate::`.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Checks every crate of [`CRATES`] under `root`; an error lists each cycle found.
pub fn check(root: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for name in CRATES {
        let graph = crate_graph(&root.join(name).join("src"))?;
        let found = cycles(&graph);
        if found.is_empty() {
            println!("{name}: {} modules, no cycle", graph.len());
        }
        for cycle in found {
            problems.push(format!("{name}: {}", cycle.join(" → ")));
        }
    }
    if !problems.is_empty() {
        bail!("module cycles:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// The module graph of one crate's `src` folder.
pub fn crate_graph(src: &Path) -> Result<Graph> {
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let module = match (path.is_dir(), path.extension()) {
            (true, _) => path.file_name(),
            (false, Some(ext)) if ext == "rs" => path.file_stem(),
            _ => None,
        };
        let Some(module) = module.map(|m| m.to_string_lossy().into_owned()) else {
            continue;
        };
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let mut uses = BTreeSet::new();
        for file in rust_files(&path)? {
            let text = std::fs::read_to_string(&file)?;
            uses.extend(crate_paths(&text).into_iter().filter(|m| *m != module));
        }
        graph.insert(module, uses);
    }
    // Only edges between modules of the crate (`crate::SomeType` re-exports are not modules).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|m| modules.contains(m));
    }
    Ok(graph)
}

fn rust_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path)? {
        out.extend(rust_files(&entry?.path())?);
    }
    Ok(out
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect())
}

/// The first segment after every `crate::` in `text`, up to its first `#[cfg(test)]` (unit
/// tests may reach anywhere) and outside `//` comments; `crate::{a, b}` groups count each name.
pub fn crate_paths(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (i, _) in line.match_indices("crate::") {
            let rest = &line[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                out.extend(inner.split(',').filter_map(|p| first_segment(p.trim())));
            } else if let Some(name) = first_segment(rest) {
                out.insert(name);
            }
        }
    }
    out
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Every elementary cycle's smallest representative, found by a depth-first search from each
/// module (the graphs have tens of nodes).
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        walk(graph, start, &mut path, &mut found);
    }
    found.into_iter().collect()
}

fn walk(graph: &Graph, start: &str, path: &mut Vec<String>, found: &mut BTreeSet<Vec<String>>) {
    let Some(next) = graph.get(path.last().map_or(start, String::as_str)) else {
        return;
    };
    for m in next {
        if m == start {
            let mut cycle = path.clone();
            // Rotate so the smallest name leads: each cycle is reported once.
            let min = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
            cycle.rotate_left(min);
            cycle.push(cycle[0].clone());
            found.insert(cycle);
        } else if !path.contains(m) && m.as_str() > start {
            path.push(m.clone());
            walk(graph, start, path, found);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_paths_read_uses_groups_and_skip_tests_and_comments() {
        let text = "use crate::a::X;\nuse crate::{b::Y, c};\nlet z = crate::d::f(); // crate::e\n\
                    #[cfg(test)]\nmod tests { use crate::f; }\n";
        let got: Vec<String> = crate_paths(text).into_iter().collect();
        assert_eq!(got, ["a", "b", "c", "d"]);
    }

    #[test]
    fn cycles_are_found_once_each() {
        let graph: Graph = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a", "d"]),
            ("d", vec![]),
            ("e", vec!["f"]),
            ("f", vec!["e"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let found = cycles(&graph);
        assert_eq!(
            found,
            [vec!["a", "b", "c", "a"], vec!["e", "f", "e"]]
                .map(|c| c.into_iter().map(String::from).collect::<Vec<_>>())
        );
        let acyclic: Graph = [("a".to_string(), BTreeSet::from(["b".to_string()]))].into();
        assert!(cycles(&acyclic).is_empty());
    }
}
