//! Unpacked layer trees, overlay mounts, diffs, and deterministic tar layers with OCI whiteouts.
