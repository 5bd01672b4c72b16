//! Problems found in the input, each with a path into the YAML, a position, what is
//! wrong and how to fix it; printed rustc-style with the offending source line.

use std::fmt::Write as _;

use serde::Serialize;

use crate::spans::SpanMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// `$.workers[3].name`
    pub path: String,
    pub message: String,
    /// What the user can do about it.
    pub help: Option<String>,
    /// Point at the key instead of the value (unknown keys).
    #[serde(skip)]
    pub at_key: bool,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Characters of a source line shown with a problem.
pub const EXCERPT_CHARS: usize = 100;

/// A long source line cut to a window of [`EXCERPT_CHARS`] around `col` (1-based,
/// in characters), with `…` where it was cut; returns the line and the new column.
fn excerpt(text: &str, col: usize) -> (String, usize) {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= EXCERPT_CHARS {
        return (text.to_string(), col);
    }
    let start = col.saturating_sub(EXCERPT_CHARS / 4 + 1).min(chars.len().saturating_sub(EXCERPT_CHARS));
    let end = (start + EXCERPT_CHARS).min(chars.len());
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    s.extend(&chars[start..end]);
    if end < chars.len() {
        s.push('…');
    }
    (s, col - start + usize::from(start > 0))
}

/// Every problem in one input file.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>, help: &str) {
        self.push(Severity::Error, path.into(), message.into(), help, false);
    }

    pub fn warning(&mut self, path: impl Into<String>, message: impl Into<String>, help: &str) {
        self.push(Severity::Warning, path.into(), message.into(), help, false);
    }

    pub fn error_at_key(&mut self, path: impl Into<String>, message: impl Into<String>, help: &str) {
        self.push(Severity::Error, path.into(), message.into(), help, true);
    }

    fn push(&mut self, severity: Severity, path: String, message: String, help: &str, at_key: bool) {
        let help = (!help.is_empty()).then(|| help.to_string());
        self.problems.push(Problem { severity, path, message, help, at_key, line: None, column: None });
    }

    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| p.severity == Severity::Error).count()
    }

    /// Fill in line and column from the source's span map.
    pub fn locate(&mut self, spans: &SpanMap) {
        for p in &mut self.problems {
            if p.line.is_some() {
                continue;
            }
            let pos = if p.at_key { spans.key(&p.path) } else { spans.value(&p.path) };
            if let Some(pos) = pos {
                p.line = Some(pos.line);
                p.column = Some(pos.col);
            }
        }
    }

    /// Render every problem for a terminal, with the source line and a caret.
    pub fn render(&self, file: &str, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let mut out = String::new();
        for p in &self.problems {
            let sev = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(out, "{sev}[{}]: {}", p.path, p.message);
            if let (Some(line), Some(col)) = (p.line, p.column) {
                let _ = writeln!(out, "  --> {file}:{line}:{col}");
                if let Some(text) = lines.get(line - 1) {
                    let (text, col) = excerpt(text, col);
                    let w = line.to_string().len();
                    let _ = writeln!(out, "{:w$} |", "");
                    let _ = writeln!(out, "{line} | {text}");
                    let _ = writeln!(out, "{:w$} | {:>col$}", "", "^");
                }
            } else {
                let _ = writeln!(out, "  --> {file}");
            }
            if let Some(h) = &p.help {
                let _ = writeln!(out, "  = help: {h}");
            }
            out.push('\n');
        }
        let (e, w) = (self.errors(), self.problems.len() - self.errors());
        let _ = writeln!(out, "{file}: {e} error(s), {w} warning(s)");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_source_lines_are_cut_around_the_caret() {
        let line = format!("name: {}", "x".repeat(50_000));
        let (shown, col) = excerpt(&line, 7);
        assert_eq!(shown.chars().count(), EXCERPT_CHARS + 1);
        assert!(shown.starts_with("name: x") && shown.ends_with('…'));
        assert_eq!(col, 7);
        let (shown, col) = excerpt(&line, 30_000);
        assert!(shown.starts_with('…') && shown.ends_with('…'));
        assert_eq!(shown.chars().nth(col - 1), Some('x'));
        assert_eq!(excerpt("short", 3), ("short".to_string(), 3));
    }
}
