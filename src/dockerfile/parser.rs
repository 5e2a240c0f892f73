//! Dockerfile text → [`RawNode`]s (with the pest grammar) → typed [`Instruction`]s → stages.
//!
//! Lexing and the line structure are the grammar's job (`grammar/dockerfile.pest`: blank
//! and comment lines, continuations, keyword, flags, JSON arrays, word splits, heredoc
//! markers, mount specs). This file drives it: it applies `step` from the current offset,
//! joins the pieces of an instruction into its logical line (keeping a map back to the
//! original offsets for error columns), reads heredoc bodies (a body ends at a line equal
//! to a delimiter known only at run time, so a loop is simpler than a grammar), and turns
//! the pest pairs into AST values. pest types never leave this file.
//!
//! The escape character changes lexing, and pest grammars have no parameters, so two
//! parsers are generated from the same rules (`esc` comes from `escape_backslash.pest` or
//! `escape_backtick.pest`). Their `Rule` enums have the same variants in the same order;
//! pairs of both are converted into one small token tree (`Tok`) keyed by the backslash
//! parser's `Rule`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use pest::Parser as _;

use super::ast::*;
use super::directives;
use super::error::ParseError;

mod grammar {
    pub mod backslash {
        #[derive(pest_derive::Parser)]
        #[grammar = "grammar/dockerfile.pest"]
        #[grammar = "grammar/escape_backslash.pest"]
        pub struct Grammar;
    }
    pub mod backtick {
        #[derive(pest_derive::Parser)]
        #[grammar = "grammar/dockerfile.pest"]
        #[grammar = "grammar/escape_backtick.pest"]
        pub struct Grammar;
    }
}

use grammar::backslash::Rule;

// `Rule` is `EOI` followed by the grammar's rules in file order; `all_rules()` lists the
// grammar's rules (without `EOI`) in the same order. So a variant's position in
// `all_rules()` is its discriminant minus the first rule's discriminant, in both enums.
impl std::convert::From<grammar::backtick::Rule> for Rule {
    fn from(r: grammar::backtick::Rule) -> Rule {
        use grammar::backtick::Rule as B;
        if r == B::EOI {
            return Rule::EOI;
        }
        let first = B::all_rules().first().map(|f| *f as usize).unwrap_or(0);
        Rule::all_rules().get((r as usize).wrapping_sub(first)).copied().unwrap_or(Rule::EOI)
    }
}

fn to_backtick(r: Rule) -> Option<grammar::backtick::Rule> {
    use grammar::backtick::Rule as B;
    if r == Rule::EOI {
        return Some(B::EOI);
    }
    let first = Rule::all_rules().first().map(|f| *f as usize)?;
    B::all_rules().get((r as usize).checked_sub(first)?).copied()
}

/// A pest pair, detached from the generated types.
#[derive(Debug)]
struct Tok<'a> {
    rule: Rule,
    start: usize,
    end: usize,
    text: &'a str,
    children: Vec<Tok<'a>>,
}

impl<'a> Tok<'a> {
    fn child(&self, rule: Rule) -> Option<&Tok<'a>> {
        self.children.iter().find(|t| t.rule == rule)
    }
}

fn convert<R: pest::RuleType + Into<Rule>>(pairs: pest::iterators::Pairs<'_, R>) -> Vec<Tok<'_>> {
    pairs
        .map(|p| {
            let span = p.as_span();
            Tok {
                rule: p.as_rule().into(),
                start: span.start(),
                end: span.end(),
                text: span.as_str(),
                children: convert(p.into_inner()),
            }
        })
        .collect()
}

/// Apply `rule` to `input`; `None` when it does not match.
fn lex(esc: char, rule: Rule, input: &str) -> Option<Vec<Tok<'_>>> {
    if esc == '`' {
        let r = to_backtick(rule)?;
        grammar::backtick::Grammar::parse(r, input).ok().map(convert)
    } else {
        grammar::backslash::Grammar::parse(rule, input).ok().map(convert)
    }
}

/// The line-level parse of a whole file (BuildKit's `parser.Result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDockerfile {
    pub directives: Directives,
    pub nodes: Vec<RawNode>,
}

impl RawDockerfile {
    /// BuildKit's dump format, one line per instruction, no final newline.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self.nodes.iter().map(|n| format!("({})", n.dump())).collect();
        lines.join("\n")
    }
}

// ---------------------------------------------------------------------------------------
// Source positions
// ---------------------------------------------------------------------------------------

struct Src<'a> {
    text: &'a str,
    path: &'a Path,
    line_starts: Vec<usize>,
}

impl<'a> Src<'a> {
    fn new(text: &'a str, path: &'a Path) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Src { text, path, line_starts }
    }

    fn pos(&self, off: usize) -> Position {
        let idx = match self.line_starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(idx).copied().unwrap_or(0);
        let col = self.text.get(start..off).map(|s| s.chars().count()).unwrap_or(0) + 1;
        Position { line: idx + 1, col }
    }

    fn line_text(&self, line: usize) -> &'a str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self.line_starts.get(line).map(|e| e - 1).unwrap_or(self.text.len());
        self.text.get(start..end).unwrap_or("").trim_end_matches('\r')
    }

    fn err(&self, p: Position, message: String) -> ParseError {
        ParseError {
            path: self.path.to_path_buf(),
            line: p.line,
            col: p.col,
            message,
            source_line: self.line_text(p.line).to_string(),
        }
    }
}

