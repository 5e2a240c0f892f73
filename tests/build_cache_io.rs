//! `--cache-to type=local,dest=DIR[,mode=min|max]` and `--cache-from type=local,src=DIR`:
//! export on one store root, import on a fresh one, merging in place, damaged cache dirs,
//! and a cache dir that travels as a tar. Each test runs the real `rbuild` binary with
//! `--progress=plain` and reads which steps were cached from its output.

mod build_util;

use std::collections::BTreeMap;
use std::path::Path;

use build_util::*;
use serde_json::Value;

const DOCKERFILE: &str = r#"FROM busybox:local
WORKDIR /app
COPY requirements.txt requirements.txt
RUN mkdir -p /opt/site && for p in $(cat requirements.txt); do echo "$p" > /opt/site/$p.installed; done && echo "installed $(wc -l < requirements.txt) packages"
COPY . .
CMD ["/bin/sh", "/app/bin/run.sh"]
"#;

fn project() -> tempfile::TempDir {
    let ctx = tempfile::Builder::new()
        .prefix("rbuild-cio-ctx-")
        .tempdir()
        .unwrap();
    write_files(
        ctx.path(),
        &[
            ("Dockerfile", DOCKERFILE),
            ("requirements.txt", "flask\nrequests\n"),
            ("main.py", "print('hello')\n"),
            ("bin/run.sh", "#!/bin/sh\necho run\n"),
        ],
    );
    ctx
}

fn cache_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rbuild-cio-cache-")
        .tempdir()
        .unwrap()
}

fn arg(flag: &str, kv: &str, dir: &Path) -> String {
    format!("{flag}={kv}{}", dir.display())
}

fn cache_to(dir: &Path, mode: &str) -> String {
    format!("--cache-to=type=local,dest={},mode={mode}", dir.display())
}

fn cache_from(dir: &Path) -> String {
    arg("--cache-from", "type=local,src=", dir)
}

