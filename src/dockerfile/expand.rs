//! Docker's shell-word expansion: what BuildKit's shell lexer does to the arguments of
//! ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR ONBUILD (and ARG defaults).
//! RUN/CMD/ENTRYPOINT shell text is *not* expanded here: the shell in the container does it.
//!
//! # What a word goes through
//!
//! One left-to-right scan does quote removal, escape processing and `$` expansion together:
//!
//! | input            | result |
//! |------------------|--------|
//! | `\x` (unquoted)  | `x`; a trailing lone escape is dropped |
//! | `'...'`          | taken literally, nothing is special, no way to escape `'` |
//! | `"..."`          | `$` expands; the escape char escapes only `"`, `$` and itself, and is kept before anything else |
//! | `$name`, `${name}` | the value, or empty when unset; `$` not followed by a name start stays `$` |
//! | `$1`, `$@`, `$#`, ... | positional/special parameters: looked up like names, so normally empty |
//! | `${v:-w}` `${v-w}` | `w` when `v` is unset or empty (`:-`) / unset (`-`), else `v` |
//! | `${v:+w}` `${v+w}` | `w` when `v` is set and non-empty (`:+`) / set (`+`), else empty |
//! | `${v:?m}` `${v?m}` | `v`, or the error `v: m` when unset or empty / unset (default messages `is not allowed to be unset` / `... empty`) |
//! | `${v#p}` `${v##p}` | `v` without the shortest / longest prefix matching the pattern `p` |
//! | `${v%p}` `${v%%p}` | `v` without the shortest / longest suffix matching `p` |
//! | `${v/p/r}` `${v//p/r}` | first / every match of `p` (longest) replaced by `r` |
//!
//! The words `w`, `m`, `p`, `r` are expanded recursively. Patterns know `*` (any run),
//! `?` (one char) and `\*`, `\?`, `\\` escapes; `\}` and `\/` put a literal `}` or `/` into a
//! pattern. There are no bracket expressions. Quotes inside a pattern are removed but do
//! not make `*` literal (BuildKit does the same). Unsupported forms (`${v:=w}`, `${}`,
//! `${v:x}`) are errors, as in BuildKit.
//!
//! # Word splitting
//!
//! [`expand_words`] also splits the result into words (for EXPOSE and friends): unquoted
//! literal whitespace separates words, text produced by an *unquoted* `$` expansion is
//! split on whitespace, quoted text is never split, and an escaped whitespace char is kept.
//!
//! # Deliberate differences from BuildKit
//!
//! * The replacement of `${v/p/r}` is inserted literally; BuildKit hands it to Go's
//!   `Regexp.ReplaceAllString`, which would expand `$1`-style references in it.
//! * Windows rules (case-insensitive names) are not implemented.

use std::collections::BTreeSet;

use regex::Regex;
use thiserror::Error;

/// A failed expansion: the word that was being expanded and what went wrong.
///
/// Renders like BuildKit: `failed to process "he${X:?}": X: is not allowed to be unset`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    /// The word as written (before expansion).
    pub word: String,
    /// What went wrong.
    pub kind: ExpandErrorKind,
}

impl ExpandError {
    /// The error for `word`; a very long word is shortened (to its first 120 chars and `...`)
    /// so the message stays one readable line.
    fn new(word: &str, kind: ExpandErrorKind) -> Self {
        let word = match word.char_indices().nth(120) {
            Some((i, _)) => format!("{}...", &word[..i]),
            None => word.to_string(),
        };
        ExpandError { word, kind }
    }
}

/// The reasons an expansion fails.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExpandErrorKind {
    /// `'` without its closing quote.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// `"` without its closing quote.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// `${...` without its closing brace.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${v/pattern` without the `/` that starts the replacement.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    /// `${}`, `${{...}`, `${:...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${v:=w}`, `${v:x}`, `${.}` and the like.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${v:?msg}` / `${v?msg}` with `v` unset (or empty): BuildKit's `NAME: message`.
    #[error("{name}: {message}")]
    Required {
        /// The variable's name.
        name: String,
        /// The user's message, or `is not allowed to be unset` / `is not allowed to be empty`.
        message: String,
    },
    /// `${...}` nested deeper than [`MAX_NESTING`] levels.
    #[error("substitutions nested too deeply (more than {MAX_NESTING} levels of ${{...}}); simplify the expression")]
    NestedTooDeeply,
    /// A `#`, `%` or `/` pattern that cannot be used (a bad escape).
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern after expansion.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// How deep `${...}` substitutions may nest inside each other. Bounded so that no input can
/// exhaust the stack (the lexer is recursive); real Dockerfiles nest a few levels at most.
pub const MAX_NESTING: usize = 100;

/// The full result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word (no splitting), as [`expand_word`] returns it.
    pub value: String,
    /// The expanded word split into words, as [`expand_words`] returns it.
    pub words: Vec<String>,
    /// Names that were looked up and found set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Names that were looked up and found unset.
    pub unmatched: BTreeSet<String>,
}