/// A logical line (continuations joined) and the way back to original offsets.
struct Logical {
    text: String,
    /// (offset in `text`, offset in the file) at the start of each joined piece.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    fn orig(&self, loff: usize) -> usize {
        let idx = match self.pieces.binary_search_by(|p| p.0.cmp(&loff)) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let (l, o) = self.pieces.get(idx).copied().unwrap_or((0, 0));
        o + (loff - l.min(loff))
    }
}

struct Ctx<'s, 'a> {
    src: &'s Src<'a>,
    esc: char,
}

impl Ctx<'_, '_> {
    fn at(&self, lg: &Logical, loff: usize) -> Position {
        self.src.pos(lg.orig(loff))
    }
}

// ---------------------------------------------------------------------------------------
// The line level
// ---------------------------------------------------------------------------------------

/// A parsed logical line plus the positions the typed layer points its errors at.
#[derive(Debug)]
struct Parsed {
    node: RawNode,
    keyword: Position,
    flags: Vec<Position>,
    /// Start of the argument text (or just after the keyword when there is none).
    args: Position,
    sub: Option<Box<Parsed>>,
}

/// A heredoc marker found on a line, before its body is read.
struct Marker {
    name: String,
    chomp: bool,
    fd: Option<u32>,
    expand: bool,
    pos: Position,
    end: Position,
}

/// `ONBUILD ONBUILD ...` is rejected by the typed layer; the line level only bounds the
/// recursion so that no input can exhaust the stack.
const MAX_ONBUILD_DEPTH: usize = 4;

const KEYWORDS: &[&str] = &[
    "add", "arg", "cmd", "copy", "entrypoint", "env", "expose", "from", "healthcheck", "label",
    "maintainer", "onbuild", "run", "shell", "stopsignal", "user", "volume", "workdir",
];

/// Parse the whole file at the line level.
pub fn parse_raw(text: &str, path: &Path) -> Result<RawDockerfile, ParseError> {
    let (directives, parsed) = parse_lines(text, path)?;
    Ok(RawDockerfile { directives, nodes: parsed.into_iter().map(|p| p.node).collect() })
}

fn parse_lines(text: &str, path: &Path) -> Result<(Directives, Vec<Parsed>), ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let src = Src::new(text, path);
    let directives = directives::scan(text).map_err(|e| {
        src.err(Position { line: e.line, col: e.col }, e.message)
    })?;
    let cx = Ctx { src: &src, esc: directives.escape };
    let mut parsed = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let toks = lex(cx.esc, Rule::step, rest)
            .ok_or_else(|| src.err(src.pos(pos), "cannot read this line".to_string()))?;
        let Some(tok) = toks.first() else { break };
        let end = pos + tok.end.max(1);
        if tok.rule != Rule::instruction {
            pos = end;
            continue;
        }
        // Join the segments into the logical line.
        let mut lg = Logical { text: String::new(), pieces: Vec::new() };
        for seg in tok.children.iter().filter(|t| t.rule == Rule::seg) {
            lg.pieces.push((lg.text.len(), pos + seg.start));
            lg.text.push_str(seg.text);
        }
        let start_off = pos + tok.children.first().map(|s| s.start).unwrap_or(0);
        pos = end;
        let trimmed = lg.text.trim();
        if trimmed.is_empty() {
            continue;
        }
        let lead = lg.text.len() - lg.text.trim_start().len();
        let line_text = trimmed.to_string();
        let mut p = parse_line(&cx, &lg, &line_text, lead, 0)?;

        // The instruction ends before the newline of its last line.
        let mut end_off = end;
        if text[..end_off].ends_with('\n') {
            end_off -= 1;
            while text[..end_off].ends_with('\r') {
                end_off -= 1;
            }
        }
        let markers = heredoc_markers(&cx, &lg, &p, lead);
        for m in markers {
            let mut content = String::new();
            let mut terminated = false;
            while pos < text.len() {
                let line_end = text[pos..].find('\n').map(|i| pos + i).unwrap_or(text.len());
                let line = text[pos..line_end].trim_end_matches('\r');
                let next = (line_end + 1).min(text.len());
                let cmp = if m.chomp { line.trim_start_matches('\t') } else { line };
                end_off = line_end;
                pos = next;
                if cmp == m.name {
                    terminated = true;
                    break;
                }
                content.push_str(cmp);
                content.push('\n');
            }
            if !terminated {
                return Err(src.err(
                    m.pos,
                    format!(
                        "unterminated heredoc in {}: expected a line {:?} to end it before the end of the file",
                        p.node.keyword.to_uppercase(),
                        m.name
                    ),
                ));
            }
            p.node.heredocs.push(Heredoc {
                name: m.name,
                content,
                expand: m.expand,
                chomp: m.chomp,
                fd: m.fd,
                span: Span { start: m.pos, end: m.end },
            });
        }
        let end_pos = src.pos(end_off);
        p.node.span = Span { start: src.pos(start_off), end: end_pos };
        if let Some(sub) = p.sub.as_mut() {
            sub.node.span = p.node.span;
            p.node.onbuild = Some(Box::new(sub.node.clone()));
        }
        parsed.push(p);
    }
    if parsed.is_empty() {
        let p = src.pos(text.len());
        return Err(src.err(p, "file with no instructions: expected at least a FROM line".to_string()));
    }
    Ok((directives, parsed))
}

