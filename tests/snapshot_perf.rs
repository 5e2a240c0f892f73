//! Throughput of write_layer / unpack_layer on a real tree (ignored by default):
//! `RBUILD_PERF_DIR=/usr/lib/python3.11 cargo test --release --test snapshot_perf -- --ignored --nocapture`
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Instant;

use rbuild::snapshot::{self, DiffSource, LayerCompression, MtimePolicy, WriteOptions};

#[test]
#[ignore]
fn measure_write_and_unpack() {
    let dir = PathBuf::from(
        std::env::var("RBUILD_PERF_DIR").unwrap_or_else(|_| "/usr/lib/python3.11".into()),
    );
    // Warm the page cache.
    snapshot::write_layer_with(
        &dir,
        DiffSource::Plain,
        std::io::sink(),
        &WriteOptions {
            mtime: MtimePolicy::Keep,
            compression: LayerCompression::None,
        },
    )
    .unwrap();
    for comp in [
        LayerCompression::None,
        LayerCompression::Gzip(1),
        LayerCompression::Gzip(2),
        LayerCompression::Gzip(3),
        LayerCompression::Gzip(6),
    ] {
        let mut out = Vec::new();
        let t = Instant::now();
        let st = snapshot::write_layer_with(
            &dir,
            DiffSource::Plain,
            &mut out,
            &WriteOptions {
                mtime: MtimePolicy::Keep,
                compression: comp,
            },
        )
        .unwrap();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{comp:?}: {} entries, {:.1} MB tar -> {:.1} MB in {secs:.2}s = {:.0} MB/s",
            st.entries,
            st.uncompressed_size as f64 / 1e6,
            out.len() as f64 / 1e6,
            st.uncompressed_size as f64 / 1e6 / secs
        );
        if matches!(comp, LayerCompression::Gzip(1) | LayerCompression::None) {
            let tmp = tempfile::tempdir().unwrap();
            let t = Instant::now();
            snapshot::unpack_layer(snapshot::maybe_decompress(&out[..]).unwrap(), tmp.path())
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            eprintln!(
                "unpack {comp:?}: {secs:.2}s = {:.0} MB/s",
                st.uncompressed_size as f64 / 1e6 / secs
            );
        }
    }
}