/// The cache records of an exported dir: index.json → manifest → cache index.
fn records(dir: &Path) -> BTreeMap<String, Value> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "rbuild-cache")
        .expect("an rbuild-cache entry in index.json")
        .clone();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(dir, &entry["digest"])).unwrap()).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.rbuild.cache.index.v1+json"
    );
    let doc: Value =
        serde_json::from_slice(&std::fs::read(blob(dir, &manifest["config"]["digest"])).unwrap())
            .unwrap();
    assert_eq!(doc["schemaVersion"], 1);
    doc["records"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn blob(dir: &Path, digest: &Value) -> std::path::PathBuf {
    let d = digest.as_str().unwrap();
    dir.join("blobs/sha256")
        .join(d.strip_prefix("sha256:").unwrap())
}

/// The record whose history line starts with `prefix`.
fn record_by(dir: &Path, prefix: &str) -> (String, Value) {
    records(dir)
        .into_iter()
        .find(|(_, r)| r["created_by"].as_str().unwrap_or("").starts_with(prefix))
        .unwrap_or_else(|| panic!("no record {prefix:?} in {}", dir.display()))
}

fn blob_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn warnings(r: &Run) -> Vec<&str> {
    r.stderr
        .lines()
        .filter(|l| l.starts_with("WARNING:"))
        .collect()
}

fn check_seed_image(root: &Path, name: &str) {
    let fs = unpack_image(root, name);
    let f = fs.path();
    assert_eq!(
        std::fs::read_to_string(f.join("opt/site/flask.installed")).unwrap(),
        "flask\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.join("opt/site/requests.installed")).unwrap(),
        "requests\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.join("app/main.py")).unwrap(),
        "print('hello')\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.join("app/requirements.txt")).unwrap(),
        "flask\nrequests\n"
    );
}

/// Export with min and max on root A; a fresh root B importing either gets every step
/// cached and the identical image ID, without A's store.
#[test]
fn export_then_import_on_a_fresh_root_is_fully_cached() {
    let a = store_with_busybox();
    let ctx = project();
    let (min, max) = (cache_dir(), cache_dir());
    let first = build(
        a.path(),
        ctx.path(),
        &["-t", "app:1", &cache_to(min.path(), "min")],
    );
    assert!(first.ok(), "{}", first.stderr);
    assert!(first.step("exporting cache").done, "{}", first.stderr);
    let again = build(
        a.path(),
        ctx.path(),
        &["-t", "app:1", &cache_to(max.path(), "max")],
    );
    assert!(again.ok(), "{}", again.stderr);
    let id = first.image_id();
    assert_eq!(again.image_id(), id);
    // WORKDIR, COPY, RUN, COPY, and the image's `created`.
    assert_eq!(records(min.path()).len(), 5);
    assert_eq!(records(max.path()).len(), 5, "one stage: max is min");

    for dir in [&min, &max] {
        let b = store_with_busybox();
        let r = build(
            b.path(),
            ctx.path(),
            &["-t", "app:1", &cache_from(dir.path())],
        );
        assert!(r.ok(), "{}", r.stderr);
        assert_eq!(
            r.rebuilt(),
            Vec::<String>::new(),
            "every step is cached:\n{}",
            r.stderr
        );
        assert!(r.stderr.contains("(5 steps, 5 cached)"), "{}", r.stderr);
        assert!(
            !r.stderr.contains("installed 2 packages"),
            "the RUN did not run: {}",
            r.stderr
        );
        assert!(warnings(&r).is_empty(), "{}", r.stderr);
        assert_eq!(r.image_id(), id, "same image ID from the imported cache");
        check_seed_image(b.path(), "app:1");
        // The imports are in B's own cache now: no --cache-from needed any more.
        let r2 = build(b.path(), ctx.path(), &["-t", "app:1"]);
        assert_eq!(r2.rebuilt(), Vec::<String>::new(), "{}", r2.stderr);
        assert_eq!(r2.image_id(), id);
    }

    // A changed source file: only `COPY . .` runs; the install RUN comes from the cache.
    std::fs::write(ctx.path().join("main.py"), "print('bye')\n").unwrap();
    let c = store_with_busybox();
    let r = build(
        c.path(),
        ctx.path(),
        &["-t", "app:2", &cache_from(min.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt(), ["[5/5] COPY . ."], "{}", r.stderr);
}

/// With mode=max the intermediate stage's steps are exported (a fresh root skips them);
/// with mode=min they are not (they run), while the final stage's steps still hit.
#[test]
fn multi_stage_max_exports_the_intermediate_stage_and_min_does_not() {
    let a = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(
        ctx.path(),
        &[
            (
                "Dockerfile",
                "FROM busybox:local AS builder\nCOPY src.txt /src.txt\nRUN tr a-z A-Z < /src.txt > /built.txt\n\n\
                 FROM busybox:local\nRUN echo base > /base.txt\nCOPY --from=builder /built.txt /app/built.txt\n",
            ),
            ("src.txt", "hello\n"),
        ],
    );
    let (min, max) = (cache_dir(), cache_dir());
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "ms:1", &cache_to(min.path(), "min")],
    );
    assert!(r.ok(), "{}", r.stderr);
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "ms:1", &cache_to(max.path(), "max")],
    );
    assert!(r.ok(), "{}", r.stderr);
    let id = r.image_id();

    let (builder_run, _) = record_by(max.path(), "RUN /bin/sh -c tr a-z A-Z");
    let (builder_copy, _) = record_by(max.path(), "COPY file:");
    let (final_copy, _) = record_by(max.path(), "COPY --from=builder");
    let min_records = records(min.path());
    assert!(
        !min_records.contains_key(&builder_run),
        "min leaves the builder stage out"
    );
    assert!(!min_records.contains_key(&builder_copy));
    assert!(min_records.contains_key(&final_copy));
    record_by(min.path(), "RUN /bin/sh -c echo base");
    assert_eq!(records(max.path()).len(), min_records.len() + 2);

    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "ms:1", &cache_from(max.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(
        r.rebuilt(),
        Vec::<String>::new(),
        "max: every step cached\n{}",
        r.stderr
    );
    assert_eq!(r.image_id(), id);

    let c = store_with_busybox();
    let r = build(
        c.path(),
        ctx.path(),
        &["-t", "ms:1", &cache_from(min.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    let mut rebuilt = r.rebuilt();
    rebuilt.sort();
    assert_eq!(
        rebuilt,
        [
            "[builder 2/3] COPY src.txt /src.txt",
            "[builder 3/3] RUN tr a-z A-Z < /src.txt > /built.txt"
        ],
        "min: the builder stage runs, the final stage hits\n{}",
        r.stderr
    );
    let fs = unpack_image(c.path(), "ms:1");
    assert_eq!(
        std::fs::read_to_string(fs.path().join("app/built.txt")).unwrap(),
        "HELLO\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.path().join("base.txt")).unwrap(),
        "base\n"
    );
}

/// A second export into the same dir merges: both builds' keys, each blob once, the old
/// index and manifest blobs gone, no temp files left.
#[test]
fn second_export_updates_the_dir_in_place() {
    let a = store_with_busybox();
    let ctx = project();
    let dir = cache_dir();
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "app:1", &cache_to(dir.path(), "min")],
    );
    assert!(r.ok(), "{}", r.stderr);
    let first = records(dir.path());
    let first_blobs = blob_names(dir.path());

    std::fs::write(ctx.path().join("requirements.txt"), "flask\nnumpy\n").unwrap();
    // Left by an export that was killed: swept by the next one.
    std::fs::write(dir.path().join("blobs/sha256/.tmp-stale"), b"x").unwrap();
    std::fs::write(dir.path().join(".tmp-stale"), b"x").unwrap();
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "app:2", &cache_to(dir.path(), "min")],
    );
    assert!(r.ok(), "{}", r.stderr);
    let second = records(dir.path());
    for k in first.keys() {
        assert!(second.contains_key(k), "the first build's key {k} is kept");
    }
    // New: COPY requirements.txt, RUN, COPY . ., created. WORKDIR is shared.
    assert_eq!(second.len(), first.len() + 4, "{second:#?}");

    // Every blob: the layers the records name (each once), the manifest and the index.
    let mut layers: Vec<String> = second
        .values()
        .filter_map(|r| r["layer"]["digest"].as_str())
        .map(|d| d.strip_prefix("sha256:").unwrap().to_string())
        .collect();
    layers.sort();
    layers.dedup();
    let blobs = blob_names(dir.path());
    assert_eq!(
        blobs.len(),
        layers.len() + 2,
        "{blobs:?} vs layers {layers:?}"
    );
    for l in &layers {
        assert!(blobs.contains(l));
    }
    assert!(
        blobs.iter().all(|b| !b.starts_with('.')),
        "no temp files: {blobs:?}"
    );
    let gone: Vec<&String> = first_blobs.iter().filter(|b| !blobs.contains(b)).collect();
    assert_eq!(
        gone.len(),
        2,
        "only the old manifest and index are replaced: {gone:?}"
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["blobs", "index.json", "oci-layout"]);

    // Exporting the same build again changes nothing.
    let before = (
        std::fs::read(dir.path().join("index.json")).unwrap(),
        blob_names(dir.path()),
    );
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "app:2", &cache_to(dir.path(), "min")],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(
        (
            std::fs::read(dir.path().join("index.json")).unwrap(),
            blob_names(dir.path())
        ),
        before
    );

    // Both versions import on a fresh root.
    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:2", &cache_from(dir.path())],
    );
    assert_eq!(r.rebuilt(), Vec::<String>::new(), "{}", r.stderr);
    std::fs::write(ctx.path().join("requirements.txt"), "flask\nrequests\n").unwrap();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:1", &cache_from(dir.path())],
    );
    assert_eq!(r.rebuilt(), Vec::<String>::new(), "{}", r.stderr);
    check_seed_image(b.path(), "app:1");
}

