//! Dockerfile text → typed AST with spans. Knows no images and reads no files but the
//! Dockerfile and `.dockerignore`.
pub mod expand;
pub mod dockerignore;
