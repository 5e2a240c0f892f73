//! AST → stage graph → cache keys. Pure, except hashing context files.
pub mod stages;