/// Parse one logical line (or ONBUILD's rest): `line` starts at `base` in `lg.text`.
fn parse_line(cx: &Ctx, lg: &Logical, line: &str, base: usize, depth: usize) -> Result<Parsed, ParseError> {
    let toks = lex(cx.esc, Rule::line, line)
        .ok_or_else(|| cx.src.err(cx.at(lg, base), "cannot parse this instruction".to_string()))?;
    let empty = Tok { rule: Rule::line, start: 0, end: 0, text: "", children: Vec::new() };
    let tok = toks.first().unwrap_or(&empty);
    let kw = tok.child(Rule::keyword).map(|t| (t.start, t.end, t.text)).unwrap_or((0, 0, ""));
    let keyword = kw.2.to_string();
    let lower = keyword.to_lowercase();
    let kw_pos = cx.at(lg, base + kw.0);
    if !KEYWORDS.contains(&lower.as_str()) {
        let hint = suggest(&lower)
            .map(|k| format!("did you mean {}?", k.to_uppercase()))
            .unwrap_or_else(|| "expected one of FROM, RUN, CMD, LABEL, EXPOSE, ENV, ADD, COPY, ENTRYPOINT, VOLUME, USER, WORKDIR, ARG, ONBUILD, STOPSIGNAL, HEALTHCHECK, SHELL, MAINTAINER".to_string());
        return Err(cx.src.err(kw_pos, format!("unknown instruction {keyword}: {hint}")));
    }
    let mut flags = Vec::new();
    let mut flag_pos = Vec::new();
    let mut args_text = "";
    let mut args_off = base + kw.1;
    for t in &tok.children {
        match t.rule {
            Rule::flag => {
                flags.push(decode_flag(t.text, cx.esc));
                flag_pos.push(cx.at(lg, base + t.start));
            }
            Rule::rest => {
                let trimmed_start = t.text.trim_start();
                args_off = base + t.start + (t.text.len() - trimmed_start.len());
                args_text = trimmed_start.trim_end();
            }
            _ => {}
        }
    }
    let args_pos = cx.at(lg, args_off);
    let mut node = RawNode {
        span: Span::default(),
        original: line.to_string(),
        keyword: keyword.clone(),
        flags,
        args: Vec::new(),
        json: false,
        heredocs: Vec::new(),
        onbuild: None,
    };
    let mut sub = None;
    let upper = lower.to_uppercase();
    match lower.as_str() {
        "add" | "copy" | "volume" => {
            match parse_json(cx, args_text, &upper, args_pos)? {
                Some(v) => {
                    node.args = v;
                    node.json = true;
                }
                None => node.args = ws_words(cx, args_text),
            }
        }
        "run" | "cmd" | "entrypoint" | "shell" => {
            let (args, json) = maybe_json(cx, args_text, &upper, args_pos)?;
            node.args = args;
            node.json = json;
        }
        "env" | "label" => node.args = name_val(cx, lg, args_text, args_off, &upper)?,
        "arg" => node.args = q_words(cx, args_text).into_iter().map(|(w, _)| w).collect(),
        "from" | "expose" => node.args = ws_words(cx, args_text),
        "healthcheck" => {
            if !args_text.is_empty() {
                let toks = lex(cx.esc, Rule::health, args_text).unwrap_or_default();
                let h = toks.first();
                let typ = h.and_then(|h| h.child(Rule::health_type)).map(|t| t.text).unwrap_or(args_text);
                let rest = h.and_then(|h| h.child(Rule::rest)).map(|t| t.text).unwrap_or("");
                node.args.push(typ.to_string());
                let (more, json) = maybe_json(cx, rest, &upper, args_pos)?;
                node.args.extend(more);
                node.json = json;
            }
        }
        "onbuild" => {
            if depth >= MAX_ONBUILD_DEPTH {
                return Err(cx.src.err(
                    args_pos,
                    "ONBUILD nested too deeply: expected ONBUILD <instruction> with one trigger".to_string(),
                ));
            }
            if !args_text.is_empty() {
                let p = parse_line(cx, lg, args_text, args_off, depth + 1)?;
                sub = Some(Box::new(p));
            }
        }
        _ => {
            if !args_text.is_empty() {
                node.args.push(args_text.to_string());
            }
        }
    }
    Ok(Parsed { node, keyword: kw_pos, flags: flag_pos, args: args_pos, sub })
}

