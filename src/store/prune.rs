//! `prune`: delete what nothing references.

/// What prune freed.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {}
