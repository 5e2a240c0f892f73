//! rbuild — a daemonless Dockerfile build engine with a content-addressed layer cache.
//!
//! # Modules (imports go one way: `dockerfile` ← `plan` ← `build` → `store`, `snapshot`,
//! `sandbox`, `progress`; `cli` → everything)
//!
//! | module       | what it does |
//! |--------------|--------------|
//! | [`dockerfile`] | Dockerfile text → typed AST with spans; Docker's word expansion; `.dockerignore` |
//! | [`plan`]       | AST → stage graph → cache keys; context file digests |
//! | [`store`]      | content-addressed blobs, the OCI image layout, tags, the cache index |
//! | [`snapshot`]   | unpacked layer trees, overlay mounts, diffs, deterministic tar layers |
//! | [`sandbox`]    | run one process in an isolated rootfs (namespaces, pivot_root, mounts) |
//! | [`build`]      | the scheduler: walks the graph, asks the cache, runs ops, assembles images |
//! | [`container`]  | `rbuild run` containers: state, lifecycle, logs |
//! | [`progress`]   | build events and their renderers (tty, plain, quiet) |
//! | [`cli`]        | clap structs → one library call per command |
//!
//! # The store on disk
//!
//! ```text
//! <root>/oci/              a valid OCI image layout: oci-layout, index.json (tags as
//!                          org.opencontainers.image.ref.name), blobs/sha256/<hex>
//! <root>/ingest/           blobs being written (temp → fsync → verify digest → rename)
//! <root>/cache/            cache key → { layer descriptor, diff id, config change }
//! <root>/snapshots/<id>/   unpacked trees of layers, reused as overlay lower dirs
//! <root>/files/           big COPY files the layer trees share by hardlink (one inode per
//!                          content + mode + owner + mtime; see `store/filepool.rs`)
//! <root>/containers/<id>/  state of `rbuild run` containers
//! <root>/context-cache/<hash>.json   per-context stat cache (path, size, mtime, inode, ctime → digest)
//! <root>/cache-mounts/<hash>/         contents of `RUN --mount=type=cache`
//!                          (`--secret` values never touch the store: memory → the RUN's tmpfs)
//! <root>/layers/<diffid>.json   uncompressed size of a layer (Docker's SIZE)
//! <root>/explain/<step>.json     the last key inputs of each build step, for --explain
//! <root>/tmp/              staging of loads and builds (removed when they end; a load's dir
//!                          holds a locked `.lease`, so `prune` removes only dead ones)
//! <root>/index.lock        held while index.json is rewritten (tags never get lost)
//! <root>/gc.lock           builds hold it shared, `prune` exclusive
//! ```
//!
//! A `--cache-to type=local` directory is an OCI layout too: one `rbuild-cache` artifact whose
//! config is the cache index (key → layer record) and whose layers are the blobs it names
//! (see `src/store/cache_dir.rs`).

pub mod build;
pub mod cli;
pub mod container;
pub mod dockerfile;
pub mod plan;
pub mod progress;
pub mod sandbox;
pub mod snapshot;
pub mod store;
