//! Errors and warnings about a configuration, each with a position.

use std::fmt;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// The configuration works but weakens a protection or is risky.
    Warning,
}

/// One message about the configuration: `file:line:column: error: message`.
///
/// ```
/// use portcullis::config::{Diagnostic, Severity};
/// let d = Diagnostic { severity: Severity::Error, file: "p.toml".into(), line: 3, column: 9,
///                      message: "limit must be above 0".into() };
/// assert_eq!(d.to_string(), "p.toml:3:9: error: limit must be above 0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or `<environment>` / `<default>`).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {kind}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}:{}: {kind}: {}", self.file, self.line, self.column, self.message)
        }
    }
}

/// Maps byte offsets in a source text to line and column numbers.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap {
    file: String,
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub(crate) fn new(file: impl Into<String>, text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { file: file.into(), line_starts }
    }

    /// A diagnostic at `offset` (a byte offset into the text), or without a
    /// position when `offset` is `None`.
    pub(crate) fn at(&self, severity: Severity, offset: Option<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = match offset {
            Some(offset) => {
                let line = self.line_starts.partition_point(|&start| start <= offset);
                let start = self.line_starts.get(line.saturating_sub(1)).copied().unwrap_or(0);
                (line, offset - start + 1)
            }
            None => (0, 0),
        };
        Diagnostic { severity, file: self.file.clone(), line, column, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let map = SourceMap::new("f.toml", "a = 1\nbb = 2\n");
        let d = map.at(Severity::Error, Some(6), "x");
        assert_eq!((d.line, d.column), (2, 1));
        let d = map.at(Severity::Error, Some(11), "x");
        assert_eq!((d.line, d.column), (2, 6));
        let d = map.at(Severity::Warning, Some(0), "x");
        assert_eq!((d.line, d.column), (1, 1));
    }
}
