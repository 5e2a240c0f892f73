//! Build reports: `--timings` (a self-contained HTML page) and `--metadata-file` (JSON), in
//! the spirit of cargo's `--timings` and BuildKit's `--metadata-file`.
//!
//! # One source of truth
//!
//! A report is made from the progress events the build sent (recorded with their send times
//! by [`ProgressSink::recording`](crate::progress::ProgressSink::recording)) plus the
//! [`BuildResult`]: a step's start is its `StepStarted`, its end its `StepCached`,
//! `StepDone` or `StepFailed`, its stage, bytes hashed and layer sizes its `StepFacts`, its
//! `--explain` reasons its `StepExplain`. So the report shows what the progress display
//! showed, and the build keeps no second bookkeeping. A step's duration is wall time from
//! its start line to its result: a `COPY --from` includes the wait for its source stage.
//!
//! # JSON
//!
//! ```json
//! {
//!   "containerimage.config.digest": "sha256:…",   // BuildKit's keys
//!   "containerimage.digest": "sha256:…",
//!   "image_id": "sha256:…", "manifest_digest": "sha256:…", "tags": ["app:1"],
//!   "duration_ms": 1234, "steps_total": 6, "steps_cached": 4,
//!   "steps": [{ "id": 3, "name": "[2/5] WORKDIR /app", "stage": "stage-0", "kind": "step",
//!               "cached": true, "failed": false, "start_ms": 12, "duration_ms": 1,
//!               "bytes_hashed": 0, "layer_size": 93, "layer_uncompressed_size": 1536,
//!               "layer_digest": "sha256:…", "cache_key": "sha256:…", "reasons": [] }, …]
//! }
//! ```
//!
//! A build that fails still gets both reports: the image fields are left out, `error` holds
//! the build's error, and the failed step has `"failed": true`.
//!
//! `kind` is `internal` for work outside the Dockerfile's steps (loading the build
//! context), `from` for a stage's base and `step` otherwise. Times are milliseconds from
//! the start of the build. A layer's uncompressed size is known for layers this version of
//! rbuild wrote (it is kept in the cache record); otherwise it is `null`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::progress::{BuildEvent, TimedEvent};

use super::BuildResult;

/// The cache record field holding a layer's uncompressed tar size.
pub const UNCOMPRESSED_SIZE: &str = "layer_uncompressed_size";

/// A cache record's `extra` fields plus the size of its layer's uncompressed tar.
pub(crate) fn with_layer_size(mut extra: BTreeMap<String, Value>, tar_size: u64) -> BTreeMap<String, Value> {
    extra.insert(UNCOMPRESSED_SIZE.to_string(), Value::from(tar_size));
    extra
}

/// Writing a report failed.
#[derive(Debug, thiserror::Error)]
#[error("writing the report {path}: {source}")]
pub struct ReportError {
    /// The report's path.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// One build, for `--timings` and `--metadata-file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildReport {
    /// The image ID (config digest), under BuildKit's name (empty when the build failed).
    #[serde(rename = "containerimage.config.digest", default, skip_serializing_if = "String::is_empty")]
    pub config_digest: String,
    /// The manifest digest, under BuildKit's name.
    #[serde(rename = "containerimage.digest", default, skip_serializing_if = "String::is_empty")]
    pub image_digest: String,
    /// The image ID (config digest).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// The manifest digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest_digest: String,
    /// Why the build failed (absent when it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Tags written.
    pub tags: Vec<String>,
    /// Wall time of the build.
    pub duration_ms: u64,
    /// Steps with a key (as the summary line counts them).
    pub steps_total: usize,
    /// Of which cache hits.
    pub steps_cached: usize,
    /// Every step, in start order.
    pub steps: Vec<StepReport>,
}

