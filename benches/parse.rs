//! Parse throughput on a large generated Dockerfile (5,000 instructions of every kind,
//! continuations, JSON, heredocs, flags). Run: `cargo bench --bench parse`.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time, so
//! that the number means something on a shared 2-core machine with other builds running.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn generate(instructions: usize) -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=alpine:3.19\n");
    let mut n = 1;
    let mut stage = 0;
    while n < instructions {
        s.push_str(&format!("FROM --platform=$BUILDPLATFORM $BASE AS stage{stage}\n"));
        stage += 1;
        n += 1;
        let body = [
            "RUN apt-get update \\\n    && apt-get install -y --no-install-recommends curl ca-certificates \\\n    # a comment inside the continuation\n    && rm -rf /var/lib/apt/lists/*\n",
            "ENV PATH=/usr/local/bin:$PATH LANG=\"C.UTF-8\" HOME=/root\n",
            "COPY --from=stage0 --chown=1000:1000 --chmod=0755 --link src/ lib/ /app/\n",
            "RUN --mount=type=cache,target=/root/.cache,sharing=locked --network=none [\"make\", \"-j4\", \"all\"]\n",
            "LABEL org.opencontainers.image.title=\"demo app\" version=1.0\n",
            "WORKDIR /app/$NAME\n",
            "RUN <<EOF\nset -e\necho building\nmake install\nEOF\n",
            "HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD curl -fsS http://localhost:8080/health || exit 1\n",
            "EXPOSE 8080/tcp 8443\n",
            "ARG VERSION=1.2.3\n",
            "ADD --checksum=sha256:0123456789abcdef https://example.com/x.tar.gz /tmp/\n",
            "USER 1000:1000\n",
            "ENTRYPOINT [\"/app/bin/server\", \"--config\", \"/etc/app.toml\"]\n",
            "CMD [\"--verbose\"]\n",
        ];
        for line in body.iter().cycle().take(40) {
            if n >= instructions {
                break;
            }
            s.push_str(line);
            n += 1;
        }
    }
    s
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is valid on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn cpu_iter<T>(b: &mut criterion::Bencher, f: impl Fn() -> T) {
    b.iter_custom(|iters| {
        let start = thread_cpu();
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        thread_cpu() - start
    })
}

fn bench(c: &mut Criterion) {
    let text = generate(5_000);
    // Sanity: it parses and has the expected size.
    let df = rbuild::dockerfile::parse(&text, Path::new("Dockerfile")).expect("generated Dockerfile parses");
    assert_eq!(df.nodes().count(), 5_000);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(20);
    g.bench_function("5000_instructions", |b| {
        cpu_iter(b, || rbuild::dockerfile::parse(std::hint::black_box(&text), Path::new("Dockerfile")))
    });
    g.bench_function("5000_instructions_raw", |b| {
        cpu_iter(b, || rbuild::dockerfile::parse_raw(std::hint::black_box(&text), Path::new("Dockerfile")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