/// The closest keyword within two edits, for "did you mean".
fn suggest(word: &str) -> Option<&'static str> {
    fn dist(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != cb);
                cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    }
    if word.chars().count() > 20 {
        return None;
    }
    KEYWORDS.iter().map(|k| (dist(word, k), *k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

/// Remove quotes from a flag word; the escape character escapes the next character.
fn decode_flag(word: &str, esc: char) -> String {
    let mut out = String::with_capacity(word.len());
    let mut quote: Option<char> = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c == '"' || c == '\'' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ if c == esc => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn ws_words(cx: &Ctx, text: &str) -> Vec<String> {
    let Some(toks) = lex(cx.esc, Rule::ws_words, text) else {
        return if text.is_empty() { Vec::new() } else { vec![text.to_string()] };
    };
    toks.first()
        .map(|t| t.children.iter().filter(|w| w.rule == Rule::ws_word).map(|w| w.text.to_string()).collect())
        .unwrap_or_default()
}

/// Quote-aware words (quotes kept), with their byte offsets in `text`.
fn q_words(cx: &Ctx, text: &str) -> Vec<(String, usize)> {
    let Some(toks) = lex(cx.esc, Rule::q_words, text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for w in toks.first().map(|t| t.children.as_slice()).unwrap_or(&[]) {
        if w.rule != Rule::q_word {
            continue;
        }
        let mut word = w.text;
        if let Some(t) = w.children.iter().find(|c| c.rule == Rule::q_trailing_esc) {
            word = &word[..t.start - w.start];
        }
        if !word.is_empty() {
            out.push((word.to_string(), w.start));
        }
    }
    out
}

/// ENV / LABEL: `key value...` (legacy) or `k=v k2=v2`, as (key, value, sep) triples.
fn name_val(cx: &Ctx, lg: &Logical, text: &str, base: usize, kw: &str) -> Result<Vec<String>, ParseError> {
    let at = cx.at(lg, base);
    let words = q_words(cx, text);
    let Some((first, _)) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let toks = lex(cx.esc, Rule::name_val_legacy, text).unwrap_or_default();
        let t = toks.first();
        let key = t.and_then(|t| t.child(Rule::ws_word)).map(|w| w.text).unwrap_or(text);
        let Some(value) = t.and_then(|t| t.child(Rule::rest)).map(|w| w.text) else {
            return Err(cx.src.err(
                at,
                format!("{kw} must have two arguments: expected {kw} {key}=<value> or {kw} {key} <value>"),
            ));
        };
        return Ok(vec![key.to_string(), value.to_string(), String::new()]);
    }
    let mut out = Vec::new();
    for (w, off) in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(cx.src.err(
                cx.at(lg, base + off),
                format!("{kw} cannot find = in {w:?}: expected {kw} <key>=<value>..."),
            ));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(out)
}

/// RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK: a JSON array of strings, else one shell string.
fn maybe_json(cx: &Ctx, text: &str, kw: &str, at: Position) -> Result<(Vec<String>, bool), ParseError> {
    if text.is_empty() {
        return Ok((Vec::new(), false));
    }
    match parse_json(cx, text, kw, at)? {
        Some(v) => Ok((v, true)),
        None => Ok((vec![text.to_string()], false)),
    }
}

const MAX_JSON_DEPTH: usize = 128;

/// `Some(strings)` for a JSON array of strings, `None` for text that is not a JSON array
/// (shell form), an error for a JSON array holding something other than strings.
fn parse_json(cx: &Ctx, text: &str, kw: &str, at: Position) -> Result<Option<Vec<String>>, ParseError> {
    if !text.starts_with('[') {
        return Ok(None);
    }
    let not_strings = || {
        cx.src.err(
            at,
            format!(
                "{kw} exec form must be a JSON array of strings: expected {kw} [\"executable\", \"param\"...]"
            ),
        )
    };
    // Bound the grammar's recursion: deeper nesting can only be a non-string element.
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(not_strings());
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let Some(toks) = lex(cx.esc, Rule::json_array, text) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for t in toks.first().map(|t| t.children.as_slice()).unwrap_or(&[]) {
        match t.rule {
            Rule::json_string => out.push(decode_json_string(t.text)),
            Rule::json_other => return Err(not_strings()),
            _ => {}
        }
    }
    Ok(Some(out))
}

/// Decode a JSON string literal the grammar has validated (quotes included).
fn decode_json_string(lit: &str) -> String {
    let inner = lit.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(lit);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    let hex4 = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Option<u32> {
        let s: String = chars.by_ref().take(4).collect();
        u32::from_str_radix(&s, 16).ok()
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let Some(hi) = hex4(&mut chars) else { break };
                if (0xD800..0xDC00).contains(&hi) {
                    // A surrogate pair, if a low surrogate follows.
                    let mut look = chars.clone();
                    if look.next() == Some('\\') && look.next() == Some('u') {
                        if let Some(lo) = hex4(&mut look) {
                            if (0xDC00..0xE000).contains(&lo) {
                                chars = look;
                                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                                continue;
                            }
                        }
                    }
                    out.push('\u{FFFD}');
                } else {
                    out.push(char::from_u32(hi).unwrap_or('\u{FFFD}'));
                }
            }
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// Heredoc markers of a RUN/COPY/ADD line in shell form.
fn heredoc_markers(cx: &Ctx, lg: &Logical, p: &Parsed, lead: usize) -> Vec<Marker> {
    let kw = p.node.keyword.to_lowercase();
    if !matches!(kw.as_str(), "run" | "copy" | "add") || p.node.json {
        return Vec::new();
    }
    // `original` is the logical line from `lead` on.
    let line = &p.node.original;
    if !line.contains("<<") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (word, off) in q_words(cx, line) {
        if let Some(m) = heredoc_of_word(cx, &word) {
            let end = cx.at(lg, lead + off + word.len());
            out.push(Marker { pos: cx.at(lg, lead + off), end, ..m });
        }
    }
    out
}

/// `[fd]<<[-]DELIM` → a marker (position filled in by the caller).
fn heredoc_of_word(cx: &Ctx, word: &str) -> Option<Marker> {
    if !word.contains("<<") {
        return None;
    }
    let toks = lex(cx.esc, Rule::heredoc_marker, word)?;
    let t = toks.first()?;
    let raw = t.child(Rule::heredoc_word)?.text;
    let (name, quoted) = unquote_delimiter(raw)?;
    if name.is_empty() {
        return None;
    }
    Some(Marker {
        name,
        chomp: t.child(Rule::heredoc_chomp).is_some(),
        fd: t.child(Rule::heredoc_fd).and_then(|f| f.text.parse().ok()),
        expand: !quoted,
        pos: Position::default(),
        end: Position::default(),
    })
}

/// Shell quote removal for a heredoc delimiter; `None` if it is more than one word.
fn unquote_delimiter(raw: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                quoted = true;
            }
            (Some(q), _) if c == q => quote = None,
            (None, '\\') | (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    if quote == Some('"') && !matches!(n, '"' | '\\' | '$' | '`') {
                        out.push('\\');
                    }
                    out.push(n);
                }
            }
            (None, c) if c.is_whitespace() => return None,
            _ => out.push(c),
        }
    }
    Some((out, quoted))
}

// ---------------------------------------------------------------------------------------
// The typed layer
// ---------------------------------------------------------------------------------------

