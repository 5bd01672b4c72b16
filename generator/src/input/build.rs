//! saphyr-parser's events, with their spans, into [`Node`] trees: one pass, no
//! recursion over the input, every limit checked as the events arrive.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::{Entry, Kind, Node, Pos, Scalar, SyntaxError, MAX_DEPTH, MAX_INPUT_BYTES, MIN_ALIAS_BUDGET};

/// Above this many entries a mapping indexes its keys for the duplicate check.
const INDEX_FROM: usize = 16;

/// Every document of `text`.
pub(super) fn documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(err(
            Pos { line: 1, col: 1 },
            format!("the file is {} MiB; at most {} MiB of YAML is read", text.len() >> 20, MAX_INPUT_BYTES >> 20),
        ));
    }
    let mut b = Builder { text, ..Builder::default() };
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            err(Pos { line: m.line(), col: m.col() + 1 }, format!("not valid YAML: {}", e.info()))
        })?;
        b.event(event, span)?;
    }
    Ok(b.docs)
}

fn err(pos: Pos, message: impl Into<String>) -> SyntaxError {
    SyntaxError { message: message.into(), pos }
}

fn pos_of(span: Span) -> Pos {
    Pos { line: span.start.line(), col: span.start.col() + 1 }
}

struct Open {
    pos: Pos,
    anchor: usize,
    body: Body,
}

enum Body {
    Seq(Vec<Node>),
    Map { entries: Vec<Entry>, key: Option<(String, Pos)>, index: HashMap<String, usize> },
}

#[derive(Default)]
struct Builder<'t> {
    text: &'t str,
    /// Byte offset of each line, computed when first needed.
    lines: Vec<usize>,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    docs: Vec<Node>,
    /// Nodes read from the text, and nodes copied by aliases.
    nodes: usize,
    copied: usize,
}

