//! Dockerfile text → typed AST with spans. Knows no images and reads no files but the
//! Dockerfile and `.dockerignore`.
//!
//! Pipeline: [`directives`] scans the parser directives at the top (the escape character
//! decides how the rest is lexed) → [`parser`] lexes and parses every instruction with the
//! pest grammar in `grammar/dockerfile.pest` into [`ast::RawNode`]s (BuildKit's node view:
//! keyword, flags, raw argument words, heredocs, span, original text) → the typed layer
//! turns each into an [`ast::Instruction`] with checked flags, and groups them into stages.
//! Nothing is expanded here: `$VAR`s stay in the words for the planner.

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
