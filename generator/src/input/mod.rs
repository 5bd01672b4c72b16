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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct T {
        name: String,
        #[serde(default)]
        n: Option<i64>,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        on: Option<bool>,
    }

    fn refused(text: &str) -> SyntaxError {
        parse(text).expect_err("must be refused")
    }

    #[test]
    fn strings_stay_as_written_and_numbers_resolve_by_the_core_schema() {
        let t: T = from_str("name: 0644\nn: 0x10\nlist: [on, 1e3, ~, '7']\non: true\n").unwrap();
        assert_eq!(
            t,
            T {
                name: "0644".into(),
                n: Some(16),
                list: vec!["on".into(), "1e3".into(), "~".into(), "7".into()],
                on: Some(true)
            }
        );
        let empty: T = from_str("name: x\nn:\nlist:\n").unwrap();
        assert_eq!((empty.n, empty.list.len()), (None, 0));
        for (n, why) in [
            ("'24'", "invalid type: string \"24\""),
            ("1.5", "invalid type: floating point"),
            ("1e3", "floating point"),
            ("yes", "string \"yes\""),
        ] {
            let e = from_str::<T>(&format!("name: x\nn: {n}\n")).unwrap_err().to_string();
            assert!(e.contains(why), "{n}: {e}");
        }
        assert!(from_str::<T>("name: x\nn: 99999999999999999999\n").is_err());
        assert!(from_str::<T>("name: x\ncolour: red\n").unwrap_err().to_string().starts_with("unknown field `colour`"));
    }

    #[test]
    fn every_node_has_its_position() {
        let n = parse("a:\n  - x\n  - { b: 'y', c: }\n").unwrap().unwrap();
        let Kind::Map(top) = &n.kind else { panic!() };
        assert_eq!((top[0].key_pos, n.pos), (Pos { line: 1, col: 1 }, Pos { line: 1, col: 1 }));
        let items = top[0].value.items().unwrap();
        assert_eq!(top[0].value.pos, Pos { line: 2, col: 3 });
        assert_eq!(items[0].pos, Pos { line: 2, col: 5 });
        assert_eq!(items[1].pos, Pos { line: 3, col: 5 });
        let Kind::Map(inner) = &items[1].kind else { panic!() };
        assert_eq!((inner[0].key_pos, inner[0].value.pos), (Pos { line: 3, col: 7 }, Pos { line: 3, col: 10 }));
        // A sequence at its key's indentation: at its first `-`.
        let n = parse("a:\n- x\n-   y\nb: [c]\n").unwrap().unwrap();
        assert_eq!(n.get("a").map(|a| a.pos), Some(Pos { line: 2, col: 1 }));
        assert_eq!(n.get("a").and_then(|a| a.items()).map(|i| i[1].pos), Some(Pos { line: 3, col: 5 }));
        assert_eq!(n.get("b").map(|b| b.pos), Some(Pos { line: 4, col: 4 }));
        // An empty value has no token of its own: it sits at its key.
        assert_eq!((inner[1].key_pos, inner[1].value.pos), (Pos { line: 3, col: 15 }, Pos { line: 3, col: 15 }));
    }

    #[test]
    fn duplicate_keys_are_refused_at_the_second() {
        let e = refused("a: 1\nb: 2\na: 3\n");
        assert_eq!(e.pos, Pos { line: 3, col: 1 });
        assert!(e.message.contains("duplicate key `a` (first at line 1 column 1)"), "{}", e.message);
        // Large mappings look keys up in an index: the same answer.
        let mut big: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        big.push_str("k33: again\n");
        assert_eq!(refused(&big).pos, Pos { line: 41, col: 1 });
        assert!(refused("{ x: 1, \"x\": 2 }").message.contains("duplicate key `x`"));
    }

    #[test]
    fn merge_keys_complex_keys_and_foreign_tags_are_refused() {
        assert!(refused("d: &d { a: 1 }\ne:\n  <<: *d\n").message.contains("merge keys"));
        assert_eq!(refused("d: &d { a: 1 }\ne:\n  <<: *d\n").pos, Pos { line: 3, col: 3 });
        assert!(parse("\"<<\": 1\n").is_ok(), "a quoted << is an ordinary key");
        assert!(refused("? [a]\n: 1\n").message.contains("mapping key must be"));
        assert!(refused("a: !custom x\n").message.contains("tag `!custom`"));
        assert!(refused("a: !!binary eA==\n").message.contains("tag `!!binary`"));
        let t: T = from_str("name: !!str 7\nn: !!int 7\n").unwrap();
        assert_eq!((t.name.as_str(), t.n), ("7", Some(7)));
        // A value with a tag or an anchor is located at its text.
        let n = parse("name: &n w1\nn: !!int  7 # seven\nq: !!str 'x'\nf: { g: &g h }\n").unwrap().unwrap();
        let at = |k: &str| n.get(k).map(|v| v.pos);
        assert_eq!(at("name"), Some(Pos { line: 1, col: 10 }));
        assert_eq!(at("n"), Some(Pos { line: 2, col: 11 }));
        assert_eq!(at("q"), Some(Pos { line: 3, col: 4 }), "quoted: at the tag");
        assert_eq!(n.get("f").and_then(|f| f.get("g")).map(|v| v.pos), Some(Pos { line: 4, col: 12 }));
    }

    #[test]
    fn aliases_are_copies_at_the_alias() {
        let text = "name: &n w1\nlist: [&x a, *x, *n]\n";
        let t: T = from_str(text).unwrap();
        assert_eq!(t.list, ["a", "a", "w1"]);
        let n = parse(text).unwrap().unwrap();
        assert_eq!(n.get("list").unwrap().items().unwrap()[2].pos, Pos { line: 2, col: 18 });
    }

    #[test]
    fn hostile_documents_are_refused_without_a_hang() {
        // Billion laughs: 10^9 values from nine lines.
        let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for (p, c) in "abcdefgh".chars().zip("bcdefghi".chars()) {
            laughs.push_str(&format!("{c}: &{c} [{}]\n", vec![format!("*{p}"); 10].join(", ")));
        }
        let start = std::time::Instant::now();
        assert!(refused(&laughs).message.contains("aliases expand this document"));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Nesting: block and flow.
        let block: String = (0..200).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
        assert!(refused(&block).message.contains(&format!("nested more than {MAX_DEPTH} levels")));
        let flow = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&flow).is_err());
        let flow_maps = format!("a: {}{}", "{a: ".repeat(100_000), "}".repeat(100_000));
        assert!(parse(&flow_maps).is_err());
        // Size.
        let huge = format!("a: {}\n", "x".repeat(MAX_INPUT_BYTES));
        assert!(refused(&huge).message.contains("at most 64 MiB"));
        // An alias into the collection it is part of.
        assert!(parse("a: &a [*a]\n").is_err());
    }

    #[test]
    fn documents_and_syntax_errors() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
        assert!(parse("---\n").unwrap().unwrap().is_null());
        let e = refused("a: 1\n---\nb: 2\n");
        assert!(e.message.contains("more than one YAML document"));
        assert_eq!(parse_all("a: 1\n---\nb: 2\n").unwrap().len(), 2);
        let e = refused("a: [1, 2\nb: 3\n");
        assert!(e.message.starts_with("not valid YAML: "), "{}", e.message);
        assert!(e.pos.line >= 1);
    }
}
