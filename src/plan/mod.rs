//! AST → stage graph → cache keys. Pure, except hashing context files.
//!
//! - [`graph`]: helpers over the stage graph (stage lookup, architecture, remote sources).
//! - [`stages`]: ARG/ENV scoping, stage dependencies, target reachability (expand helper).
//! - [`cachekey`]: the versioned key encoding and its rules table.
//! - [`context`]: context file digests, the stat cache, COPY source selection.
//! - [`sources`]: COPY/ADD `--parents` and `--exclude` on top of that selection.

pub mod cachekey;
pub mod context;
pub mod graph;
pub mod sources;
pub mod stages;
