//! Parse errors that know where they came from.
//!
//! Rendered as
//!
//! ```text
//! Dockerfile:3:6: COPY requires at least two arguments, but got one: expected COPY <src>... <dest>
//!   3 | COPY foo
//!     |      ^
//! ```
//!
//! The first line is the one-line summary (`path:line:col: message`); the two lines after
//! it show the offending source line and a caret under the column. `summary()` gives
//! the first line alone.

use std::fmt;
use std::path::PathBuf;

/// A Dockerfile syntax or structure error at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The path the caller gave (printed as is).
    pub path: PathBuf,
    pub line: usize,
    /// 1-based column in characters.
    pub col: usize,
    /// What is wrong and what was expected, lower-case except for keywords.
    pub message: String,
    /// The offending physical line (without its newline); empty when past the end.
    pub source_line: String,
}

impl ParseError {
    /// `path:line:col: message`, without the source excerpt.
    pub fn summary(&self) -> String {
        format!("{}:{}:{}: {}", self.path.display(), self.line, self.col, self.message)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())?;
        if self.line == 0 {
            return Ok(());
        }
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        // Tabs before the column are kept so the caret lines up under them.
        let lead: String = self
            .source_line
            .chars()
            .take(self.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let shown: String =
            self.source_line.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }).collect();
        write!(f, "\n  {num} | {shown}\n  {pad} | {lead}^")
    }
}

impl std::error::Error for ParseError {}