/// Damage, one kind at a time: a layer blob with flipped bytes, a missing layer blob, a
/// record whose diff ID lies, a garbage index. Each is a warning; the affected step runs;
/// the image is right.
#[test]
fn damaged_cache_dir_is_a_warning_and_a_miss_never_a_wrong_layer() {
    let a = store_with_busybox();
    let ctx = project();
    let good = cache_dir();
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "app:1", &cache_to(good.path(), "max")],
    );
    assert!(r.ok(), "{}", r.stderr);

    let copy_of_good = || {
        let d = cache_dir();
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", good.path().display()))
            .arg(d.path())
            .status()
            .unwrap();
        assert!(st.success());
        d
    };

    // 1. Flipped bytes in the RUN's layer blob.
    let d = copy_of_good();
    let (_, run) = record_by(d.path(), "RUN ");
    let p = blob(d.path(), &run["layer"]["digest"]);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    bytes[mid + 1] ^= 0x55;
    std::fs::write(&p, bytes).unwrap();
    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:1", &cache_from(d.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    let w = warnings(&r);
    assert_eq!(w.len(), 1, "{}", r.stderr);
    assert!(w[0].contains("is corrupt"), "{}", w[0]);
    assert!(
        w[0].contains(d.path().to_str().unwrap()),
        "names the cache dir: {}",
        w[0]
    );
    assert_eq!(r.rebuilt(), ["[4/5] RUN mkdir -p /opt/site && for p in $(cat requirements.txt); do echo \"$p\" > /opt/site/$p.installed; done && echo \"install ..."]);
    assert!(
        r.stderr.contains("installed 2 packages"),
        "the RUN ran: {}",
        r.stderr
    );
    check_seed_image(b.path(), "app:1");

    // 2. A missing layer blob (the last COPY's): that step runs, its layer is identical.
    let d = copy_of_good();
    let (_, copy) = record_by(d.path(), "COPY dir:");
    std::fs::remove_file(blob(d.path(), &copy["layer"]["digest"])).unwrap();
    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:1", &cache_from(d.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    let w = warnings(&r);
    assert_eq!(w.len(), 1, "{}", r.stderr);
    assert!(w[0].contains("is missing"), "{}", w[0]);
    assert_eq!(r.rebuilt(), ["[5/5] COPY . ."], "{}", r.stderr);
    check_seed_image(b.path(), "app:1");
    let layers = store(b.path()).resolve("app:1").unwrap().manifest.layers;
    assert_eq!(
        layers.last().unwrap().digest.to_string(),
        copy["layer"]["digest"].as_str().unwrap(),
        "COPY layers are deterministic"
    );

    // 3. A record whose diff ID is not its layer's (index rewritten with valid digests).
    let d = copy_of_good();
    let (key, _) = record_by(d.path(), "COPY file:");
    rewrite_records(d.path(), |recs| {
        recs[&key]["diff_id"] = Value::String(format!("sha256:{}", "0".repeat(64)));
    });
    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:1", &cache_from(d.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    let w = warnings(&r);
    assert_eq!(w.len(), 1, "{}", r.stderr);
    assert!(w[0].contains("diff ID"), "{}", w[0]);
    assert_eq!(
        r.rebuilt(),
        ["[3/5] COPY requirements.txt requirements.txt"],
        "{}",
        r.stderr
    );
    check_seed_image(b.path(), "app:1");

    // 4. A malformed record: left out with a warning, the rest is used.
    let d = copy_of_good();
    let (key, _) = record_by(d.path(), "WORKDIR");
    rewrite_records(d.path(), |recs| {
        recs[&key]["layer"] = Value::String("not a descriptor".into());
    });
    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:1", &cache_from(d.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(warnings(&r).len(), 1, "{}", r.stderr);
    assert_eq!(r.rebuilt(), ["[2/5] WORKDIR /app"], "{}", r.stderr);

    // 5. A garbage index.json, and a source that does not exist: warnings, everything runs.
    let d = copy_of_good();
    std::fs::write(
        d.path().join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [garbage",
    )
    .unwrap();
    let b = store_with_busybox();
    let missing = d.path().join("nope");
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:1", &cache_from(d.path()), &cache_from(&missing)],
    );
    assert!(r.ok(), "{}", r.stderr);
    let w = warnings(&r);
    assert_eq!(w.len(), 2, "{}", r.stderr);
    assert!(
        w.iter().all(|w| w.contains("ignoring this cache source")),
        "{w:?}"
    );
    assert_eq!(r.rebuilt().len(), 4, "{}", r.stderr);
    check_seed_image(b.path(), "app:1");

    // 6. Several sources: a damaged one first, a good one second → all cached.
    let d = copy_of_good();
    let (_, run) = record_by(d.path(), "RUN ");
    std::fs::write(blob(d.path(), &run["layer"]["digest"]), b"truncated").unwrap();
    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &[
            "-t",
            "app:1",
            &cache_from(d.path()),
            &cache_from(good.path()),
        ],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(warnings(&r).len(), 1, "{}", r.stderr);
    assert_eq!(r.rebuilt(), Vec::<String>::new(), "{}", r.stderr);
    check_seed_image(b.path(), "app:1");

    // 7. A record whose media type says gzip for a plain tar (every digest right): other
    // tools would fail to unpack the image, so it is a miss, both with the blob only in the
    // cache dir and with the blob already in the store.
    let d = copy_of_good();
    let (key, _) = record_by(d.path(), "COPY file:");
    rewrite_records(d.path(), |recs| {
        recs[&key]["layer"]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
    });
    for b in [store_with_busybox(), {
        let b = store_with_busybox();
        assert!(build(b.path(), ctx.path(), &["-t", "app:0"]).ok());
        // The blobs stay, the records go: the import finds the layer already here.
        for e in std::fs::read_dir(b.path().join("cache")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        b
    }] {
        let r = build(b.path(), ctx.path(), &["-t", "app:1", &cache_from(d.path())]);
        assert!(r.ok(), "{}", r.stderr);
        let w = warnings(&r);
        assert!(w.iter().any(|w| w.contains("is not gzip-compressed but its media type is")), "{}", r.stderr);
        let out = rbuild().arg("--root").arg(b.path()).args(["inspect", "app:1"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains("tar+gzip"), "a gzip label reached the image");
        check_seed_image(b.path(), "app:1");
    }

    // 8. A layer blob that is a fifo: never opened (that would wait for a writer forever),
    // a warning and a miss.
    let d = copy_of_good();
    let (_, run) = record_by(d.path(), "RUN ");
    let fifo = blob(d.path(), &run["layer"]["digest"]);
    std::fs::remove_file(&fifo).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let b = store_with_busybox();
    let r = build(b.path(), ctx.path(), &["-t", "app:1", &cache_from(d.path())]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(warnings(&r).iter().any(|w| w.contains("is not a regular file")), "{}", r.stderr);
    check_seed_image(b.path(), "app:1");
}

/// Edit the cache index of `dir` and write it back with correct digests (a record that
/// lies while every digest in the layout is right).
fn rewrite_records(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let index_path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = &mut index["manifests"][0];
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(dir, &entry["digest"])).unwrap()).unwrap();
    let mut doc: Value =
        serde_json::from_slice(&std::fs::read(blob(dir, &manifest["config"]["digest"])).unwrap())
            .unwrap();
    edit(&mut doc["records"]);
    let put = |bytes: Vec<u8>| -> (String, usize) {
        let d = rbuild::store::Digest::of_bytes(&bytes);
        std::fs::write(dir.join("blobs/sha256").join(d.hex()), &bytes).unwrap();
        (d.to_string(), bytes.len())
    };
    let (d, n) = put(serde_json::to_vec(&doc).unwrap());
    manifest["config"]["digest"] = d.into();
    manifest["config"]["size"] = n.into();
    let (d, n) = put(serde_json::to_vec(&manifest).unwrap());
    entry["digest"] = d.into();
    entry["size"] = n.into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// The cache dir holds no symlinks and no absolute paths: tar it up, unpack it elsewhere,
/// and a fresh root imports from there.
#[test]
fn cache_dir_survives_tar_and_untar() {
    let a = store_with_busybox();
    let ctx = project();
    let dir = cache_dir();
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "app:1", &cache_to(dir.path(), "max")],
    );
    assert!(r.ok(), "{}", r.stderr);
    let id = r.image_id();
    for e in walk(dir.path()) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        assert!(
            m.is_file() || m.is_dir(),
            "{} is neither a file nor a dir",
            e.display()
        );
        if m.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&e).unwrap()).into_owned();
            assert!(
                !text.contains(a.path().to_str().unwrap()),
                "{} names the store",
                e.display()
            );
            assert!(
                !text.contains(dir.path().to_str().unwrap()),
                "{} names its own path",
                e.display()
            );
        }
    }
    let tarball = tempfile::NamedTempFile::new().unwrap();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.path())
        .arg("-cf")
        .arg(tarball.path())
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    drop(dir);
    let elsewhere = cache_dir();
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(elsewhere.path())
        .arg("-xf")
        .arg(tarball.path())
        .status()
        .unwrap();
    assert!(st.success());
    let b = store_with_busybox();
    let r = build(
        b.path(),
        ctx.path(),
        &["-t", "app:1", &cache_from(elsewhere.path())],
    );
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.rebuilt(), Vec::<String>::new(), "{}", r.stderr);
    assert_eq!(r.image_id(), id);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Bad flag values fail before anything is built, with a message saying what to write.
