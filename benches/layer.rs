//! Layer writing throughput: a directory tree → deterministic tar (→ gzip), the work a COPY or
//! RUN step does after it ran. Compares the uncompressed tar with gzip level 1 and 6, so the
//! cost of compressing local layers is visible.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rbuild::snapshot::{write_layer_with, DiffSource, LayerCompression, MtimePolicy, WriteOptions};

/// A tree with `files` small files (text-like: compressible) and one large file of
/// pseudo-random bytes (incompressible), like a source tree next to a data file.
fn make_tree(files: usize, small: usize, large: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..files {
        let dir = d.path().join(format!("src/m{}", i % 20));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text: String = (0..small / 16).map(|j| format!("line {j:04} {i:05}\n")).collect();
        std::fs::write(dir.join(format!("f{i}.py")), text).expect("write");
    }
    let data: Vec<u8> = (0..large)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(d.path().join("data.bin"), data).expect("write");
    d
}

fn bench(c: &mut Criterion) {
    let (files, small, large) = (2000usize, 4096usize, 64usize << 20);
    let tree = make_tree(files, small, large);
    let mut g = c.benchmark_group("write-layer");
    g.sample_size(10);
    g.throughput(Throughput::Bytes((files * small + large) as u64));
    for (name, compression) in [
        ("tar", LayerCompression::None),
        ("tar+gzip1", LayerCompression::Gzip(1)),
        ("tar+gzip6", LayerCompression::Gzip(6)),
    ] {
        let opts = WriteOptions { mtime: MtimePolicy::Fixed(0), compression };
        g.bench_with_input(BenchmarkId::new(name, format!("{files}x{small}B+{}MB", large >> 20)), &tree, |b, tree| {
            b.iter(|| write_layer_with(tree.path(), DiffSource::Plain, std::io::sink(), &opts).expect("write_layer"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