/// Expands one word without splitting it (ENV values, WORKDIR, COPY sources, ...).
///
/// `env` returns the value of a variable, `None` when it is unset. `escape` is the
/// Dockerfile's escape character (`\` or `` ` ``).
pub fn expand_word(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ExpandError> {
    expand(word, env, escape).map(|e| e.value)
}

/// Expands one word and splits the result into words (EXPOSE and friends): whitespace
/// from unquoted literal text and from unquoted expansions separates words, quoted text
/// is kept together. Empty words are dropped.
pub fn expand_words(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    expand(word, env, escape).map(|e| e.words)
}

/// Expands one word and reports everything: the value, the split words and which
/// variables were looked up (set or unset).
pub fn expand(
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Expansion, ExpandError> {
    let mut lexer = Lexer::new(word, env, escape, false);
    match lexer.process_stop_on(None, false) {
        Ok((value, words)) => Ok(Expansion {
            value,
            words,
            matched: lexer.matched,
            unmatched: lexer.unmatched,
        }),
        Err(kind) => Err(ExpandError::new(word, kind)),
    }
}

/// Expands the body of an unquoted heredoc (`COPY <<EOF`): like [`expand_word`] but quotes
/// are plain text, and the escape char is always `\\` (BuildKit's `ExpandRaw`).
pub fn expand_heredoc(
    body: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new(body, env, '\\', false);
    lexer.process_quotes = false;
    lexer
        .process_stop_on(None, false)
        .map(|(value, _)| value)
        .map_err(|kind| ExpandError::new(body, kind))
}

/// The names of the variables a word references, whatever their values: what a cache key
/// must capture for this word. Names inside single quotes or escaped (`\$x`) are not
/// references. Positional and special parameters (`$1`, `$@`, ...) are left out: they can
/// never be set. Only syntax errors (an unterminated quote, `${}`, ...) fail; `${v:?}`
/// does not.
pub fn referenced_vars(word: &str, escape: char) -> Result<BTreeSet<String>, ExpandError> {
    let unset = |_: &str| None;
    let mut lexer = Lexer::new(word, &unset, escape, true);
    match lexer.process_stop_on(None, false) {
        Ok(_) => Ok(lexer
            .matched
            .into_iter()
            .chain(lexer.unmatched)
            .filter(|n| is_name(n))
            .collect()),
        Err(kind) => Err(ExpandError::new(word, kind)),
    }
}

/// True for a name a Dockerfile can set: a letter or `_` first, then letters, digits, `_`.
fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// Accumulates the split words: the Rust twin of BuildKit's `wordsStruct`.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    /// A char subject to splitting: whitespace ends the current word.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Keep escape chars in the output (inside `#`, `%` and `/` patterns).
    raw_escapes: bool,
    /// Only collecting names: `?` checks and pattern errors do not fail.
    lenient: bool,
    /// Quotes are special (false for heredoc bodies: they are plain text there).
    process_quotes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    /// Current `${...}` nesting depth.
    depth: usize,
}

impl<'a> Lexer<'a> {
    fn new(
        word: &str,
        env: &'a dyn Fn(&str) -> Option<String>,
        escape: char,
        lenient: bool,
    ) -> Self {
        Lexer {
            chars: word.chars().collect(),
            pos: 0,
            escape,
            env,
            raw_escapes: false,
            lenient,
            process_quotes: true,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = (self.env)(name);
        if value.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        value
    }

    /// Processes up to `stop` (consumed) or the end of input when `stop` is `None`.
    /// Returns the unsplit result and the split words.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let result = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    words.add_string(&value);
                    result.push_str(&value);
                }
                '\'' if self.process_quotes => {
                    let value = self.process_single_quote()?;
                    words.add_raw_string(&value);
                    result.push_str(&value);
                }
                '"' if self.process_quotes => {
                    let value = self.process_double_quote()?;
                    words.add_raw_string(&value);
                    result.push_str(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape char escapes the next char; a trailing one is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            None => Ok((result, words.finish())),
            Some('}') => Err(ExpandErrorKind::MissingBrace),
            Some(_) => Err(ExpandErrorKind::MissingSlash),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1; // the opening quote
        let mut result = String::new();
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedSingleQuote),
                Some('\'') => return Ok(result),
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1; // the opening quote
        let mut result = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // The loop reports the missing closing quote.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            // Anything else: the escape char stays as it is.
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// Reads a name after `$` or `${`: letters, digits and `_`; or a run of digits
    /// (positional parameter); or one special parameter char. Empty when none.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, ExpandErrorKind> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandErrorKind::NestedTooDeeply);
        }
        self.depth += 1;
        let r = self.process_dollar_inner();
        self.depth -= 1;
        r
    }

    fn process_dollar_inner(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.get_env(&name).unwrap_or_default());
        }
        self.pos += 1; // the '{'
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(first) = self.next() else {
            return Err(ExpandErrorKind::MissingBrace);
        };
        match first {
            '}' => Ok(self.get_env(&name).unwrap_or_default()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = first.to_string();
                let mut op = first;
                let null_is_unset = first == ':';
                if null_is_unset {
                    match self.next() {
                        Some(c) => {
                            op = c;
                            modifier.push(c);
                        }
                        None => return Err(ExpandErrorKind::MissingBrace),
                    }
                }
                let raw = op == '#' || op == '%';
                let (word, _) = self.process_stop_on(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        ExpandErrorKind::MissingBrace
                    } else {
                        e
                    }
                })?;
                let value = self.get_env(&name);
                let empty_or_unset = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match op {
                    '-' => Ok(if empty_or_unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty_or_unset { String::new() } else { word }),
                    '?' => {
                        if empty_or_unset && !self.lenient {
                            let message = if !word.is_empty() {
                                word
                            } else if value.is_none() {
                                "is not allowed to be unset".to_string()
                            } else {
                                "is not allowed to be empty".to_string()
                            };
                            return Err(ExpandErrorKind::Required { name, message });
                        }
                        Ok(value.unwrap_or_default())
                    }
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        // `##`/`%%`: the longest match; `#`/`%`: the shortest.
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest.to_string(), true),
                            None => (word, false),
                        };
                        let trimmed = if op == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        };
                        match trimmed {
                            Ok(v) => Ok(v),
                            Err(_) if self.lenient => Ok(value),
                            Err(e) => Err(e),
                        }
                    }
                    _ => Err(ExpandErrorKind::UnsupportedModifier(modifier)),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.pos += 1;
                }
                let (pattern, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        ExpandErrorKind::MissingSlash
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.process_stop_on(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        ExpandErrorKind::MissingBrace
                    } else {
                        e
                    }
                })?;
                let value = self.get_env(&name).unwrap_or_default();
                let re = match shell_pattern_to_regex(&pattern, true, false) {
                    Ok(re) => re,
                    Err(_) if self.lenient => return Ok(value),
                    Err(e) => return Err(e),
                };
                if replace_all {
                    Ok(re
                        .replace_all(&value, regex::NoExpand(&replacement))
                        .into_owned())
                } else {
                    Ok(re
                        .replace(&value, regex::NoExpand(&replacement))
                        .into_owned())
                }
            }
            other => Err(ExpandErrorKind::UnsupportedModifier(other.to_string())),
        }
    }
}