/// One step of a [`BuildReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The progress id (`#N`).
    pub id: u32,
    /// Display name (`[2/5] RUN make`).
    pub name: String,
    /// Stage display name (`builder`, `stage-0`); `None` for internal work.
    pub stage: Option<String>,
    /// `internal`, `from` or `step`.
    pub kind: String,
    /// A cache hit.
    pub cached: bool,
    /// It failed.
    pub failed: bool,
    /// Milliseconds from the build's start.
    pub start_ms: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
    /// Context bytes read to compute its key.
    pub bytes_hashed: u64,
    /// Compressed size of its layer.
    pub layer_size: Option<u64>,
    /// Uncompressed size of its layer.
    pub layer_uncompressed_size: Option<u64>,
    /// Its layer's digest.
    pub layer_digest: Option<String>,
    /// Its cache key.
    pub cache_key: Option<String>,
    /// Why it missed the cache (`--explain`).
    pub reasons: Vec<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl BuildReport {
    /// Make the report of a build that started at `start` from the events it sent.
    /// The report of a build from its events and its result (or its error).
    pub fn from_events(start: Instant, events: &[TimedEvent], result: Result<&BuildResult, &str>) -> Self {
        let mut steps: Vec<StepReport> = Vec::new();
        let mut at: HashMap<u32, usize> = HashMap::new();
        let since = |t: Instant| t.saturating_duration_since(start);
        for te in events {
            let slot = |id: &u32| at.get(id).copied();
            match &te.event {
                BuildEvent::StepStarted { id, name } => {
                    at.insert(*id, steps.len());
                    steps.push(StepReport {
                        id: *id,
                        name: name.clone(),
                        stage: None,
                        kind: if name.starts_with("[internal]") {
                            "internal"
                        } else {
                            "step"
                        }
                        .into(),
                        cached: false,
                        failed: false,
                        start_ms: ms(since(te.at)),
                        duration_ms: 0,
                        bytes_hashed: 0,
                        layer_size: None,
                        layer_uncompressed_size: None,
                        layer_digest: None,
                        cache_key: None,
                        reasons: Vec::new(),
                    });
                }
                BuildEvent::StepCached { id } | BuildEvent::StepDone { id, .. } | BuildEvent::StepFailed { id, .. } => {
                    if let Some(i) = slot(id) {
                        let s = &mut steps[i];
                        s.duration_ms = ms(since(te.at)).saturating_sub(s.start_ms);
                        s.cached = matches!(te.event, BuildEvent::StepCached { .. });
                        s.failed = matches!(te.event, BuildEvent::StepFailed { .. });
                    }
                }
                BuildEvent::StepExplain { id, reasons } => {
                    if let Some(i) = slot(id) {
                        steps[i].reasons.extend(reasons.iter().cloned());
                    }
                }
                BuildEvent::StepFacts { id, facts } => {
                    if let Some(i) = slot(id) {
                        let s = &mut steps[i];
                        s.stage = Some(facts.stage.clone());
                        if facts.base {
                            s.kind = "from".into();
                        }
                        s.cache_key = facts.cache_key.clone();
                        s.bytes_hashed = facts.bytes_hashed;
                        s.layer_digest = facts.layer_digest.clone();
                        s.layer_size = facts.layer_size;
                        s.layer_uncompressed_size = facts.layer_uncompressed_size;
                    }
                }
                BuildEvent::StepLog { .. } | BuildEvent::Warning { .. } | BuildEvent::Finished { .. } => {}
            }
        }
        steps.sort_by_key(|s| (s.start_ms, s.id));
        match result {
            Ok(result) => BuildReport {
                config_digest: result.image_id.to_string(),
                image_digest: result.manifest.digest.to_string(),
                image_id: result.image_id.to_string(),
                manifest_digest: result.manifest.digest.to_string(),
                error: None,
                tags: result.tags.iter().map(|t| t.to_string()).collect(),
                duration_ms: ms(result.elapsed),
                steps_total: result.steps,
                steps_cached: result.cached,
                steps,
            },
            Err(error) => BuildReport {
                config_digest: String::new(),
                image_digest: String::new(),
                image_id: String::new(),
                manifest_digest: String::new(),
                error: Some(error.to_string()),
                tags: Vec::new(),
                duration_ms: ms(start.elapsed()),
                steps_total: steps.iter().filter(|s| s.kind != "internal").count(),
                steps_cached: steps.iter().filter(|s| s.kind != "internal" && s.cached).count(),
                steps,
            },
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// Write the JSON report to `path` (temp file in the same directory, then rename).
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        write_file(path, self.to_json().as_bytes())
    }

    /// Write the HTML report to `path` (temp file in the same directory, then rename).
    pub fn write_html(&self, path: &Path) -> Result<(), ReportError> {
        write_file(path, self.to_html().as_bytes())
    }

    /// The self-contained HTML page: header, a timeline with one bar per step grouped by
    /// stage, the step table and the `--explain` reasons. Inline CSS and SVG, no script.
    pub fn to_html(&self) -> String {
        let mut h = String::with_capacity(16 * 1024);
        let total_ms = self
            .steps
            .iter()
            .map(|s| s.start_ms + s.duration_ms)
            .chain([self.duration_ms])
            .max()
            .unwrap_or(0)
            .max(1);
        let title = match self.tags.first() {
            Some(t) => format!("rbuild timings: {t}"),
            None => "rbuild timings".to_string(),
        };
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
            esc(&title)
        );
        let _ = write!(h, "<h1>{}</h1>\n<table class=\"summary\">\n", esc(&title));
        let ran = self.steps.iter().filter(|s| s.kind == "step" && !s.cached).count();
        let mut rows: Vec<(&str, String)> = Vec::new();
        if let Some(e) = &self.error {
            rows.push(("Result", format!("<span class=\"tag failed\">FAILED</span> <code>{}</code>", esc(e))));
        }
        let digest = |d: &str| {
            if d.is_empty() {
                "<span class=\"dim\">none</span>".to_string()
            } else {
                format!("<code>{}</code>", esc(d))
            }
        };
        rows.extend([
            ("Image ID", digest(&self.image_id)),
            ("Manifest digest", digest(&self.manifest_digest)),
            (
                "Tags",
                if self.tags.is_empty() {
                    "<span class=\"dim\">none</span>".into()
                } else {
                    self.tags
                        .iter()
                        .map(|t| format!("<code>{}</code>", esc(t)))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            ),
            ("Total time", esc(&fmt_ms(self.duration_ms))),
            (
                "Steps",
                format!("{} ({} cached, {} ran)", self.steps_total, self.steps_cached, ran),
            ),
            (
                "Context bytes hashed",
                esc(&fmt_bytes(self.steps.iter().map(|s| s.bytes_hashed).sum())),
            ),
        ]);
        for (k, v) in rows {
            let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
        }
        h.push_str("</table>\n");

        h.push_str("<h2>Timeline</h2>\n");
        h.push_str(
            "<div class=\"legend\"><span><i class=\"sw ran\"></i>ran</span><span><i class=\"sw cached\"></i>cached</span>\
             <span><i class=\"sw internal\"></i>internal</span><span><i class=\"sw failed\"></i>failed</span></div>\n",
        );
        self.timeline_svg(&mut h, total_ms);

        h.push_str("<h2>Steps</h2>\n<table class=\"steps\">\n<thead><tr><th>#</th><th>Stage</th><th>Step</th><th>Cache</th>\
                    <th class=\"num\">Start</th><th class=\"num\">Duration</th><th class=\"num\">Bytes hashed</th>\
                    <th class=\"num\">Layer blob</th><th class=\"num\">Layer (uncompressed)</th></tr></thead>\n<tbody>\n");
        for s in &self.steps {
            let (class, label) = status(s);
            let opt = |v: Option<u64>| v.map(fmt_bytes).unwrap_or_else(|| "–".into());
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{}</td><td class=\"stage\">{}</td><td class=\"name\">{}</td><td><span class=\"tag {class}\">{label}</span></td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                s.id,
                esc(s.stage.as_deref().unwrap_or("")),
                esc(&s.name),
                esc(&fmt_ms(s.start_ms)),
                esc(&fmt_ms(s.duration_ms)),
                if s.bytes_hashed > 0 { esc(&fmt_bytes(s.bytes_hashed)) } else { "–".into() },
                esc(&opt(s.layer_size)),
                esc(&opt(s.layer_uncompressed_size)),
            );
        }
        h.push_str("</tbody>\n</table>\n");

        let explained: Vec<&StepReport> = self.steps.iter().filter(|s| !s.reasons.is_empty()).collect();
        if !explained.is_empty() {
            h.push_str("<h2>Why steps ran</h2>\n<dl class=\"why\">\n");
            for s in explained {
                let _ = writeln!(h, "<dt>#{} {}</dt>", s.id, esc(&s.name));
                for r in &s.reasons {
                    let _ = writeln!(h, "<dd>{}</dd>", esc(r));
                }
            }
            h.push_str("</dl>\n");
        }
        h.push_str(
            "<p class=\"foot\">Generated by rbuild. Times are from the start of the build.</p>\n</body>\n</html>\n",
        );
        h
    }

    fn timeline_svg(&self, h: &mut String, total_ms: u64) {
        const LABEL_W: f64 = 360.0;
        const BARS_W: f64 = 700.0;
        const ROW_H: f64 = 22.0;
        const GROUP_H: f64 = 24.0;
        const TOP: f64 = 26.0;
        const RIGHT_PAD: f64 = 110.0;
        let width = LABEL_W + BARS_W + RIGHT_PAD;

        // Groups: internal work first, then the stages in the order they started.
        let mut groups: Vec<(String, Vec<&StepReport>)> = Vec::new();
        for s in &self.steps {
            let g = match (&s.stage, s.kind.as_str()) {
                (_, "internal") | (None, _) => "internal".to_string(),
                (Some(st), _) => format!("stage {st}"),
            };
            match groups.iter_mut().find(|(n, _)| *n == g) {
                Some((_, v)) => v.push(s),
                None => groups.push((g, vec![s])),
            }
        }
        // Stages in the order the build started them (their first step id).
        groups.sort_by_key(|(g, v)| (g != "internal", v.iter().map(|s| s.id).min()));
        let rows: usize = groups.iter().map(|(_, v)| v.len()).sum();
        let height = TOP + groups.len() as f64 * GROUP_H + rows as f64 * ROW_H + 10.0;
        let x_of = |t: u64| LABEL_W + (t as f64 / total_ms as f64) * BARS_W;
        let _ = writeln!(
            h,
            "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"build timeline\">"
        );
        // Axis: ticks at a "nice" step, with grid lines.
        let tick = nice_tick(total_ms);
        let mut t = 0;
        while t <= total_ms {
            let x = x_of(t);
            let _ = writeln!(
                h,
                "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/><text class=\"tick\" x=\"{x:.1}\" y=\"14\">{}</text>",
                TOP - 6.0,
                height - 6.0,
                esc(&fmt_ms(t))
            );
            t += tick;
        }
        let mut y = TOP;
        let mut row = 0usize;
        for (g, steps) in &groups {
            let _ = writeln!(
                h,
                "<rect class=\"group\" x=\"0\" y=\"{y:.1}\" width=\"{width:.0}\" height=\"{GROUP_H:.0}\"/><text class=\"gname\" x=\"6\" y=\"{:.1}\">{}</text>",
                y + 16.0,
                esc(g)
            );
            y += GROUP_H;
            for s in steps {
                let (class, label) = status(s);
                let x = x_of(s.start_ms);
                let w = (x_of(s.start_ms + s.duration_ms) - x).max(2.0);
                let name = truncate(&s.name, 44);
                let tip = format!(
                    "#{} {} — {} at {} ({})",
                    s.id,
                    s.name,
                    label,
                    fmt_ms(s.start_ms),
                    fmt_ms(s.duration_ms)
                );
                let _ = writeln!(
                    h,
                    "<g><title>{}</title>{}<text class=\"sid\" x=\"34\" y=\"{:.1}\">#{}</text><text class=\"label\" x=\"42\" y=\"{:.1}\">{}</text>\
                     <rect class=\"bar {class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"2\"/>\
                     <text class=\"dur\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
                    esc(&tip),
                    if row % 2 == 1 {
                        format!("<rect class=\"stripe\" x=\"0\" y=\"{y:.1}\" width=\"{width:.0}\" height=\"{ROW_H:.0}\"/>")
                    } else {
                        String::new()
                    },
                    y + 15.0,
                    s.id,
                    y + 15.0,
                    esc(&name),
                    y + 4.0,
                    ROW_H - 8.0,
                    x + w + 5.0,
                    y + 15.0,
                    esc(&if class == "cached" { format!("CACHED {}", fmt_ms(s.duration_ms)) } else { fmt_ms(s.duration_ms) }),
                );
                y += ROW_H;
                row += 1;
            }
        }
        h.push_str("</svg>\n");
    }
}