#[test]
fn bad_cache_flags_are_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let ctx = project();
    for (flag, want) in [
        (
            "--cache-to=type=registry,ref=example.com/app:cache",
            "type=registry is not supported yet",
        ),
        ("--cache-from=type=gha", "type=gha is not supported yet"),
        ("--cache-to=type=tape,dest=x", "type=tape is unknown"),
        ("--cache-to=type=local", "dest= is missing"),
        ("--cache-from=type=local", "src= is missing"),
        (
            "--cache-to=type=local,dest=x,mode=all",
            "mode=all is unknown",
        ),
        ("--cache-to=dest=x", "type= is missing"),
    ] {
        let r = build(root.path(), ctx.path(), &[flag]);
        assert!(!r.ok(), "{flag} should fail");
        assert!(r.stderr.contains(want), "{flag}: {}", r.stderr);
        assert_eq!(
            r.stderr.lines().count(),
            1,
            "{flag}: one line: {}",
            r.stderr
        );
    }
}

/// With skopeo around, the export is an OCI layout it reads and copies whole.
#[test]
fn export_is_an_oci_layout_skopeo_reads() {
    if !have("skopeo") {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipped: skopeo not on PATH");
        }
        return;
    }
    let a = store_with_busybox();
    let ctx = project();
    let dir = cache_dir();
    let r = build(
        a.path(),
        ctx.path(),
        &["-t", "app:1", &cache_to(dir.path(), "max")],
    );
    assert!(r.ok(), "{}", r.stderr);
    let out = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg("--raw")
        .arg(format!("oci:{}:rbuild-cache", dir.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["artifactType"], "application/vnd.rbuild.cache.v1");
    assert_eq!(
        m["layers"].as_array().unwrap().len(),
        4,
        "WORKDIR, COPY, RUN, COPY: {m}"
    );
}

