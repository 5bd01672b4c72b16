//! Where each value of a YAML document sits: a path such as `$.workers[3].name`
//! looked up in the parsed tree (`crate::input`), which holds the line and column of
//! every key, value and item as the parser saw them.

use crate::input::{Kind, Node};

pub use crate::input::Pos;

/// A parsed document, for locating problems by path.
#[derive(Debug, Default)]
pub struct SpanMap {
    root: Option<Node>,
}

/// Where a path's lookup ended: the node, and the key that introduces it.
struct Found<'a> {
    node: &'a Node,
    key: Option<Pos>,
    exact: bool,
}

impl SpanMap {
    pub fn new(root: Option<Node>) -> SpanMap {
        SpanMap { root }
    }

    /// The map of `text`; a text that does not parse gives an empty map.
    pub fn build(text: &str) -> SpanMap {
        SpanMap::new(crate::input::parse(text).ok().flatten())
    }

    pub fn root(&self) -> Option<&Node> {
        self.root.as_ref()
    }

    /// Position of the value at `path`. For a path that is not in the document
    /// (a missing key), the nearest ancestor's: the `{` or `[` of a flow
    /// collection, else the key that introduces it.
    pub fn value(&self, path: &str) -> Option<Pos> {
        let f = self.find(path)?;
        if f.exact || !is_block_map(f.node) {
            return Some(f.node.pos);
        }
        Some(f.key.unwrap_or(f.node.pos))
    }

    /// Position of the key that introduces `path` (for "unknown key" problems), else
    /// of the value.
    pub fn key(&self, path: &str) -> Option<Pos> {
        match self.find(path)? {
            Found { key: Some(k), exact: true, .. } => Some(k),
            _ => self.value(path),
        }
    }

    fn find(&self, path: &str) -> Option<Found<'_>> {
        let mut cur = Found { node: self.root.as_ref()?, key: None, exact: true };
        for seg in segments(path.strip_prefix('$')?) {
            let next = match (&cur.node.kind, seg) {
                (Kind::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|e| e.key == k).map(|e| (&e.value, Some(e.key_pos)))
                }
                (Kind::Seq(items), Seg::Index(i)) => items.get(i).map(|n| (n, None)),
                _ => None,
            };
            match next {
                Some((node, key)) => cur = Found { node, key, exact: true },
                None => return Some(Found { exact: false, ..cur }),
            }
        }
        Some(cur)
    }
}

/// A block mapping has no token of its own: it starts at its first key (or at an
/// anchor or tag on the line before it).
fn is_block_map(n: &Node) -> bool {
    matches!(&n.kind, Kind::Map(entries) if entries.first().is_some_and(|e| e.key_pos == n.pos || e.key_pos.line != n.pos.line))
}

enum Seg {
    Key(String),
    Index(usize),
}

/// `.key`, `[3]` and `["odd key"]` segments, as [`child_key`] and serde write them.
fn segments(mut p: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    while !p.is_empty() {
        if let Some(rest) = p.strip_prefix('.') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Seg::Key(rest[..end].to_string()));
            p = &rest[end..];
        } else if let Some(rest) = p.strip_prefix("[\"") {
            let mut stream = serde_json::Deserializer::from_str(&p[1..]).into_iter::<String>();
            let Some(Ok(key)) = stream.next() else { break };
            let used = 1 + stream.byte_offset();
            out.push(Seg::Key(key));
            p = p[used..].strip_prefix(']').unwrap_or(&rest[rest.len()..]);
        } else if let Some(rest) = p.strip_prefix('[') {
            let end = rest.find(']').unwrap_or(rest.len());
            match rest[..end].parse() {
                Ok(i) => out.push(Seg::Index(i)),
                Err(_) => break,
            }
            p = rest.get(end + 1..).unwrap_or("");
        } else {
            break;
        }
    }
    out
}

/// Append a mapping key to a path. Keys that are not plain identifiers are quoted.
pub fn child_key(path: &str, key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::to_string(key).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "cluster:\n  name: prod\n  control-plane:\n    - { name: a, address: 10.0.0.1 }\n    - name: b\n      address: 10.0.0.2\nworkers:\n- name: w1\n  labels: { \"a.b/c\": x }\n";

    #[test]
    fn positions_of_nested_values() {
        let m = SpanMap::build(DOC);
        assert_eq!(m.value("$.cluster.name"), Some(Pos { line: 2, col: 9 }));
        assert_eq!(m.value("$.cluster.control-plane[0].address"), Some(Pos { line: 4, col: 27 }));
        assert_eq!(m.value("$.cluster.control-plane[1].address"), Some(Pos { line: 6, col: 16 }));
        assert_eq!(m.value("$.workers[0].name"), Some(Pos { line: 8, col: 9 }));
        assert_eq!(m.key("$.workers[0].name"), Some(Pos { line: 8, col: 3 }));
        assert_eq!(m.key(&child_key("$.workers[0].labels", "a.b/c")), Some(Pos { line: 9, col: 13 }));
        assert_eq!(m.value(&child_key("$.workers[0].labels", "a.b/c")), Some(Pos { line: 9, col: 22 }));
    }

    #[test]
    fn missing_paths_point_at_the_nearest_ancestor() {
        let m = SpanMap::build(DOC);
        // A block mapping: the key that introduces it.
        assert_eq!(m.value("$.cluster.dns"), Some(Pos { line: 1, col: 1 }));
        assert_eq!(m.value("$.workers[0].address"), Some(Pos { line: 8, col: 3 }));
        // A flow mapping: its `{`.
        assert_eq!(m.value("$.cluster.control-plane[0].labels"), Some(Pos { line: 4, col: 7 }));
        assert_eq!(m.value("$.nothing"), Some(Pos { line: 1, col: 1 }));
        assert_eq!(m.value("$.cluster.control-plane[5].name"), Some(Pos { line: 4, col: 5 }));
    }

    /// Where yaml-rust2's marks (the second parser this map was built from before)
    /// put the caret a token off: an empty value at the next line's key, a block
    /// mapping after the colon of its first key.
    #[test]
    fn carets_land_on_the_token_not_next_to_it() {
        let m = SpanMap::build("cluster:\n  name: c\nworkers:\n  - name:\n    address: 10.0.0.1\n");
        assert_eq!(m.value("$.workers[0].name"), Some(Pos { line: 4, col: 5 }), "the empty value's key");
        assert_eq!(m.value("$.workers[0].labels"), Some(Pos { line: 4, col: 5 }), "the item's first key");
        assert_eq!(m.value("$.cluster.ca"), Some(Pos { line: 1, col: 1 }), "the key of the mapping");
        assert_eq!(m.value("$"), Some(Pos { line: 1, col: 1 }));
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        assert_eq!(child_key("$", "a.b"), "$[\"a.b\"]");
        assert_eq!(child_key("$", "ok-key"), "$.ok-key");
    }
}
