//! Regressions found by QA: one test per defect, named after it.

mod build_util;

use build_util::*;

/// `ENV X=${A:-${A:-...}}` 2000 levels deep aborted the process with a stack overflow.
#[test]
fn deeply_nested_expansion_is_an_error_not_a_crash() {
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    let depth = 2000;
    let word = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nENV X={word}\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "deep:1"]);
    assert_eq!(r.out.status.code(), Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("Dockerfile:2:1: ") && r.stderr.contains("nested too deeply"), "{}", r.stderr);
    assert!(r.stderr.len() < 2000, "one short line: {}", r.stderr);

    // A reasonable nesting still works.
    let word = format!("{}x{}", "${A:-".repeat(20), "}".repeat(20));
    write_files(ctx.path(), &[("Dockerfile", &format!("FROM busybox:local\nENV X={word}\n"))]);
    let r = build(root.path(), ctx.path(), &["-t", "deep:2"]);
    assert!(r.ok(), "{}", r.stderr);
}
