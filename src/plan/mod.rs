//! AST → stage graph → cache keys. Pure, except hashing context files.
//!
//! - [`cachekey`]: the versioned key encoding and its rules table.
//! - [`context`]: context file digests, the stat cache, COPY source selection.

pub mod cachekey;
pub mod context;
