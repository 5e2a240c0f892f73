//! Dockerfile text → typed AST with spans. Knows no images and reads no files but the
//! Dockerfile and `.dockerignore`.
//!
//! Pipeline: [`directives`] scans the parser directives at the top (the escape character
//! decides how the rest is lexed) → [`parser`] lexes and parses every instruction with the
//! pest grammar in `grammar/dockerfile.pest` into [`ast::RawNode`]s (BuildKit's node view:
//! keyword, flags, raw argument words, heredocs, span, original text) → the typed layer
//! turns each into an [`ast::Instruction`] with checked flags, and groups them into stages.
//! Nothing is expanded here: `$VAR`s stay in the words for the planner.
//!
//! ```no_run
//! # use std::path::Path;
//! let df = rbuild::dockerfile::parse("FROM alpine AS a\nRUN echo hi\n", Path::new("Dockerfile"))?;
//! for stage in &df.stages {
//!     for node in &stage.instructions {
//!         let _ = (&node.instruction, node.span(), node.original());
//!     }
//! }
//! # Ok::<(), rbuild::dockerfile::ParseError>(())
//! ```
//!
//! What the typed layer checks (each failure is a [`ParseError`] at a line and column):
//! known keywords; flags allowed for the instruction, no duplicates, booleans `true`/`false`,
//! values where a value is needed; argument counts (`COPY <src>... <dest>`, `FROM img [AS
//! name]`, ...); JSON arrays hold only strings; stage names are valid and unique; only ARG
//! before the first FROM; `--mount` specs (type, keys, target); HEALTHCHECK durations and
//! retries; ONBUILD triggers (not ONBUILD, FROM or MAINTAINER); terminated heredocs.
//!
//! Where we differ from BuildKit on purpose: an unknown instruction is an error at parse
//! time (BuildKit's parser accepts it and its instruction layer rejects it); heredoc bodies
//! of CRLF files get LF line ends and `<<-` bodies arrive with their leading tabs already
//! stripped; JSON nested deeper than 128 levels and ONBUILD nested more than 4 times are
//! errors (so no input can exhaust the stack).

pub mod ast;
pub mod directives;
pub mod dockerignore;
pub mod dump;
pub mod error;
pub mod expand;
pub mod parser;

use std::path::Path;

pub use ast::{Dockerfile, Instruction, Node, RawNode, Stage};
pub use error::ParseError;
pub use parser::RawDockerfile;

/// Parse a Dockerfile into stages of typed instructions. `path` is only used in errors.
pub fn parse(text: &str, path: &Path) -> Result<Dockerfile, ParseError> {
    parser::parse(text, path)
}

/// Parse only the line level (BuildKit's `parser.Parse`): keywords, flags and raw argument
/// words, without checking flags or arguments per instruction. Unknown keywords are an
/// error here too.
pub fn parse_raw(text: &str, path: &Path) -> Result<RawDockerfile, ParseError> {
    parser::parse_raw(text, path)
}
