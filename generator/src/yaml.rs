//! A small YAML emitter for documents that PyYAML (cloud-init) reads with YAML 1.1
//! rules. Values come from serde (`serde_json::Value`, field order kept), never from
//! pasted strings.
//!
//! Why not serde_yaml's serializer: it quotes by YAML 1.2 rules, so `on`, `no`, `yes`,
//! `Off`, `1_000`, `12:30`, `2001-12-14`, `=` and `<<` come out plain and PyYAML reads
//! them as booleans, numbers, timestamps or fails. Here a string is plain only when
//! it is obviously a string under both YAML versions; otherwise it is double-quoted
//! with JSON escapes (valid YAML), or a literal block when it is multi-line text.

use serde_json::Value;

/// Emit a YAML document (no `---`, trailing newline).
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    emit_block(v, 0, &mut out);
    out
}

/// One item of a block sequence at `indent` (`- ...`), exactly as it appears inside
/// a whole document: a document's sequence is the concatenation of its items.
pub fn sequence_item(v: &Value, indent: usize) -> String {
    let mut out = String::new();
    emit_block(&Value::Array(vec![v.clone()]), indent, &mut out);
    out
}

fn emit_block(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                push_indent(out, indent);
                out.push_str(&scalar_inline(k));
                out.push(':');
                emit_value_after_key(val, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                push_indent(out, indent);
                out.push('-');
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // First key on the dash line, the rest aligned under it.
                        let mut first = true;
                        for (k, val) in m {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                push_indent(out, indent + 2);
                            }
                            out.push_str(&scalar_inline(k));
                            out.push(':');
                            emit_value_after_key(val, indent + 2, out);
                        }
                    }
                    Value::Array(inner) if !inner.is_empty() && inner.iter().all(is_scalar) => {
                        // A list of words (a runcmd command): one flow sequence.
                        let words: Vec<String> = inner.iter().map(inline).collect();
                        out.push_str(" [");
                        out.push_str(&words.join(", "));
                        out.push_str("]\n");
                    }
                    _ => emit_value_after_key(item, indent, out),
                }
            }
        }
        other => {
            push_indent(out, indent);
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

/// After `key:` or `-`: a nested block on the next lines, or a scalar on this line.
fn emit_value_after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            emit_block(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            emit_block(v, indent + 2, out);
        }
        Value::String(s) if literal_ok(s) => {
            out.push_str(" |");
            let body = s.trim_end_matches('\n');
            let trailing = s.len() - body.len();
            if s.starts_with(' ') {
                out.push('2'); // indentation indicator: content starts with spaces
            }
            match trailing {
                0 => out.push('-'),
                1 => {}
                _ => out.push('+'),
            }
            out.push('\n');
            for line in body.split('\n') {
                if !line.is_empty() {
                    push_indent(out, indent + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
            // Keep chomping: the extra trailing newlines are empty lines.
            for _ in 1..trailing {
                out.push('\n');
            }
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn push_indent(out: &mut String, n: usize) {
    const SPACES: &str = "                                ";
    let mut n = n;
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_inline(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A multi-line string that a literal block can hold exactly.
fn literal_ok(s: &str) -> bool {
    // Printable ASCII, newlines and tabs (the common case) need no char decoding.
    let printable = s.bytes().all(|b| b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b))
        || s.chars().all(|c| {
            c == '\n'
                || c == '\t'
                || (!c.is_control() && c != '\u{feff}' && c != '\u{2028}' && c != '\u{2029}' && c != '\u{85}')
        });
    s.contains('\n')
        && !s.starts_with('\n')
        && s.trim_end_matches('\n').contains(|c: char| c != '\n')
        && printable
        // A line of only blanks would change the detected indentation or be lost.
        && !s.lines().any(|l| !l.is_empty() && l.bytes().all(|b| b == b' ' || b == b'\t'))
}

/// A scalar on one line: plain when unambiguous, else double-quoted.
pub fn scalar_inline(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("strings serialize")
    }
}

/// Words YAML 1.1 (PyYAML) resolves to booleans or null, in any case.
const YAML11_WORDS: &[&str] = &["y", "yes", "n", "no", "true", "false", "on", "off", "null"];

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // Must start with a letter or '/', so it can never read as a number, date, time,
    // sexagesimal, `.inf`, `~`, `=`, `<<`, an anchor, a tag or an indicator.
    if !(first.is_ascii_alphabetic() || first == '/') {
        return false;
    }
    if YAML11_WORDS.iter().any(|w| w.eq_ignore_ascii_case(s)) {
        return false;
    }
    s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tricky_scalars_are_quoted() {
        for s in [
            "on",
            "No",
            "YES",
            "y",
            "off",
            "null",
            "~",
            "0644",
            "1e3",
            "0x1F",
            "1_000",
            "12:30",
            "=",
            ".inf",
            "2001-12-14",
            "-",
            "<<",
            "",
            " x",
            "a: b",
            "#x",
            "trail ",
            "{{ x }}",
            "'q'",
            "\"dq\"",
            "*a",
            "&a",
            "!t",
            "%x",
            "@x",
            "`x",
            "a,b",
            "[x]",
        ] {
            assert!(scalar_inline(s).starts_with('"'), "{s:?} -> {}", scalar_inline(s));
        }
        for s in ["worker-1", "/etc/mk8s-worker/plan.json", "root", "gz+b64", "mk8s-bootstrap.service"] {
            assert_eq!(scalar_inline(s), s);
        }
    }

    #[test]
    fn a_document_is_the_concatenation_of_its_items() {
        let items =
            vec![json!({"path": "/a", "content": "x\ny\n"}), json!({"path": "/b", "content": "on"}), json!(["a", "b"])];
        let whole = to_string(&json!({ "write_files": items }));
        let parts: String = items.iter().map(|i| sequence_item(i, 2)).collect();
        assert_eq!(whole, format!("write_files:\n{parts}"));
    }

    #[test]
    fn round_trips_through_serde_yaml() {
        let v = json!({
            "write_files": [
                {"path": "/a", "content": "line1\nline2\n", "permissions": "0600"},
                {"path": "/b", "content": "no newline\nat end", "owner": "root:root"},
                {"path": "/c", "content": "  indented first\nx\n\n\n"},
                {"path": "/d", "content": "tab\there\n\u{7}bell\n"},
                {"path": "/e", "content": "\nleading blank\n"},
                {"path": "/f", "content": "a\n   \nb\n"},
                {"path": "/g", "content": "x\r\ny\n"},
            ],
            "runcmd": [["systemctl", "enable", "--now", "x.service"], ["on", "0644"]],
            "empty_list": [],
            "empty_map": {},
            "flag": true,
            "n": 3,
        });
        let text = to_string(&v);
        let back: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, v, "\n{text}");
    }
}