fn have(prog: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
        .unwrap_or(false)
}

/// A destination that cannot be a directory, a report path that cannot be written, or one
/// that is the Dockerfile fails before the build, naming the flag; a symbolic link where the
/// export's folders go fails the export (nothing is written through it).
#[test]
fn unwritable_destinations_fail_clearly() {
    let a = store_with_busybox();
    let ctx = project();
    let file = tempfile::NamedTempFile::new().unwrap();
    let df = ctx.path().join("Dockerfile");
    let df_before = std::fs::read(&df).unwrap();
    for (flag, want) in [
        (cache_to(file.path(), "min"), format!("error: --cache-to dest={}: not a directory", file.path().display())),
        ("--timings=/proc/nope.html".to_string(), "error: --timings=/proc/nope.html: cannot write in /proc".to_string()),
        ("--metadata-file=/nonexistent/m.json".to_string(), "error: --metadata-file=/nonexistent/m.json: there is no directory /nonexistent".to_string()),
        (format!("--metadata-file={}", df.display()), "that is the Dockerfile".to_string()),
        (format!("--timings={}", ctx.path().display()), "is a directory; give a file name".to_string()),
    ] {
        let r = build(a.path(), ctx.path(), &["-t", "app:1", &flag]);
        assert!(!r.ok(), "{flag}: {}", r.stderr);
        assert!(r.stderr.contains(&want), "{flag}: {}", r.stderr);
        assert!(!r.stderr.contains("Successfully built") && r.rebuilt().is_empty(), "{flag}: the build ran:\n{}", r.stderr);
    }
    assert_eq!(std::fs::read(&df).unwrap(), df_before, "the Dockerfile was overwritten");

    let dest = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(dest.path().join("blobs")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dest.path().join("blobs/sha256")).unwrap();
    let r = build(a.path(), ctx.path(), &["-t", "app:1", &cache_to(dest.path(), "max")]);
    assert!(!r.ok(), "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap();
    assert!(last.starts_with("error: exporting the cache to ") && last.contains("is a symbolic link"), "{}", r.stderr);
    assert!(r.step("exporting cache").failed, "{}", r.stderr);
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0, "blobs were written through the link");
}

/// QA: under umask 077 the export's directories were 0700, so a CI cache step running as
/// another user could not read them (the README promises world-readable).
#[test]
fn export_dirs_are_world_readable_under_a_strict_umask() {
    use std::os::unix::fs::PermissionsExt;
    let root = store_with_busybox();
    let ctx = tempfile::tempdir().unwrap();
    write_files(ctx.path(), &[("f", "x\n"), ("Dockerfile", "FROM busybox:local\nCOPY f /f\n")]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("c");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(root.path())
        .args(["build", "-q", "-t", "u:1"])
        .arg(format!("--cache-to=type=local,dest={}", dest.display()))
        .arg(ctx.path())
        .status()
        .unwrap();
    assert!(status.success());
    for e in walkdir::WalkDir::new(&dest) {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        let want = if e.file_type().is_dir() { 0o755 } else { 0o644 };
        assert_eq!(mode, want, "{}", e.path().display());
    }
}
