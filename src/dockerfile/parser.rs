//! pest pairs → AST.
use std::path::Path;

use super::ast::{Directives, Dockerfile, RawNode};
use super::error::ParseError;

/// The line-level parse of a whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDockerfile {
    pub directives: Directives,
    pub nodes: Vec<RawNode>,
}

pub fn parse_raw(_text: &str, path: &Path) -> Result<RawDockerfile, ParseError> {
    Err(ParseError { path: path.to_path_buf(), line: 1, col: 1, message: "not implemented".into(), source_line: String::new() })
}

pub fn parse(text: &str, path: &Path) -> Result<Dockerfile, ParseError> {
    let _ = parse_raw(text, path)?;
    Err(ParseError { path: path.to_path_buf(), line: 1, col: 1, message: "not implemented".into(), source_line: String::new() })
}
