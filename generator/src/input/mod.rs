//! Every YAML file the generator reads (cluster facts, the secrets file, the
//! operator's `--merge` cloud-config, and its own output parsed back) is parsed
//! once, by `saphyr-parser`, into a tree of [`Node`]s that carry the line and column
//! of every key, value and sequence item. Typed structs are deserialized from that
//! tree (`de.rs`), and problems are located in the same tree (`crate::spans`), so a
//! caret always lands on the token the parser saw.
//!
//! The reader is strict where YAML is loose, and bounded against hostile input:
//! duplicate keys, merge keys (`<<`), complex keys and tags outside YAML's core
//! schema are refused at their position; nesting, alias expansion and the input size
//! have limits (`build.rs`).

mod build;
mod de;

pub use de::Error;

/// A 1-based line and column (in characters) in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A scalar's text as written (after unquoting and folding). `plain` scalars are
/// resolved by YAML 1.2's core schema when a number, boolean or null is asked
/// for; quoted ones (and `!!str`) are always strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub plain: bool,
}

/// A mapping entry: its key (always a scalar) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// Why a text is not YAML the generator reads, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at line {} column {}", self.message, self.pos.line, self.pos.col)
    }
}

impl std::error::Error for SyntaxError {}

/// At most this many bytes of YAML are read (a 100,000-worker facts file is ~10 MB).
pub const MAX_INPUT_BYTES: usize = 64 << 20;
/// Collections nested deeper than this are refused (the facts need 5).
pub const MAX_DEPTH: usize = 64;
/// Aliases may copy at most this many nodes, or as many as the document has
/// itself when that is more: expansion at most doubles a document.
pub const MIN_ALIAS_BUDGET: usize = 100_000;

impl Node {
    /// Whether this is a null: an empty value, `~` or `null` (plain).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.plain && de::is_null(&s.text))
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    /// A sequence's items.
    pub fn items(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// A scalar's text.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }
}

/// Parse a text of exactly one document (an empty text is `None`).
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut docs = build::documents(text)?;
    if docs.len() > 1 {
        return Err(SyntaxError { message: "more than one YAML document (`---`); give one".into(), pos: docs[1].pos });
    }
    Ok(docs.pop())
}

/// Parse a stream of documents.
pub fn parse_all(text: &str) -> Result<Vec<Node>, SyntaxError> {
    build::documents(text)
}

/// Deserialize `T` from a node.
pub fn from_node<'de, T: serde::Deserialize<'de>>(node: &'de Node) -> Result<T, Error> {
    T::deserialize(node)
}

/// Parse one document and deserialize `T` from it (an empty text is a null).
pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    let node = parse(text).map_err(Error::from)?.unwrap_or_else(null);
    T::deserialize(&node)
}

/// Parse a stream and deserialize every document as `T`.
pub fn from_str_all<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, Error> {
    parse_all(text).map_err(Error::from)?.iter().map(|n| T::deserialize(n)).collect()
}

/// An empty document: a null at 1:1.
pub fn null() -> Node {
    Node { pos: Pos { line: 1, col: 1 }, kind: Kind::Scalar(Scalar { text: String::new(), plain: true }) }
}