/// Parse a Dockerfile into stages of typed instructions.
pub fn parse(text: &str, path: &Path) -> Result<Dockerfile, ParseError> {
    let stripped = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (directives, parsed) = parse_lines(text, path)?;
    let src = Src::new(stripped, path);
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut names: HashMap<String, Position> = HashMap::new();
    for p in parsed {
        let instruction = typed(&src, &p)?;
        let node = Node { raw: p.node, instruction };
        match &node.instruction {
            Instruction::From(f) => {
                if let Some(name) = &f.name {
                    if let Some(prev) = names.insert(name.clone(), p.args) {
                        return Err(src.err(
                            p.args,
                            format!(
                                "duplicate stage name {name:?} (first used on line {}): give each stage its own name",
                                prev.line
                            ),
                        ));
                    }
                }
                let from = f.clone();
                stages.push(Stage {
                    index: stages.len(),
                    name: from.name.clone(),
                    from_node: node,
                    from,
                    instructions: Vec::new(),
                });
            }
            other => match stages.last_mut() {
                Some(stage) => stage.instructions.push(node),
                None if matches!(other, Instruction::Arg(_)) => global_args.push(node),
                None => {
                    return Err(src.err(
                        p.keyword,
                        format!(
                            "{} before the first FROM: expected FROM <image> first (only ARG may come before FROM)",
                            other.keyword()
                        ),
                    ))
                }
            },
        }
    }
    if stages.is_empty() {
        let last = src.pos(stripped.len());
        return Err(src.err(last, "no FROM instruction: expected at least one FROM <image>".to_string()));
    }
    Ok(Dockerfile { path: path.to_path_buf(), directives, global_args, stages })
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    Str,
    Multi,
}

/// The flag values of one instruction: name → (value, position) in order.
struct FlagValues {
    kw: String,
    values: HashMap<&'static str, Vec<(Option<String>, Position)>>,
}

impl FlagValues {
    fn str(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last()).and_then(|(v, _)| v.clone())
    }
    fn multi(&self, name: &str) -> Vec<String> {
        self.values.get(name).map(|v| v.iter().filter_map(|(s, _)| s.clone()).collect()).unwrap_or_default()
    }
    fn pos(&self, name: &str) -> Option<Position> {
        self.values.get(name).and_then(|v| v.last()).map(|(_, p)| *p)
    }
    fn opt_bool(&self, src: &Src, name: &str) -> Result<Option<bool>, ParseError> {
        let Some((v, p)) = self.values.get(name).and_then(|v| v.last()) else {
            return Ok(None);
        };
        match v.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(src.err(
                *p,
                format!("flag --{name} of {} expects true or false, but got {other:?}", self.kw),
            )),
        }
    }
    fn bool(&self, src: &Src, name: &str) -> Result<bool, ParseError> {
        Ok(self.opt_bool(src, name)?.unwrap_or(false))
    }
}

