//! Context hashing throughput: scan + SHA-256 of every selected file, cold (every file read)
//! and warm (the stat cache vouches for every file: a no-op rebuild).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rbuild::plan::context::{ContextIndex, NoFilter, StatCache};

/// A context with `files` small source files and one large data file.
fn make_context(files: usize, small: usize, large: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    for i in 0..files {
        let dir = d.path().join(format!("src/m{}", i % 20));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.py")), bytes(small)).unwrap();
    }
    std::fs::write(d.path().join("data.bin"), bytes(large)).unwrap();
    // Out of the stat cache's racy window.
    std::thread::sleep(std::time::Duration::from_millis(200));
    d
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("context-hash");
    g.sample_size(10);
    {
        let (files, small, large) = (2000usize, 4096usize, 64usize << 20);
        let ctx = make_context(files, small, large);
        let total = (files * small + large) as u64;
        g.throughput(Throughput::Bytes(total));
        g.bench_with_input(BenchmarkId::new("cold", format!("{files}x{small}B+{}MB", large >> 20)), &ctx, |b, ctx| {
            b.iter(|| {
                let idx = ContextIndex::scan(ctx.path(), Arc::new(NoFilter)).unwrap();
                let sel = idx.select(".").unwrap();
                let cache = StatCache::in_memory();
                idx.digest_selection(&sel, &cache).unwrap()
            })
        });
        // Warm: a stat cache saved by a previous build.
        let cache_dir = tempfile::tempdir().unwrap();
        let file = StatCache::file_for(cache_dir.path(), ctx.path());
        {
            let idx = ContextIndex::scan(ctx.path(), Arc::new(NoFilter)).unwrap();
            let cache = StatCache::load(&file);
            idx.digest_selection(&idx.select(".").unwrap(), &cache).unwrap();
            cache.save(&idx).unwrap();
        }
        g.bench_with_input(BenchmarkId::new("warm-noop", format!("{files}x{small}B+{}MB", large >> 20)), &ctx, |b, ctx| {
            b.iter(|| {
                let idx = ContextIndex::scan(ctx.path(), Arc::new(NoFilter)).unwrap();
                let cache = StatCache::load(&file);
                let d = idx.digest_selection(&idx.select(".").unwrap(), &cache).unwrap();
                assert_eq!(d.bytes_read, 0);
                d
            })
        });
    }
    g.finish();

    // One core, one big file: SHA-256 streaming speed (the ceiling for the cold case).
    let mut g = c.benchmark_group("hash-file");
    g.sample_size(10);
    let ctx = make_context(0, 0, 256 << 20);
    g.throughput(Throughput::Bytes(256 << 20));
    g.bench_function("one-core-256MB", |b| b.iter(|| rbuild::plan::context::hash_file(&ctx.path().join("data.bin")).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
