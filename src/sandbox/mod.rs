//! Run one process in an isolated rootfs: namespaces, pivot_root/chroot, mounts.
//! All `unsafe` of the crate lives here, each block with a `// SAFETY:` comment.

/// Entry point of the hidden `__sandbox-init` subcommand; returns the exit code.
pub fn init_main() -> u8 {
    1
}
