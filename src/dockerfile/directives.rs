//! Parser directives: `# syntax=`, `# escape=`, `# check=` at the very top of the file.
//!
//! They are read before the grammar runs because `escape` decides how every later line
//! is lexed. The rules (BuildKit's): a directive is a line `# name = value` (spaces
//! optional, name case-insensitive); only `syntax`, `escape` and `check` are known; the
//! first line that is not a known directive (a blank line, an ordinary comment, an unknown
//! name, an instruction) ends the scan for good; a repeated directive is an error; `escape`
//! takes only `` ` `` or `\`. Directive lines are comments to the grammar.

use super::ast::{Directives, Position, Span, Spanned};

/// Where a directive error is and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

fn is_re_space(c: char) -> bool {
    // Go RE2 `\s`: [\t\n\f\r ]
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

/// Match `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on one line; returns (name, value,
/// byte offset of the value within the line).
fn match_directive(line: &str) -> Option<(&str, &str, usize)> {
    let rest = line.strip_prefix('#')?;
    let after_ws = rest.trim_start_matches(is_re_space);
    let name_len = after_ws
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(after_ws.len());
    if name_len == 0 {
        return None;
    }
    let name = &after_ws[..name_len];
    let after_name = after_ws[name_len..].trim_start_matches(is_re_space);
    let after_eq = after_name.strip_prefix('=')?;
    let value_start = after_eq.trim_start_matches(is_re_space);
    let value = value_start.trim_end_matches(is_re_space);
    if value.is_empty() {
        return None;
    }
    let offset = line.len() - value_start.len();
    Some((name, value, offset))
}

/// Scan the directives at the top of `text` (BOM already removed).
pub fn scan(text: &str) -> Result<Directives, DirectiveError> {
    let mut d = Directives::default();
    let mut seen_escape = false;
    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.trim_end_matches(['\r', '\n']);
        let trimmed = raw.trim_start();
        let lead_chars = raw[..raw.len() - trimmed.len()].chars().count();
        let Some((name, value, off)) = match_directive(trimmed) else {
            break;
        };
        let col = lead_chars + trimmed[..off].chars().count() + 1;
        let span = Span {
            start: Position { line: line_no, col: lead_chars + 1 },
            end: Position { line: line_no, col: lead_chars + trimmed.chars().count() + 1 },
        };
        let lname = name.to_ascii_lowercase();
        let repeated = || DirectiveError {
            line: line_no,
            col: lead_chars + 1,
            message: format!(
                "only one {lname} parser directive can be used: remove this line or the earlier one"
            ),
        };
        match lname.as_str() {
            "escape" => {
                if seen_escape {
                    return Err(repeated());
                }
                seen_escape = true;
                d.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(DirectiveError {
                            line: line_no,
                            col,
                            message: format!(
                                "invalid escape character {value:?} in escape directive: expected ` or \\"
                            ),
                        })
                    }
                };
            }
            "syntax" => {
                if d.syntax.is_some() {
                    return Err(repeated());
                }
                d.syntax = Some(Spanned { span, value: value.to_string() });
            }
            "check" => {
                if d.check.is_some() {
                    return Err(repeated());
                }
                d.check = Some(Spanned { span, value: value.to_string() });
            }
            _ => break,
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_at_top_only() {
        let d = scan("# syntax=docker/dockerfile:1\n#ESCAPE = `\nFROM x\n# escape=\\\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.unwrap().value, "docker/dockerfile:1");
        let d = scan("# comment\n# escape=`\nFROM x\n").unwrap();
        assert_eq!(d.escape, '\\');
        let d = scan("\n# escape=`\nFROM x\n").unwrap();
        assert_eq!(d.escape, '\\');
        let d = scan("# unknown=1\n# escape=`\n").unwrap();
        assert_eq!(d.escape, '\\');
    }

    #[test]
    fn bad_and_repeated_directives() {
        let e = scan("# escape=x\n").unwrap_err();
        assert_eq!((e.line, e.col), (1, 10));
        let e = scan("# escape=`\n# escape=\\\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("only one escape"), "{}", e.message);
    }
}