fn status(s: &StepReport) -> (&'static str, &'static str) {
    if s.failed {
        ("failed", "FAILED")
    } else if s.kind == "internal" {
        ("internal", "internal")
    } else if s.cached {
        ("cached", "CACHED")
    } else {
        ("ran", "ran")
    }
}

/// A tick step of 1, 2 or 5 × 10^k ms giving at most about 10 ticks.
fn nice_tick(total_ms: u64) -> u64 {
    let raw = (total_ms / 10).max(1);
    let mut p = 1u64;
    while p.saturating_mul(10) <= raw {
        p = p.saturating_mul(10);
    }
    for m in [1, 2, 5, 10] {
        if p.saturating_mul(m) >= raw {
            return p.saturating_mul(m);
        }
    }
    p.saturating_mul(10)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n - 1).collect();
    t.push('…');
    t
}

/// `1234` → `1.23s`, `56` → `56ms`.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Bytes in B, KiB, MiB, GiB.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let err = |source| ReportError {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".rbuild-report-")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

const CSS: &str = r#"
:root { --ran: #2f6fdf; --cached: #9aa5b1; --internal: #8e5bd6; --failed: #d9363e; --fg: #1d2330; --dim: #6b7380; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); margin: 24px 32px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #e3e6ea; padding-bottom: 4px; }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; background: #f3f5f7; padding: 1px 4px; border-radius: 3px; word-break: break-all; }
.dim { color: var(--dim); }
table.summary th { text-align: left; font-weight: 600; padding: 2px 16px 2px 0; color: var(--dim); white-space: nowrap; }
table.summary td { padding: 2px 0; }
.legend { margin: 4px 0 8px; color: var(--dim); }
.legend span { margin-right: 18px; }
.sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: -1px; margin-right: 6px; }
.sw.ran, .bar.ran { background: var(--ran); fill: var(--ran); }
.sw.cached, .bar.cached { background: var(--cached); fill: var(--cached); }
.sw.internal, .bar.internal { background: var(--internal); fill: var(--internal); }
.sw.failed, .bar.failed { background: var(--failed); fill: var(--failed); }
svg.timeline { display: block; max-width: 100%; height: auto; font: 12px system-ui, "DejaVu Sans", sans-serif; }
svg .grid { stroke: #e8ebef; stroke-width: 1; }
svg .tick { fill: var(--dim); text-anchor: middle; font-size: 11px; }
svg .group { fill: rgba(30, 50, 80, 0.06); }
svg .gname { fill: var(--fg); font-weight: 600; }
svg .label { fill: var(--fg); font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11.5px; }
svg .sid { fill: var(--dim); text-anchor: end; font-size: 11px; font-variant-numeric: tabular-nums; }
svg .stripe { fill: rgba(30, 50, 80, 0.03); }
svg .dur { fill: var(--dim); font-size: 11px; }
table.steps { border-collapse: collapse; width: 100%; font-size: 13px; }
table.steps th, table.steps td { padding: 4px 8px; border-bottom: 1px solid #eceff2; vertical-align: top; }
table.steps th { text-align: left; background: #f7f8fa; font-weight: 600; white-space: nowrap; }
table.steps tbody tr:hover { background: #fafbfc; }
.num { text-align: right !important; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.stage { white-space: nowrap; }
td.name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-word; }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 11px; font-weight: 600; color: #fff; }
.tag.ran { background: var(--ran); } .tag.cached { background: var(--cached); } .tag.internal { background: var(--internal); } .tag.failed { background: var(--failed); }
dl.why dt { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; margin-top: 8px; }
dl.why dd { margin: 2px 0 0 20px; color: #3a4150; }
dl.why dd::before { content: "• "; color: var(--dim); }
.foot { color: var(--dim); font-size: 12px; margin-top: 28px; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<script>alert('x&y')</script> \"q\""),
            "&lt;script&gt;alert(&#39;x&amp;y&#39;)&lt;/script&gt; &quot;q&quot;"
        );
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(nice_tick(0), 1);
        assert_eq!(nice_tick(95), 10);
        assert_eq!(nice_tick(1234), 200);
        assert_eq!(nice_tick(3100), 500);
        assert_eq!(nice_tick(60_000), 10_000);
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_ms(56), "56ms");
        assert_eq!(fmt_ms(1234), "1.23s");
        assert_eq!(fmt_ms(61_000), "1m01s");
        assert_eq!(fmt_bytes(10), "10 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
