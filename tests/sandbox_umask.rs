//! The payload gets Docker's umask (0022) whatever rbuild's caller had. A test binary of
//! its own: changing the umask would disturb tests running in parallel in one process.

use std::io::Read;
use std::path::Path;

use rbuild::sandbox::{self, Rootfs, Spec, Stdio};

#[test]
fn payload_umask_is_0022() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let prev = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let mut spec = Spec::new(
        Rootfs::Dir(tmp.path().into()),
        vec!["/bin/sh".into(), "-c".into(), "umask".into()],
    );
    spec.stdio = Stdio::Piped;
    let mut sb = sandbox::spawn(&spec, Path::new(env!("CARGO_BIN_EXE_rbuild"))).unwrap();
    nix::sys::stat::umask(prev);
    let mut out = String::new();
    sb.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(sb.wait().unwrap(), 0);
    assert_eq!(out, "0022\n");
}