impl Builder<'_> {
    fn event(&mut self, event: Event, span: Span) -> Result<(), SyntaxError> {
        let pos = pos_of(span);
        match event {
            Event::DocumentStart(_) => self.anchors.clear(),
            Event::Scalar(text, style, anchor, tag) => {
                self.nodes += 1;
                let plain = style == ScalarStyle::Plain && scalar_tag(tag.as_deref(), pos)?;
                let pos = if anchor != 0 || tag.is_some() { scalar_text_pos(&text, style, span) } else { pos };
                let node = Node { pos, kind: Kind::Scalar(Scalar { text: text.into_owned(), plain }) };
                self.complete(node, anchor)?;
            }
            Event::SequenceStart(anchor, tag) => self.open(pos, anchor, tag.as_deref(), Body::Seq(Vec::new()))?,
            Event::MappingStart(anchor, tag) => {
                let body = Body::Map { entries: Vec::new(), key: None, index: HashMap::new() };
                self.open(pos, anchor, tag.as_deref(), body)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    let mut pos = open.pos;
                    let kind = match open.body {
                        Body::Seq(items) => {
                            if items.first().is_some_and(|i| i.pos == pos) {
                                pos = self.dash_before(pos);
                            }
                            Kind::Seq(items)
                        }
                        Body::Map { entries, .. } => Kind::Map(entries),
                    };
                    self.complete(Node { pos, kind }, open.anchor)?;
                }
            }
            Event::Alias(id) => {
                let node = self.alias(id, pos)?;
                self.complete(node, 0)?;
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos, anchor: usize, tag: Option<&Tag>, body: Body) -> Result<(), SyntaxError> {
        if let Some(t) = tag {
            if !(t.is_yaml_core_schema() && matches!(t.suffix.as_str(), "map" | "seq")) {
                return Err(unsupported_tag(t, pos));
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(err(pos, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        self.nodes += 1;
        self.stack.push(Open { pos, anchor, body });
        Ok(())
    }

    /// A block sequence at its parent's indentation (`key:` then `- item` below
    /// it) starts, in saphyr-parser's spans, at its first item: its token is the
    /// `-` before that.
    fn dash_before(&mut self, pos: Pos) -> Pos {
        if self.lines.is_empty() {
            self.lines = std::iter::once(0).chain(self.text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        }
        let Some(start) = pos.line.checked_sub(1).and_then(|l| self.lines.get(l)).copied() else { return pos };
        let line = self.text[start..].split('\n').next().unwrap_or("");
        let before: Vec<char> = line.chars().take(pos.col.saturating_sub(1)).collect();
        let dash = before.iter().rposition(|c| !matches!(c, ' ' | '\t'));
        match dash {
            Some(i) if before[i] == '-' => Pos { line: pos.line, col: i + 1 },
            _ => pos,
        }
    }

    /// A copy of the anchored node, within the alias budget.
    fn alias(&mut self, id: usize, pos: Pos) -> Result<Node, SyntaxError> {
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(err(pos, "this alias refers to a collection that contains it"));
        };
        let budget = MIN_ALIAS_BUDGET.max(self.nodes);
        let left = budget.saturating_sub(self.copied);
        let size = size_within(anchored, left.saturating_add(1));
        if size > left {
            return Err(err(
                pos,
                format!("aliases expand this document beyond {budget} copied values; write the values out instead"),
            ));
        }
        self.copied += size;
        let mut node = anchored.clone();
        node.pos = pos;
        Ok(node)
    }

    /// A finished node: a document, an item, a key or a value.
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(open) = self.stack.last_mut() else {
            self.docs.push(node);
            return Ok(());
        };
        match &mut open.body {
            Body::Seq(items) => items.push(node),
            Body::Map { entries, key, index } => match key.take() {
                Some((k, key_pos)) => {
                    // An empty value has no token: point at its key.
                    let mut node = node;
                    if matches!(&node.kind, Kind::Scalar(s) if s.plain && s.text.is_empty()) {
                        node.pos = key_pos;
                    }
                    if entries.len() >= INDEX_FROM {
                        if entries.len() == INDEX_FROM {
                            index.extend(entries.iter().enumerate().map(|(i, e)| (e.key.clone(), i)));
                        }
                        index.insert(k.clone(), entries.len());
                    }
                    entries.push(Entry { key: k, key_pos, value: node });
                }
                None => *key = Some(map_key(node, entries, index)?),
            },
        }
        Ok(())
    }
}

/// A node read as a mapping key: a scalar, not `<<`, not seen before.
fn map_key(node: Node, entries: &[Entry], index: &HashMap<String, usize>) -> Result<(String, Pos), SyntaxError> {
    let Kind::Scalar(s) = node.kind else {
        return Err(err(node.pos, "a mapping key must be a plain or quoted scalar, not a collection"));
    };
    if s.plain && s.text == "<<" {
        return Err(err(node.pos, "merge keys (`<<`) are not supported; write the keys out"));
    }
    let first = if entries.len() >= INDEX_FROM {
        index.get(&s.text).map(|i| &entries[*i])
    } else {
        entries.iter().find(|e| e.key == s.text)
    };
    if let Some(first) = first {
        return Err(err(
            node.pos,
            format!(
                "duplicate key `{}` (first at line {} column {}); keep one",
                s.text, first.key_pos.line, first.key_pos.col
            ),
        ));
    }
    Ok((s.text, node.pos))
}

/// Whether a scalar with this tag stays plain (resolved by the core schema):
/// `!!str` and `!` make it a string; other core tags leave it plain; any other
/// tag is refused.
fn scalar_tag(tag: Option<&Tag>, pos: Pos) -> Result<bool, SyntaxError> {
    match tag {
        None => Ok(true),
        Some(t) if t.handle == "!" && t.suffix.is_empty() => Ok(false),
        Some(t) if t.is_yaml_core_schema() => match t.suffix.as_str() {
            "str" => Ok(false),
            "int" | "float" | "bool" | "null" => Ok(true),
            _ => Err(unsupported_tag(t, pos)),
        },
        Some(t) => Err(unsupported_tag(t, pos)),
    }
}

/// Where a scalar's text starts when an anchor or tag comes before it: for a
/// plain scalar on one line, its length before its end; else the node's start.
fn scalar_text_pos(text: &str, style: ScalarStyle, span: Span) -> Pos {
    let len = text.chars().count();
    if style == ScalarStyle::Plain && span.start.line() == span.end.line() && span.end.col() >= len {
        Pos { line: span.end.line(), col: span.end.col() - len + 1 }
    } else {
        pos_of(span)
    }
}

fn unsupported_tag(t: &Tag, pos: Pos) -> SyntaxError {
    let shown = if t.is_yaml_core_schema() { format!("!!{}", t.suffix) } else { t.to_string() };
    err(pos, format!("the tag `{shown}` is not supported here; remove it"))
}

/// The number of nodes in `node`, counting no further than `limit`.
fn size_within(node: &Node, limit: usize) -> usize {
    let mut n = 1;
    let children: Box<dyn Iterator<Item = &Node>> = match &node.kind {
        Kind::Scalar(_) => return 1,
        Kind::Seq(items) => Box::new(items.iter()),
        Kind::Map(entries) => {
            n += entries.len();
            Box::new(entries.iter().map(|e| &e.value))
        }
    };
    for c in children {
        if n > limit {
            break;
        }
        n += size_within(c, limit - n.min(limit));
    }
    n
}
