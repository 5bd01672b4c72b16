//! Where each value of a YAML document sits: a map from a path such as
//! `$.workers[3].name` to the line and column of that value (and of its key).
//!
//! serde gives us typed values but no positions; this second, cheap pass over the
//! parser's events supplies them so every problem can point at the input.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Default)]
struct Positions {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

/// Built on first use: a valid file (the common case) never pays for it.
#[derive(Debug, Default)]
pub struct SpanMap {
    text: String,
    positions: std::cell::OnceCell<Positions>,
}

impl SpanMap {
    /// The map of `text`, computed when first asked; a document that does not parse
    /// gives an empty map (the serde pass reports the syntax error with its own
    /// position).
    pub fn build(text: &str) -> SpanMap {
        SpanMap { text: text.to_string(), positions: std::cell::OnceCell::new() }
    }

    fn positions(&self) -> &Positions {
        self.positions.get_or_init(|| {
            let mut b = Builder::default();
            let mut parser = Parser::new_from_str(&self.text);
            if parser.load(&mut b, false).is_err() {
                return Positions::default();
            }
            b.map
        })
    }

    /// Position of the value at `path`, or of the nearest ancestor that has one.
    pub fn value(&self, path: &str) -> Option<Pos> {
        let values = &self.positions().values;
        let mut p = path;
        loop {
            if let Some(pos) = values.get(p) {
                return Some(*pos);
            }
            p = parent(p)?;
        }
    }

    /// Position of the key that introduces `path` (for "unknown key" problems), else
    /// of the value.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.positions().keys.get(path).copied().or_else(|| self.value(path))
    }
}

fn parent(path: &str) -> Option<&str> {
    if path == "$" {
        return None;
    }
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

/// Append a mapping key to a path. Keys that are not plain identifiers are quoted.
pub fn child_key(path: &str, key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::to_string(key).unwrap_or_default())
    }
}

enum Frame {
    Map { path: String, pending_key: Option<(String, Pos)> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    map: Positions,
}

impl Builder {
    /// The path of the node that starts now, consuming the pending key or index.
    /// Returns None when the node is a mapping key.
    fn next_path(&mut self, key_text: Option<&str>, pos: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some("$".to_string()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                Some((k, kpos)) => {
                    let p = child_key(path, &k);
                    self.map.keys.insert(p.clone(), kpos);
                    Some(p)
                }
                None => {
                    // This node is a key. Only scalar keys get a name.
                    *pending_key = Some((key_text.unwrap_or("?").to_string(), pos));
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos { line: mark.line(), col: mark.col() + 1 };
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(p) = self.next_path(Some(&text), pos) {
                    self.map.values.insert(p, pos);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.next_path(None, pos) {
                    self.map.values.insert(p, pos);
                }
            }
            Event::MappingStart(..) => {
                let p = self.next_path(None, pos).unwrap_or_else(|| "?".into());
                self.map.values.insert(p.clone(), pos);
                self.stack.push(Frame::Map { path: p, pending_key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.next_path(None, pos).unwrap_or_else(|| "?".into());
                self.map.values.insert(p.clone(), pos);
                self.stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "cluster:\n  name: prod\n  control-plane:\n    - { name: a, address: 10.0.0.1 }\n    - name: b\n      address: 10.0.0.2\nworkers:\n- name: w1\n";

    #[test]
    fn positions_of_nested_values() {
        let m = SpanMap::build(DOC);
        assert_eq!(m.value("$.cluster.name"), Some(Pos { line: 2, col: 9 }));
        assert_eq!(m.value("$.cluster.control-plane[0].address"), Some(Pos { line: 4, col: 27 }));
        assert_eq!(m.value("$.cluster.control-plane[1].address"), Some(Pos { line: 6, col: 16 }));
        assert_eq!(m.value("$.workers[0].name"), Some(Pos { line: 8, col: 9 }));
        assert_eq!(m.key("$.workers[0].name"), Some(Pos { line: 8, col: 3 }));
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let m = SpanMap::build(DOC);
        assert_eq!(m.value("$.workers[0].labels.x"), m.value("$.workers[0]"));
        assert_eq!(m.value("$.nothing"), m.value("$"));
    }

    #[test]
    fn odd_keys_are_quoted_in_paths() {
        assert_eq!(child_key("$", "a.b"), "$[\"a.b\"]");
        assert_eq!(child_key("$", "ok-key"), "$.ok-key");
    }
}