/// POSIX special parameters (`$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`, `$0`).
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Converts a shell pattern (`*`, `?`, `\*`, `\?`, `\\`; `\}` and `\/` are a plain `}`
/// and `/`) to a regex. `greedy` picks the longest match for `*`, else the shortest;
/// `anchored` matches only at the start.
fn shell_pattern_to_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<Regex, ExpandErrorKind> {
    let invalid = |reason: String| ExpandErrorKind::InvalidPattern {
        pattern: pattern.to_string(),
        reason,
    };
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    // `.` does not match a newline, as in Go's regexp (BuildKit uses it).
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => match chars.peek().copied() {
                // `}` and `/` must be escaped inside `${}`; the escape is not part of the pattern.
                Some('}' | '/') => {}
                Some(c @ ('*' | '?' | '\\')) => {
                    chars.next();
                    out.push('\\');
                    out.push(c);
                }
                Some(c) => return Err(invalid(format!("invalid escape '\\{c}'"))),
                None => return Err(invalid("trailing escape character".to_string())),
            },
            c => {
                let mut buf = [0u8; 4];
                out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
            }
        }
    }
    Regex::new(&out).map_err(|e| invalid(e.to_string()))
}

/// Removes the shortest (or longest, when `greedy`) prefix of `value` matching `pattern`.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandErrorKind> {
    let re = shell_pattern_to_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Removes the shortest (or longest) suffix: a leftmost prefix search over the reversed
/// value with the reversed pattern (escape pairs such as `\*` keep their order).
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandErrorKind> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern unit by unit, where `\x` is one unit: `a\*c` → `c\*a`.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        units.push(&chars[i..i + len]);
        i += len;
    }
    units.iter().rev().flat_map(|u| u.iter()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("\\\\b"), "b\\\\");
    }

    #[test]
    fn pattern_conversion_rejects_bad_escapes() {
        for bad in ["\\", "\\x", "\\\\\\"] {
            assert!(shell_pattern_to_regex(bad, true, true).is_err(), "{bad:?}");
        }
        let re = shell_pattern_to_regex("(()[]{\\}^$.\\*\\?|\\\\", true, true).unwrap();
        assert!(re.is_match("(()[]{}^$.*?|\\"));
        assert!(!re.is_match("(()[]{}^$x*?|\\"));
    }

    #[test]
    fn required_message_default_texts() {
        let env = env_of(&[("EMPTY", "")]);
        let err = expand_word("${X?}", &env, '\\').unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to process \"${X?}\": X: is not allowed to be unset"
        );
        let err = expand_word("${EMPTY:?}", &env, '\\').unwrap_err();
        assert_eq!(err.kind.to_string(), "EMPTY: is not allowed to be empty");
    }

    #[test]
    fn backtick_escape() {
        let env = env_of(&[("A", "x")]);
        assert_eq!(expand_word("`$A$A", &env, '`').unwrap(), "$Ax");
        assert_eq!(expand_word("a\\b", &env, '`').unwrap(), "a\\b");
        assert_eq!(expand_word("\"`\"\"", &env, '`').unwrap(), "\"");
    }
}
