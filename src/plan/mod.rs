//! AST → stage graph → cache keys. Pure, except hashing context files.
