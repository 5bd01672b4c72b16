//! The layout rules of `docs/architecture.md`, checked on the sources: no import
//! cycle between the top-level modules of a crate, and no function longer than
//! [`MAX_FN_LINES`] lines. A function may be longer only with a `// long-fn: WHY`
//! comment on the line above it (data tables, mostly); the test lists every one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// From the `fn` line to the closing brace, both counted.
pub const MAX_FN_LINES: usize = 80;

/// The crates' source directories.
pub fn source_dirs() -> Vec<PathBuf> {
    ["generator/src", "bootstrap/src", "ctl/src", "tests/src"].iter().map(|d| crate::workspace().join(d)).collect()
}

/// Every `.rs` file under `dir`, sorted.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The source with comments, string and char literals blanked out (newlines kept),
/// so braces and keywords inside them do not count.
pub fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, s: &[u8]| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }));
    };
    while i < b.len() {
        let rest = &b[i..];
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            rest.windows(2).skip(2).position(|w| w == b"*/").map_or(rest.len(), |p| p + 4)
        } else if !prev_ident && (rest.starts_with(b"r\"") || rest.starts_with(b"r#")) {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                0
            } else {
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                let start = 2 + hashes;
                rest[start..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(rest.len(), |p| start + p + close.len())
            }
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime ('a).
            if rest.get(1) == Some(&b'\\') {
                rest.iter().skip(2).position(|&c| c == b'\'').map_or(0, |p| p + 3)
            } else if rest.get(2) == Some(&b'\'') {
                3
            } else {
                0
            }
        } else {
            0
        };
        if end == 0 {
            out.push(b[i]);
            i += 1;
        } else {
            blank(&mut out, &rest[..end]);
            i += end;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Functions longer than [`MAX_FN_LINES`] in one file's source: (name, first line,
/// length), except those with a `// long-fn:` comment on the line above.
pub fn long_functions(src: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(src);
    let lines: Vec<&str> = src.lines().collect();
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    // (name, line of `fn`, brace depth its body opens at)
    let mut open: Vec<(String, usize, usize)> = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    let (mut depth, mut line) = (0usize, 1usize);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if word_start && bytes[i..].starts_with(b"fn ") {
            let name: String = bytes[i + 3..]
                .iter()
                .skip_while(|c| c.is_ascii_whitespace())
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .map(|&c| c as char)
                .collect();
            pending = Some((name, line));
        }
        match c {
            b'\n' => line += 1,
            b'{' => {
                depth += 1;
                if let Some((name, l)) = pending.take() {
                    open.push((name, l, depth));
                }
            }
            b'}' => {
                if open.last().is_some_and(|o| o.2 == depth) {
                    let (name, l, _) = open.pop().unwrap_or_default();
                    let len = line - l + 1;
                    let excused = l >= 2 && lines.get(l - 2).is_some_and(|p| p.trim_start().starts_with("// long-fn:"));
                    if len > MAX_FN_LINES && !excused {
                        out.push((name, l, len));
                    }
                }
                depth = depth.saturating_sub(1);
            }
            // A declaration without a body (trait method, extern fn).
            b';' if pending.is_some() => pending = None,
            _ => {}
        }
        i += 1;
    }
    out
}

/// The top-level modules of a crate's `src/` and the top-level modules each uses
/// (`crate::x` outside `#[cfg(test)]` code).
pub fn module_graph(src_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src_dir) {
        let Ok(rel) = file.strip_prefix(src_dir) else { continue };
        let top = rel.components().next().map(|c| c.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string());
        let Some(top) = top.filter(|t| t != "lib" && t != "main" && t != "bin") else { continue };
        let src = std::fs::read_to_string(&file).unwrap_or_default();
        let code = code_only(&src);
        let code = code.split("#[cfg(test)]").next().unwrap_or("");
        let deps = graph.entry(top.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = group.split('}').next().unwrap_or("");
                for item in group.split(',') {
                    let m: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    deps.insert(m);
                }
            } else {
                deps.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
            }
        }
        deps.remove(&top);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
pub fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.stack.contains(&w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g: graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), out: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_function_in_src_is_longer_than_the_limit() {
        let mut long = Vec::new();
        for dir in source_dirs() {
            for file in rust_files(&dir) {
                let src = std::fs::read_to_string(&file).unwrap();
                for (name, line, len) in long_functions(&src) {
                    long.push(format!("{}:{line} {name} ({len} lines)", file.display()));
                }
            }
        }
        assert!(long.is_empty(), "split these, or say why above them with `// long-fn:`:\n{}", long.join("\n"));
    }

    /// A new workspace member is checked too: every `members` entry of the
    /// workspace manifest has its `src` among [`source_dirs`].
    #[test]
    fn every_workspace_crate_is_checked() {
        let manifest = std::fs::read_to_string(crate::workspace().join("Cargo.toml")).unwrap();
        let line = manifest.lines().find(|l| l.trim_start().starts_with("members")).expect("a members line");
        let members: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert!(members.len() >= 4, "{line}");
        let dirs = source_dirs();
        for m in members {
            assert!(dirs.contains(&crate::workspace().join(m).join("src")), "{m}/src is not in source_dirs()");
        }
    }

    #[test]
    fn no_crate_has_an_import_cycle() {
        for dir in source_dirs() {
            let graph = module_graph(&dir);
            assert!(graph.len() > 5, "{}: {graph:?}", dir.display());
            assert_eq!(cycles(&graph), Vec::<Vec<String>>::new(), "{}", dir.display());
        }
    }

    #[test]
    fn the_checks_can_fail() {
        let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
        let src = format!(
            "/// fn in a comment {{\nfn short() {{ let s = \"}}\"; let c = '{{'; }}\nfn long<'a>(x: &'a str) {{\n{body}}}\n\
             // long-fn: a table\nfn excused() {{\n{body}}}\ntrait T {{ fn decl(&self); }}\n"
        );
        assert_eq!(long_functions(&src), vec![("long".to_string(), 3, MAX_FN_LINES + 2)]);
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        g.entry("c".into()).or_default().insert("a".into());
        g.entry("d".into()).or_default().insert("a".into());
        assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
        g.get_mut("c").unwrap().clear();
        assert!(cycles(&g).is_empty());
    }
}
