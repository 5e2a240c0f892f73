//! Cache-key computation: a RUN key (argv, 30 env vars) and a COPY key.

use criterion::{criterion_group, criterion_main, Criterion};
use rbuild::plan::cachekey::{copy_key, run_key, CopyInput, CopySource, RunInput};

fn bench(c: &mut Criterion) {
    let run = RunInput {
        argv: vec!["/bin/sh".into(), "-c".into(), "pip install --no-cache-dir -r requirements.txt && python -m compileall .".into()],
        heredocs: Vec::new(),
        env: (0..30).map(|i| (format!("VAR_{i}"), format!("value number {i} with some length"))).collect(),
        user: Some("app".into()),
        workdir: "/app".into(),
        network: "host".into(),
        mounts: Vec::new(),
    };
    let parent = format!("sha256:{}", "ab".repeat(32));
    c.bench_function("run-key", |b| b.iter(|| run_key(&parent, &run)));
    let sources = vec!["requirements.txt".to_string(), "src/".to_string()];
    let flags = vec!["--link".to_string()];
    let content = format!("sha256:{}", "cd".repeat(32));
    let copy = CopyInput {
        op: "copy",
        from: CopySource::Context,
        sources: &sources,
        dest: "/app/",
        chown: Some("app:app"),
        chmod: None,
        flags: &flags,
        content: &content,
    };
    c.bench_function("copy-key", |b| b.iter(|| copy_key(&parent, &copy)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
