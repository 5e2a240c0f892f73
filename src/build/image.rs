//! The final image: config (with stable `created` times), manifest, tags, `--output`.

use crate::plan::cachekey;
use crate::store::{media, ArchiveFormat, CacheRecord, Descriptor, Digest, Manifest, Reference, RootFs};

use super::run::key_hex;
use super::stage::StageState;
use super::{BuildError, Ctx, Output, OutputFormat};

/// RFC 3339 time: `SOURCE_DATE_EPOCH` when set, else now (UTC, nanoseconds).
pub fn now_rfc3339(source_date_epoch: Option<i64>) -> String {
    use chrono::{SecondsFormat, TimeZone, Utc};
    match source_date_epoch.and_then(|t| Utc.timestamp_opt(t, 0).single()) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
    }
}

/// Store config and manifest of the final stage, tag it; returns (manifest, image ID, the
/// key (hex) of the cache record holding `created`, when there is one).
///
/// `created` (of the image and of history entries without a cache record of their own) is
/// looked up under a key of the last step and the config's time-free content: the first
/// build records it, a rebuild with the same result reuses it, so the image ID is stable.
pub fn commit_image(
    ctx: &Ctx<'_>,
    s: &StageState,
    tags: &[Reference],
) -> Result<(Descriptor, Digest, Option<String>), BuildError> {
    let mut config = s.config.clone();
    config.rootfs = RootFs { kind: "layers".into(), diff_ids: s.layers.iter().map(|l| l.diff_id.clone()).collect() };
    config.created = None;
    let timeless = serde_json::to_string(&config)
        .map_err(|e| BuildError::Options(format!("serializing the image config: {e}")))?;
    let key = cachekey::image_key(&s.key, &timeless);
    let hex = key_hex(&key.digest);
    let created = match ctx.opts.source_date_epoch {
        Some(_) => now_rfc3339(ctx.opts.source_date_epoch),
        None => match ctx.cache_lookup(hex).and_then(|r| r.created) {
            Some(t) => t,
            None => {
                let t = now_rfc3339(None);
                let rec = CacheRecord {
                    created_by: "image config".into(),
                    created: Some(t.clone()),
                    ..Default::default()
                };
                ctx.store.cache_put(hex, &rec)?;
                t
            }
        },
    };
    // With SOURCE_DATE_EPOCH, `created` needs no record.
    let created_key = ctx.opts.source_date_epoch.is_none().then(|| hex.to_string());
    for &i in &s.pending_created {
        if let Some(h) = config.history.get_mut(i) {
            h.created = None;
        }
    }
    monotonic_history(&mut config.history, &created);
    config.created = Some(created);
    let media_type = media::OCI_CONFIG;
    let config_desc = ctx.store.put_json_blob(media_type, &config)?;
    let manifest = Manifest::new(config_desc.clone(), s.layers.iter().map(|l| l.desc.clone()).collect());
    let manifest_desc = ctx.store.put_json_blob(media::OCI_MANIFEST, &manifest)?;
    ctx.store.add_image(&manifest_desc, tags)?;
    Ok((manifest_desc, config_desc.digest, created_key))
}

/// Make the history's `created` times non-decreasing in Dockerfile order: an entry without
/// a time of its own (config-only instructions: ENV, LABEL, ...) takes the time of the entry
/// before it (the first entries: of the first timed entry, else the image's), and a time
/// earlier than a previous one is raised to it (a step cached from an older build after a
/// rebuilt one). Deterministic, so a cached rebuild keeps the image ID.
fn monotonic_history(history: &mut [crate::store::History], image_created: &str) {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let first_timed = history.iter().find_map(|h| h.created.clone()).unwrap_or_else(|| image_created.to_string());
    let mut last: String = first_timed;
    for h in history.iter_mut() {
        match &h.created {
            Some(t) if parse(t).is_some() && parse(t) >= parse(&last) => last = t.clone(),
            _ => h.created = Some(last.clone()),
        }
    }
}

/// `--output type=oci|docker,dest=FILE`: the store's save code, for the built image.
pub fn write_output(ctx: &Ctx<'_>, image_id: &Digest, out: &Output) -> Result<(), BuildError> {
    let names: Vec<String> = if ctx.opts.tags.is_empty() { vec![image_id.to_string()] } else { ctx.opts.tags.clone() };
    let format = match out.format {
        OutputFormat::Oci => ArchiveFormat::Oci,
        OutputFormat::Docker => ArchiveFormat::Docker,
    };
    ctx.store.save_to_path(&names, format, &out.dest)?;
    Ok(())
}
