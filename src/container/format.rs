//! The `ps` table, formatted as Docker formats it (the CLI prints the returned lines).

use chrono::{DateTime, Utc};

use super::state::{Container, Observed};

/// Docker's (go-units) human duration: "Less than a second", "3 seconds", "About a
/// minute", "5 minutes", "About an hour", "3 hours", "2 days", "3 weeks", "4 months",
/// "2 years".
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = d.num_minutes();
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.num_seconds() as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", d.num_hours() / 24 / 365)
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => format!("{} ago", human_duration(now - t)),
        None => "unknown".into(),
    }
}

/// The STATUS column: "Created", "Up 3 seconds", "Exited (0) 2 minutes ago", or
/// "Exited (unknown)" when the process vanished with nobody recording its exit.
pub fn status_text(observed: &Observed, now: DateTime<Utc>) -> String {
    match observed {
        Observed::Created => "Created".into(),
        Observed::Running { started_at, .. } => match started_at {
            Some(t) => format!("Up {}", human_duration(now - *t)),
            None => "Up".into(),
        },
        Observed::Exited { code: Some(c), finished_at } => {
            format!("Exited ({c}) {}", ago(*finished_at, now))
        }
        Observed::Exited { code: None, .. } => "Exited (unknown)".into(),
    }
}

/// Docker's ellipsis: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Options of `ps`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PsOptions {
    /// `-a`: include containers that are not running.
    pub all: bool,
    /// `-q`: only IDs.
    pub quiet: bool,
    /// `--no-trunc`: full IDs and commands.
    pub no_trunc: bool,
}

/// The lines `ps` prints for `containers` (newest first, as given) at time `now`.
pub fn ps_lines(containers: &[Container], opts: PsOptions, now: DateTime<Utc>) -> Vec<String> {
    let mut rows: Vec<[String; 6]> = Vec::new();
    for c in containers {
        let observed = c.observe();
        if !opts.all && !matches!(observed, Observed::Running { .. }) {
            continue;
        }
        let id = if opts.no_trunc { c.config.id.clone() } else { c.short_id().to_string() };
        if opts.quiet {
            rows.push([id, String::new(), String::new(), String::new(), String::new(), String::new()]);
            continue;
        }
        let cmd = super::command::display_command(&c.config.argv);
        let cmd = if opts.no_trunc { cmd } else { ellipsis(&cmd, 20) };
        rows.push([
            id,
            c.config.image.clone(),
            format!("{cmd:?}"),
            ago(c.created(), now),
            status_text(&observed, now),
            c.config.name.clone(),
        ]);
    }
    if opts.quiet {
        return rows.into_iter().map(|r| r[0].clone()).collect();
    }
    let header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"].map(String::from);
    table(std::iter::once(header).chain(rows).collect())
}

/// Left-aligned columns separated by at least three spaces (Docker's tabwriter padding).
fn table(rows: Vec<[String; 6]>) -> Vec<String> {
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.into_iter()
        .map(|r| {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < r.len() {
                    let pad = widths[i] - cell.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn durations_like_docker() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (3, "3 seconds"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (59 * 60, "59 minutes"),
            (3600, "About an hour"),
            (3 * 3600, "3 hours"),
            (47 * 3600, "47 hours"),
            (48 * 3600, "2 days"),
            (15 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(Duration::seconds(s)), want, "{s}s");
        }
    }

    #[test]
    fn status_texts() {
        let now = Utc::now();
        let t = |s: i64| Some(now - Duration::seconds(s));
        assert_eq!(status_text(&Observed::Created, now), "Created");
        assert_eq!(status_text(&Observed::Running { pid: 1, started_at: t(3) }, now), "Up 3 seconds");
        assert_eq!(
            status_text(&Observed::Exited { code: Some(0), finished_at: t(150) }, now),
            "Exited (0) 2 minutes ago"
        );
        assert_eq!(
            status_text(&Observed::Exited { code: Some(137), finished_at: t(0) }, now),
            "Exited (137) Less than a second ago"
        );
        assert_eq!(status_text(&Observed::Exited { code: None, finished_at: None }, now), "Exited (unknown)");
    }

    #[test]
    fn ellipsis_cuts_at_20() {
        assert_eq!(ellipsis("short", 20), "short");
        assert_eq!(ellipsis("sh -c 'sleep 1000; echo done'", 20), "sh -c 'sleep 1000; …");
        assert_eq!(ellipsis("sh -c 'sleep 1000; …", 20).chars().count(), 20);
    }

    #[test]
    fn table_pads_columns() {
        let lines = table(vec![
            ["A".into(), "BB".into(), "C".into(), "D".into(), "E".into(), "F".into()],
            ["aaaa".into(), "b".into(), "c".into(), "d".into(), "e".into(), "f".into()],
        ]);
        assert_eq!(lines[0], "A      BB   C   D   E   F");
        assert_eq!(lines[1], "aaaa   b    c   d   e   f");
    }
}
