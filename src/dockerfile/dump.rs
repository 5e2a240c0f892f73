//! BuildKit's AST dump format (`parser.Node.Dump`), used by the conformance test and by
//! `rbuild parse --dump`.
//!
//! One line per instruction: `(keyword ["--flag" ...] "arg" ...)`; the keyword lower-cased,
//! strings quoted like Go's `strconv.Quote`, ONBUILD's trigger nested: `(onbuild (run "x"))`.

use super::ast::{Dockerfile, RawNode};

/// Quote like Go's `strconv.Quote`: `"` and `\` escaped, printable characters as they
/// are, `\a \b \f \n \r \t \v`, other control characters as `\xHH`, other non-printable
/// code points as `\uHHHH` / `\UHHHHHHHH`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint`, approximated without the Unicode tables: not a control or
/// format character, not a separator other than the ASCII space, not private use.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    let u = c as u32;
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format_or_private = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
        | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF
        | 0xE0001 | 0xE0020..=0xE007F | 0xF0000..=0x10FFFF | 0xFFFE | 0xFFFF);
    !format_or_private
}

impl RawNode {
    /// This instruction in BuildKit's dump format, without the outer parentheses.
    pub fn dump(&self) -> String {
        let mut s = self.keyword.to_lowercase();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(" [");
            s.push_str(&flags.join(" "));
            s.push(']');
        }
        if let Some(sub) = &self.onbuild {
            s.push_str(" (");
            s.push_str(&sub.dump());
            s.push(')');
        }
        for a in &self.args {
            s.push(' ');
            s.push_str(&go_quote(a));
        }
        s.trim().to_string()
    }
}

impl Dockerfile {
    /// Every instruction in file order: global ARGs, then each stage's FROM and body.
    pub fn nodes(&self) -> impl Iterator<Item = &super::ast::Node> {
        self.global_args
            .iter()
            .chain(self.stages.iter().flat_map(|s| std::iter::once(&s.from_node).chain(s.instructions.iter())))
    }

    /// BuildKit's dump format, one `(...)` line per instruction, no final newline.
    pub fn dump(&self) -> String {
        let lines: Vec<String> = self.nodes().map(|n| format!("({})", n.raw.dump())).collect();
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\t\n\0\u{7f}"), r#""\t\n\x00\x7f""#);
        assert_eq!(go_quote("♥ ☃"), "\"♥ ☃\"");
        assert_eq!(go_quote("\u{a0}\u{200b}\u{1F600}"), "\"\\u00a0\\u200b\u{1F600}\"");
    }
}