fn parse_flags(
    src: &Src,
    p: &Parsed,
    kw: &str,
    allowed: &[(&'static str, FlagKind)],
) -> Result<FlagValues, ParseError> {
    let mut fv = FlagValues { kw: kw.to_string(), values: HashMap::new() };
    for (i, flag) in p.node.flags.iter().enumerate() {
        let at = p.flags.get(i).copied().unwrap_or(p.keyword);
        let body = flag.strip_prefix("--").unwrap_or(flag);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(&(canon, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            let msg = if allowed.is_empty() {
                format!("unknown flag --{name}: {kw} takes no flags")
            } else {
                let list: Vec<String> = allowed.iter().map(|(n, _)| format!("--{n}")).collect();
                format!("unknown flag --{name} for {kw}: expected one of {}", list.join(", "))
            };
            return Err(src.err(at, msg));
        };
        // `--exclude .env` would otherwise read as a flag without a value and `.env` as a
        // source: the file meant to stay out would be copied.
        let empty = value.as_deref().is_none_or(str::is_empty);
        if (kind == FlagKind::Str && value.is_none()) || (kind == FlagKind::Multi && empty) {
            return Err(src.err(at, format!("flag --{name} of {kw} needs a value: expected --{name}=<value>")));
        }
        let entry = fv.values.entry(canon).or_default();
        if kind != FlagKind::Multi && !entry.is_empty() {
            return Err(src.err(at, format!("duplicate flag --{name} in {kw}: give it once")));
        }
        entry.push((value, at));
    }
    Ok(fv)
}

fn command_line(node: &RawNode, args: &[String]) -> CommandLine {
    if node.json {
        CommandLine::Exec(args.to_vec())
    } else {
        CommandLine::Shell(args.first().cloned().unwrap_or_default())
    }
}

fn typed(src: &Src, p: &Parsed) -> Result<Instruction, ParseError> {
    use FlagKind::*;
    let n = &p.node;
    let kw = n.keyword.to_uppercase();
    let args = &n.args;
    let no_flags = || parse_flags(src, p, &kw, &[]).map(|_| ());
    let need = |ok: bool, msg: &str| -> Result<(), ParseError> {
        if ok {
            Ok(())
        } else {
            Err(src.err(p.args, msg.to_string()))
        }
    };
    Ok(match kw.as_str() {
        "FROM" => {
            let f = parse_flags(src, p, &kw, &[("platform", Str)])?;
            let usage = "FROM requires either one or three arguments: expected FROM [--platform=<platform>] <image> [AS <name>]";
            let name = match args.len() {
                1 => None,
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let name = args[2].to_lowercase();
                    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                    if !valid {
                        return Err(src.err(
                            p.args,
                            format!("invalid stage name {:?}: expected a letter then letters, digits, '-', '_' or '.'", args[2]),
                        ));
                    }
                    Some(name)
                }
                _ => return Err(src.err(p.args, usage.to_string())),
            };
            Instruction::From(From { image: args[0].clone(), name, platform: f.str("platform") })
        }
        "RUN" => {
            let f = parse_flags(src, p, &kw, &[("mount", Multi), ("network", Str), ("security", Str)])?;
            need(
                !args.is_empty() || !n.heredocs.is_empty(),
                "RUN requires at least one argument: expected RUN <command> or RUN [\"executable\", \"param\"...]",
            )?;
            let network = match f.str("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => {
                    return Err(src.err(
                        f.pos("network").unwrap_or(p.keyword),
                        format!("unsupported network mode {other:?} in RUN: expected --network=default, none or host"),
                    ))
                }
            };
            let security = match f.str("security").as_deref() {
                None => None,
                Some("sandbox") => Some(Security::Sandbox),
                Some("insecure") => Some(Security::Insecure),
                Some(other) => {
                    return Err(src.err(
                        f.pos("security").unwrap_or(p.keyword),
                        format!("unsupported security mode {other:?} in RUN: expected --security=sandbox or insecure"),
                    ))
                }
            };
            let mut mounts = Vec::new();
            let positions: Vec<Position> =
                f.values.get("mount").map(|v| v.iter().map(|(_, p)| *p).collect()).unwrap_or_default();
            for (i, spec) in f.multi("mount").iter().enumerate() {
                let at = positions.get(i).copied().unwrap_or(p.keyword);
                mounts.push(parse_mount(spec).map_err(|m| src.err(at, m))?);
            }
            Instruction::Run(Run {
                command: command_line(n, args),
                heredocs: n.heredocs.clone(),
                mounts,
                network,
                security,
            })
        }
        "CMD" | "ENTRYPOINT" => {
            no_flags()?;
            let c = command_line(n, args);
            if kw == "CMD" {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        "SHELL" => {
            no_flags()?;
            need(
                n.json && !args.is_empty(),
                "SHELL requires the arguments in JSON form: expected SHELL [\"executable\", \"param\"...]",
            )?;
            Instruction::Shell(Words { words: args.clone() })
        }
        "LABEL" | "ENV" => {
            no_flags()?;
            need(
                !args.is_empty(),
                &format!("{kw} requires at least one argument: expected {kw} <key>=<value>..."),
            )?;
            let pairs: Vec<KeyValue> = args
                .chunks(3)
                .map(|c| KeyValue { key: c[0].clone(), value: c.get(1).cloned().unwrap_or_default() })
                .collect();
            if pairs.iter().any(|kv| kv.key.is_empty()) {
                return Err(src.err(p.args, format!("{kw} names can not be blank: expected {kw} <key>=<value>...")));
            }
            let legacy = args.get(2).is_some_and(|s| s.is_empty());
            let kv = KeyValues { pairs, legacy };
            if kw == "ENV" {
                Instruction::Env(kv)
            } else {
                Instruction::Label(kv)
            }
        }
        "MAINTAINER" | "USER" | "WORKDIR" | "STOPSIGNAL" => {
            no_flags()?;
            let what = match kw.as_str() {
                "MAINTAINER" => "<name>",
                "USER" => "<user>[:<group>]",
                "WORKDIR" => "<path>",
                _ => "<signal>",
            };
            need(args.len() == 1, &format!("{kw} requires exactly one argument: expected {kw} {what}"))?;
            let t = Text { value: args[0].clone() };
            match kw.as_str() {
                "MAINTAINER" => Instruction::Maintainer(t),
                "USER" => Instruction::User(t),
                "WORKDIR" => Instruction::Workdir(t),
                _ => Instruction::Stopsignal(t),
            }
        }
        "EXPOSE" => {
            no_flags()?;
            need(!args.is_empty(), "EXPOSE requires at least one argument: expected EXPOSE <port>[/<protocol>]...")?;
            Instruction::Expose(Words { words: args.clone() })
        }
        "VOLUME" => {
            no_flags()?;
            need(!args.is_empty(), "VOLUME requires at least one argument: expected VOLUME <path>...")?;
            need(
                args.iter().all(|a| !a.trim().is_empty()),
                "VOLUME paths can not be empty strings: expected VOLUME <path>...",
            )?;
            Instruction::Volume(Words { words: args.clone() })
        }
        "ADD" | "COPY" => {
            let allowed: &[(&'static str, FlagKind)] = if kw == "COPY" {
                &[("from", Str), ("chown", Str), ("chmod", Str), ("link", Bool), ("parents", Bool), ("exclude", Multi)]
            } else {
                &[
                    ("chown", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("keep-git-dir", Bool),
                    ("checksum", Str),
                    ("exclude", Multi),
                    ("unpack", Bool),
                ]
            };
            let f = parse_flags(src, p, &kw, allowed)?;
            if args.len() < 2 {
                let got = if args.is_empty() { "none" } else { "one" };
                return Err(src.err(
                    p.args,
                    format!("{kw} requires at least two arguments, but got {got}: expected {kw} <src>... <dest>"),
                ));
            }
            let (dest, srcs) = args.split_last().unwrap_or((&args[0], &[]));
            let mut heredocs = n.heredocs.iter();
            let mut sources = Vec::new();
            for s in srcs {
                let is_heredoc = !n.json && s.contains("<<") && {
                    let cx = Ctx { src, esc: '\\' };
                    heredoc_of_word(&cx, s).is_some()
                };
                match (is_heredoc, if is_heredoc { heredocs.next() } else { None }) {
                    (true, Some(h)) => sources.push(Source::Heredoc(h.clone())),
                    _ => sources.push(Source::Path(s.clone())),
                }
            }
            let exclude = f.multi("exclude");
            let link = f.bool(src, "link")?;
            if kw == "COPY" {
                Instruction::Copy(Copy {
                    sources,
                    dest: dest.clone(),
                    from: f.str("from"),
                    chown: f.str("chown"),
                    chmod: f.str("chmod"),
                    link,
                    parents: f.bool(src, "parents")?,
                    exclude,
                    json: n.json,
                })
            } else {
                Instruction::Add(Add {
                    sources,
                    dest: dest.clone(),
                    chown: f.str("chown"),
                    chmod: f.str("chmod"),
                    link,
                    keep_git_dir: f.bool(src, "keep-git-dir")?,
                    checksum: f.str("checksum"),
                    exclude,
                    unpack: f.opt_bool(src, "unpack")?,
                    json: n.json,
                })
            }
        }
        "ARG" => {
            no_flags()?;
            need(!args.is_empty(), "ARG requires at least one argument: expected ARG <name>[=<default value>]")?;
            let mut out = Vec::new();
            for a in args {
                let (name, default) = match a.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (a.clone(), None),
                };
                if name.is_empty() {
                    return Err(src.err(p.args, "ARG names can not be blank: expected ARG <name>[=<default value>]".to_string()));
                }
                out.push(ArgDecl { name, default });
            }
            Instruction::Arg(Args { args: out })
        }
        "ONBUILD" => {
            no_flags()?;
            let Some(sub) = &p.sub else {
                return Err(src.err(p.args, "ONBUILD requires at least one argument: expected ONBUILD <instruction>".to_string()));
            };
            let sk = sub.node.keyword.to_uppercase();
            if matches!(sk.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(src.err(
                    sub.keyword,
                    format!("{sk} isn't allowed as an ONBUILD trigger: expected ONBUILD <instruction> with another instruction"),
                ));
            }
            let trigger = typed(src, sub)?;
            Instruction::Onbuild(Onbuild { trigger: Box::new(trigger), original: sub.node.original.clone() })
        }
        "HEALTHCHECK" => {
            let f = parse_flags(
                src,
                p,
                &kw,
                &[("interval", Str), ("timeout", Str), ("start-period", Str), ("start-interval", Str), ("retries", Str)],
            )?;
            let usage = "expected HEALTHCHECK NONE or HEALTHCHECK [--interval=<d>] [--timeout=<d>] [--start-period=<d>] [--start-interval=<d>] [--retries=<n>] CMD <command>";
            let Some(typ) = args.first() else {
                return Err(src.err(p.args, format!("HEALTHCHECK requires at least one argument: {usage}")));
            };
            match typ.to_uppercase().as_str() {
                "NONE" => {
                    if args.len() > 1 || !n.flags.is_empty() {
                        return Err(src.err(p.args, "HEALTHCHECK NONE takes no arguments or flags: expected HEALTHCHECK NONE".to_string()));
                    }
                    Instruction::Healthcheck(Healthcheck::None)
                }
                "CMD" => {
                    if args.len() < 2 || (!n.json && args[1].is_empty()) {
                        return Err(src.err(p.args, format!("HEALTHCHECK CMD requires a command: {usage}")));
                    }
                    let dur = |name: &'static str| -> Result<Option<Duration>, ParseError> {
                        let Some(v) = f.str(name) else { return Ok(None) };
                        let at = f.pos(name).unwrap_or(p.keyword);
                        let d = parse_duration(&v).ok_or_else(|| {
                            src.err(at, format!("invalid duration {v:?} for --{name} of HEALTHCHECK: expected a duration like 30s, 1m30s or 500ms"))
                        })?;
                        if !d.is_zero() && d < Duration::from_millis(1) {
                            return Err(src.err(at, format!("--{name} of HEALTHCHECK cannot be less than 1ms: expected 0 or at least 1ms")));
                        }
                        Ok(Some(d))
                    };
                    let retries = match f.str("retries") {
                        None => None,
                        Some(v) => Some(v.parse::<u32>().map_err(|_| {
                            src.err(
                                f.pos("retries").unwrap_or(p.keyword),
                                format!("invalid --retries {v:?} for HEALTHCHECK: expected a whole number, 0 or more"),
                            )
                        })?),
                    };
                    Instruction::Healthcheck(Healthcheck::Cmd {
                        command: command_line(n, &args[1..]),
                        interval: dur("interval")?,
                        timeout: dur("timeout")?,
                        start_period: dur("start-period")?,
                        start_interval: dur("start-interval")?,
                        retries,
                    })
                }
                _ => {
                    return Err(src.err(
                        p.args,
                        format!("unknown type {typ:?} in HEALTHCHECK: expected CMD or NONE"),
                    ))
                }
            }
        }
        other => return Err(src.err(p.keyword, format!("unknown instruction {other}"))),
    })
}

/// A Go duration (`1h2m3.5s`, `500ms`, `0`); negative durations are rejected.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
    }
    if !total.is_finite() || total > 1e12 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// `type=cache,target=/root/.cache,sharing=locked` → a typed mount.
fn parse_mount(spec: &str) -> Result<Mount, String> {
    let bad = |what: String| format!("invalid --mount={spec:?} in RUN: {what}");
    let fields = lex('\\', Rule::mount_spec, spec).ok_or_else(|| bad("cannot split the fields: expected key=value,key=value".into()))?;
    let mut kv: Vec<(String, Option<String>)> = Vec::new();
    for f in fields.first().map(|t| t.children.as_slice()).unwrap_or(&[]) {
        let text = match f.children.first() {
            Some(q) if q.rule == Rule::mount_quoted => {
                q.text[1..q.text.len() - 1].replace("\"\"", "\"")
            }
            _ => f.text.to_string(),
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match text.split_once('=') {
            Some((k, v)) => kv.push((k.trim().to_ascii_lowercase(), Some(v.trim().to_string()))),
            None => kv.push((text.to_ascii_lowercase(), None)),
        }
    }
    let typ = kv
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.clone().unwrap_or_default())
        .unwrap_or_else(|| "bind".to_string());
    let allowed: &[&str] = match typ.as_str() {
        "bind" => &["type", "target", "dst", "destination", "source", "src", "from", "rw", "readwrite", "readonly", "ro", "bind-propagation"],
        "cache" => &["type", "target", "dst", "destination", "id", "sharing", "from", "source", "src", "readonly", "ro", "rw", "readwrite", "mode", "uid", "gid"],
        "tmpfs" => &["type", "target", "dst", "destination", "size"],
        "secret" => &["type", "id", "source", "src", "target", "dst", "destination", "env", "required", "mode", "uid", "gid"],
        "ssh" => &["type", "id", "target", "dst", "destination", "required", "mode", "uid", "gid"],
        other => return Err(bad(format!("unknown mount type {other:?}: expected bind, cache, tmpfs, secret or ssh"))),
    };
    let mut m: HashMap<&str, Option<String>> = HashMap::new();
    for (k, v) in &kv {
        let Some(key) = allowed.iter().find(|a| *a == k) else {
            return Err(bad(format!("unexpected key {k:?} for type={typ}")));
        };
        let key = match *key {
            "dst" | "destination" => "target",
            "src" => "source",
            "ro" => "readonly",
            "rw" => "readwrite",
            other => other,
        };
        m.insert(key, v.clone());
    }
    let string = |k: &str| m.get(k).cloned().flatten();
    let boolean = |k: &str| -> Result<Option<bool>, String> {
        match m.get(k) {
            None => Ok(None),
            Some(None) => Ok(Some(true)),
            Some(Some(v)) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(bad(format!("{k}={v:?} is not a boolean: expected true or false"))),
            },
        }
    };
    let number = |k: &str, radix: u32| -> Result<Option<u32>, String> {
        match string(k) {
            None => Ok(None),
            Some(v) => u32::from_str_radix(&v, radix)
                .map(Some)
                .map_err(|_| match radix {
                    8 => bad(format!("{k}={v:?} is not an octal number: expected a mode such as 0755")),
                    _ => bad(format!("{k}={v:?} is not a number")),
                }),
        }
    };
    let target = |t: &str| string("target").ok_or_else(|| bad(format!("type={t} requires a target: add target=<path>")));
    Ok(match typ.as_str() {
        "bind" => Mount::Bind {
            target: target("bind")?,
            source: string("source"),
            from: string("from"),
            readwrite: boolean("readwrite")?.unwrap_or(false) || boolean("readonly")? == Some(false),
        },
        "cache" => Mount::Cache {
            target: target("cache")?,
            id: string("id"),
            sharing: match string("sharing").as_deref() {
                None | Some("shared") => CacheSharing::Shared,
                Some("private") => CacheSharing::Private,
                Some("locked") => CacheSharing::Locked,
                Some(o) => return Err(bad(format!("unknown sharing {o:?}: expected shared, private or locked"))),
            },
            from: string("from"),
            source: string("source"),
            readonly: boolean("readonly")?.unwrap_or(false) || boolean("readwrite")? == Some(false),
            mode: number("mode", 8)?,
            uid: number("uid", 10)?,
            gid: number("gid", 10)?,
        },
        "tmpfs" => Mount::Tmpfs { target: target("tmpfs")?, size: string("size") },
        "secret" => Mount::Secret {
            // BuildKit: `source=` names the secret too, and wins over `id=`.
            id: string("source").or_else(|| string("id")),
            target: string("target"),
            env: string("env"),
            required: boolean("required")?.unwrap_or(false),
            mode: number("mode", 8)?,
            uid: number("uid", 10)?,
            gid: number("gid", 10)?,
        },
        _ => Mount::Ssh {
            id: string("id"),
            target: string("target"),
            required: boolean("required")?.unwrap_or(false),
            mode: number("mode", 8)?,
            uid: number("uid", 10)?,
            gid: number("gid", 10)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_grammars_have_the_same_rules() {
        let a: Vec<String> = Rule::all_rules().iter().map(|r| format!("{r:?}")).collect();
        let b: Vec<String> = grammar::backtick::Rule::all_rules().iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(a, b);
        for &r in Rule::all_rules() {
            let bt = to_backtick(r).unwrap();
            assert_eq!(format!("{r:?}"), format!("{bt:?}"));
            assert_eq!(Rule::from(bt), r);
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1x"), None);
    }

    #[test]
    fn mounts() {
        assert_eq!(
            parse_mount("type=cache,target=/root/.cache,sharing=locked,mode=0755").unwrap(),
            Mount::Cache {
                target: "/root/.cache".into(),
                id: None,
                sharing: CacheSharing::Locked,
                from: None,
                source: None,
                readonly: false,
                mode: Some(0o755),
                uid: None,
                gid: None
            }
        );
        assert_eq!(
            parse_mount("target=/src,ro").unwrap(),
            Mount::Bind { target: "/src".into(), source: None, from: None, readwrite: false }
        );
        assert!(parse_mount("type=bind").unwrap_err().contains("requires a target"));
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("type=tmpfs,target=/x,bogus=1").is_err());
    }
}
