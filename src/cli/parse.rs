//! `rbuild parse [-f FILE] [--json | --dump]`: parse a Dockerfile and print its stages.
//!
//! Default output is for people (one line per instruction with its line number, grouped by
//! stage); `--json` is the whole typed AST (`dockerfile::ast`, serde) for tools; `--dump`
//! is BuildKit's parser dump format. A syntax error is returned as the `ParseError` itself,
//! so `main` prints `error: Dockerfile:L:C: message` followed by the line and a caret.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Globals;
use crate::dockerfile::{self, ast, Dockerfile};

#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Dockerfile to parse
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: PathBuf,
    /// Print the typed AST as JSON, for tools
    #[arg(long, conflicts_with = "dump")]
    pub json: bool,
    /// Print BuildKit's parser dump format, one `(keyword "arg" ...)` line per instruction
    #[arg(long)]
    pub dump: bool,
}

pub fn run(_g: &Globals, a: ParseArgs) -> anyhow::Result<u8> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}: check the -f path", a.file.display()))?;
    let df = dockerfile::parse(&text, &a.file)?;
    let out = if a.json {
        let mut s = serde_json::to_string_pretty(&df)?;
        s.push('\n');
        s
    } else if a.dump {
        df.dump() + "\n"
    } else {
        render(&df)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    Ok(0)
}

/// The human-readable listing.
pub fn render(df: &Dockerfile) -> String {
    let mut s = String::new();
    let d = &df.directives;
    let mut dirs = vec![format!("escape={}", d.escape)];
    if let Some(x) = &d.syntax {
        dirs.push(format!("syntax={}", x.value));
    }
    if let Some(x) = &d.check {
        dirs.push(format!("check={}", x.value));
    }
    s.push_str(&format!("{}: {} stage(s); {}\n", df.path.display(), df.stages.len(), dirs.join(", ")));
    if !df.global_args.is_empty() {
        s.push_str("global ARGs:\n");
        for n in &df.global_args {
            line(&mut s, n);
        }
    }
    for st in &df.stages {
        let name = st.name.as_deref().map(|n| format!(" {n:?}")).unwrap_or_default();
        let platform = st.from.platform.as_deref().map(|p| format!(" (platform {p})")).unwrap_or_default();
        s.push_str(&format!("stage {}{name} from {}{platform}:\n", st.index, st.from.image));
        line(&mut s, &st.from_node);
        for n in &st.instructions {
            line(&mut s, n);
        }
    }
    s
}

fn line(s: &mut String, n: &ast::Node) {
    let sp = n.span();
    let lines = if sp.end.line > sp.start.line {
        format!("{}-{}", sp.start.line, sp.end.line)
    } else {
        sp.start.line.to_string()
    };
    s.push_str(&format!("  {lines:>7}  {}\n", n.original()));
    for h in &n.raw.heredocs {
        let lines = h.content.lines().count();
        let expand = if h.expand { "" } else { ", no expansion" };
        s.push_str(&format!("  {:>7}    <<{}: {lines} line(s){expand}\n", "", h.name));
    }
}
