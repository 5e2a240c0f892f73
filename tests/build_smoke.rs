mod build_util;
use build_util::*;

#[test]
fn smoke() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[
        ("Dockerfile", "FROM busybox:local\nWORKDIR /app\nCOPY requirements.txt requirements.txt\nRUN cat requirements.txt > installed.txt && echo installed\nCOPY . .\nCMD [\"cat\", \"/app/main.py\"]\n"),
        ("requirements.txt", "flask\n"),
        ("main.py", "print(1)\n"),
    ]);
    let r = build(root.path(), ctx.path(), &["-t", "app:1"]);
    eprintln!("{}", r.stderr);
    assert!(r.ok());
}
