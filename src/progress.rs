//! Build events and their renderers: indicatif on a terminal, plain lines otherwise.
//!
//! The library never prints; it sends [`BuildEvent`]s through a [`ProgressSink`] (cheap to
//! clone, usable from any thread). One renderer thread ([`Renderer`]) turns them into output
//! on stderr: this file is the one place of the library that writes to the terminal.
//!
//! Plain output (CI, tests, `--progress=plain`), one line per event, BuildKit-like:
//!
//! ```text
//! #1 [internal] load build context
//! #1 DONE 0.0s
//! #2 [1/5] FROM busybox:local
//! #2 CACHED
//! #4 [3/5] RUN ./install.sh
//! #4 installing flask
//! #4 DONE 1.2s
//! #5 [4/5] COPY . .
//! #5 MISS because: file app.py changed (content)
//! #7 ERROR: process "/bin/sh -c false" did not complete successfully: exit code: 1
//! WARNING: overlayfs unavailable, using a copy of the rootfs
//! Successfully built sha256:ab12... in 2.31s (5 steps, 3 cached); tagged app:1
//! ```
//!
//! Tests parse these lines: `#N [` starts a step, `#N CACHED` marks it cached,
//! `#N MISS because: ` gives one reason it was not (`--explain`).
//!
//! A sink can also record every event with the time it was sent
//! ([`ProgressSink::recording`]): the `--timings` and `--metadata-file` reports are made
//! from that record, so what they show is exactly what the progress display showed.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Which output stream a RUN line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The process's stdout.
    Stdout,
    /// The process's stderr.
    Stderr,
}

/// Something that happened during a build.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildEvent {
    /// Step `id` started; `name` is what the user sees (`[2/5] RUN make`).
    StepStarted {
        /// Unique per build, 1-based, in start order.
        id: u32,
        /// Display name.
        name: String,
    },
    /// Step `id` was a cache hit.
    StepCached {
        /// Step id.
        id: u32,
    },
    /// One line of a RUN's output (without the newline).
    StepLog {
        /// Step id.
        id: u32,
        /// Which stream.
        stream: Stream,
        /// The text.
        line: String,
    },
    /// Step `id` finished.
    StepDone {
        /// Step id.
        id: u32,
        /// How long it ran.
        elapsed: Duration,
    },
    /// Step `id` failed.
    StepFailed {
        /// Step id.
        id: u32,
        /// How long it ran.
        elapsed: Duration,
        /// One-line reason.
        error: String,
    },
    /// Why step `id` was not a cache hit (`--explain`): one reason per entry, in the order
    /// of the key's inputs. Sent before the step runs.
    StepExplain {
        /// Step id.
        id: u32,
        /// Readable reasons (`file app.py changed (content)`).
        reasons: Vec<String>,
    },
    /// What a finished step is and produced, for reports; renderers show nothing.
    StepFacts {
        /// Step id.
        id: u32,
        /// The facts.
        facts: StepFacts,
    },
    /// Something the user should know that does not stop the build.
    Warning {
        /// One line.
        message: String,
    },
    /// The build produced an image.
    Finished {
        /// `sha256:...` of the config.
        image_id: String,
        /// Tags written.
        tags: Vec<String>,
        /// Wall time of the whole build.
        elapsed: Duration,
        /// Steps with a key (FROM, RUN, COPY, ADD, WORKDIR) that ran or hit.
        steps: usize,
        /// Of which cache hits.
        cached: usize,
    },
}

/// What a step is and produced (sent once per step of a stage, after it finished or hit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFacts {
    /// The stage's display name (`builder`, or `stage-N` when unnamed).
    pub stage: String,
    /// The step is a stage's FROM.
    pub base: bool,
    /// The step's cache key (`sha256:...`), when it has one.
    pub cache_key: Option<String>,
    /// Bytes of context files read to compute the key (0 when the stat cache knew them all).
    pub bytes_hashed: u64,
    /// The layer the step produced or reused, if it has one.
    pub layer_digest: Option<String>,
    /// Its compressed (blob) size.
    pub layer_size: Option<u64>,
    /// Its uncompressed (tar) size, when recorded.
    pub layer_uncompressed_size: Option<u64>,
}

/// An event and when it was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    /// When [`ProgressSink::send`] was called.
    pub at: Instant,
    /// The event.
    pub event: BuildEvent,
}

/// The events a recording sink saw (RUN output lines left out), in send order.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    events: Arc<Mutex<Vec<TimedEvent>>>,
}

impl EventLog {
    /// Everything recorded so far.
    pub fn events(&self) -> Vec<TimedEvent> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// TTY when stderr is a terminal, else plain.
    #[default]
    Auto,
    /// One line per event.
    Plain,
    /// indicatif spinners.
    Tty,
    /// Nothing.
    Quiet,
}

impl std::str::FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProgressMode::Auto),
            "plain" => Ok(ProgressMode::Plain),
            "tty" => Ok(ProgressMode::Tty),
            "quiet" => Ok(ProgressMode::Quiet),
            _ => Err(format!("unknown progress mode {s:?}: use auto, plain, tty or quiet")),
        }
    }
}

/// Where the library sends events. Clone it freely; a null sink drops everything.
#[derive(Debug, Clone, Default)]
pub struct ProgressSink {
    tx: Option<Sender<BuildEvent>>,
    log: Option<EventLog>,
}

impl ProgressSink {
    /// A sink that drops every event.
    pub fn null() -> Self {
        ProgressSink { tx: None, log: None }
    }

    /// A sink and the receiving end (for tests and other consumers).
    pub fn channel() -> (Self, Receiver<BuildEvent>) {
        let (tx, rx) = channel();
        (ProgressSink { tx: Some(tx), log: None }, rx)
    }

    /// This sink, now also recording each event with its time (RUN output lines excepted)
    /// in the returned log.
    pub fn recording(self) -> (Self, EventLog) {
        let log = EventLog::default();
        (ProgressSink { tx: self.tx, log: Some(log.clone()) }, log)
    }

    /// Send one event (never blocks; a gone renderer is ignored).
    pub fn send(&self, ev: BuildEvent) {
        if let Some(log) = &self.log {
            if !matches!(ev, BuildEvent::StepLog { .. }) {
                let at = Instant::now();
                log.events.lock().unwrap_or_else(|p| p.into_inner()).push(TimedEvent { at, event: ev.clone() });
            }
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(ev);
        }
    }

    /// Shorthand for a warning.
    pub fn warn(&self, message: impl Into<String>) {
        self.send(BuildEvent::Warning { message: message.into() });
    }
}

/// The renderer thread. Drop every [`ProgressSink`] clone, then [`Renderer::finish`].
pub struct Renderer {
    handle: Option<JoinHandle<()>>,
}

impl Renderer {
    /// Start rendering in `mode` to stderr. Returns the sink to send events to.
    pub fn start(mode: ProgressMode) -> (ProgressSink, Renderer) {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Tty,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        match mode {
            ProgressMode::Quiet => (ProgressSink::null(), Renderer { handle: None }),
            ProgressMode::Tty => Self::spawn(render_tty),
            _ => Self::spawn(move |rx| render_plain(rx, &mut std::io::stderr().lock())),
        }
    }

    /// Render plain lines to any writer (tests, logs).
    pub fn plain_to(mut out: Box<dyn Write + Send>) -> (ProgressSink, Renderer) {
        Self::spawn(move |rx| render_plain(rx, &mut out))
    }

    fn spawn(f: impl FnOnce(Receiver<BuildEvent>) + Send + 'static) -> (ProgressSink, Renderer) {
        let (sink, rx) = ProgressSink::channel();
        let handle = std::thread::Builder::new()
            .name("rbuild-progress".into())
            .spawn(move || f(rx))
            .ok();
        (sink, Renderer { handle })
    }

    /// Wait until every event sent before the last sink was dropped is rendered.
    pub fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `1.234s` → `"1.2s"` (BuildKit's DONE format).
pub fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The plain line(s) for one event.
pub fn plain_lines(ev: &BuildEvent) -> Vec<String> {
    match ev {
        BuildEvent::StepStarted { id, name } => vec![format!("#{id} {name}")],
        BuildEvent::StepCached { id } => vec![format!("#{id} CACHED")],
        BuildEvent::StepLog { id, line, .. } => vec![format!("#{id} {line}")],
        BuildEvent::StepDone { id, elapsed } => vec![format!("#{id} DONE {}", fmt_secs(*elapsed))],
        BuildEvent::StepFailed { id, error, .. } => vec![format!("#{id} ERROR: {error}")],
        BuildEvent::StepExplain { id, reasons } => {
            reasons.iter().map(|r| format!("#{id} MISS because: {r}")).collect()
        }
        BuildEvent::StepFacts { .. } => Vec::new(),
        BuildEvent::Warning { message } => vec![format!("WARNING: {message}")],
        BuildEvent::Finished { image_id, tags, elapsed, steps, cached } => {
            let mut s = format!(
                "Successfully built {image_id} in {:.2}s ({steps} step{}, {cached} cached)",
                elapsed.as_secs_f64(),
                if *steps == 1 { "" } else { "s" }
            );
            if !tags.is_empty() {
                s.push_str("; tagged ");
                s.push_str(&tags.join(", "));
            }
            vec![s]
        }
    }
}

// The one place of the library that writes to the terminal.
#[allow(clippy::print_stderr)]
fn render_plain(rx: Receiver<BuildEvent>, out: &mut dyn Write) {
    for ev in rx {
        for l in plain_lines(&ev) {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }
}

const TTY_LOG_LINES: usize = 6;

fn render_tty(rx: Receiver<BuildEvent>) {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let running = ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:>5}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let done = ProgressStyle::with_template("{prefix:.bold} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let log_style = ProgressStyle::with_template("{msg:.dim}").unwrap_or_else(|_| ProgressStyle::default_spinner());
    struct Step {
        bar: ProgressBar,
        log: ProgressBar,
        lines: VecDeque<String>,
        name: String,
    }
    let mut steps: HashMap<u32, Step> = HashMap::new();
    for ev in rx {
        match ev {
            BuildEvent::StepStarted { id, name } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(running.clone());
                bar.set_prefix(format!("#{id}"));
                bar.set_message(name.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                let log = multi.insert_after(&bar, ProgressBar::hidden());
                log.set_style(log_style.clone());
                steps.insert(id, Step { bar, log, lines: VecDeque::new(), name });
            }
            BuildEvent::StepLog { id, line, .. } => {
                if let Some(s) = steps.get_mut(&id) {
                    if s.lines.len() == TTY_LOG_LINES {
                        s.lines.pop_front();
                    }
                    s.lines.push_back(line);
                    if s.log.is_hidden() {
                        s.log.set_draw_target(ProgressDrawTarget::stderr());
                    }
                    let text: Vec<String> = s.lines.iter().map(|l| format!("    {l}")).collect();
                    s.log.set_message(text.join("\n"));
                    s.log.tick();
                }
            }
            BuildEvent::StepCached { id } => {
                if let Some(s) = steps.remove(&id) {
                    s.log.finish_and_clear();
                    s.bar.set_style(done.clone());
                    s.bar.finish_with_message(format!("{} CACHED", s.name));
                }
            }
            BuildEvent::StepDone { id, elapsed } => {
                if let Some(s) = steps.remove(&id) {
                    s.log.finish_and_clear();
                    s.bar.set_style(done.clone());
                    s.bar.finish_with_message(format!("{} DONE {}", s.name, fmt_secs(elapsed)));
                }
            }
            BuildEvent::StepFailed { id, error, .. } => {
                if let Some(s) = steps.remove(&id) {
                    s.bar.set_style(done.clone());
                    s.bar.finish_with_message(format!("{} ERROR: {error}", s.name));
                    if s.lines.is_empty() {
                        s.log.finish_and_clear();
                    } else {
                        s.log.finish();
                    }
                }
            }
            BuildEvent::StepFacts { .. } => {}
            ev @ (BuildEvent::Warning { .. } | BuildEvent::Finished { .. } | BuildEvent::StepExplain { .. }) => {
                for l in plain_lines(&ev) {
                    let _ = multi.println(l);
                }
            }
        }
    }
    for (_, s) in steps.drain() {
        s.log.finish_and_clear();
        s.bar.abandon();
    }
}

/// What a plain log says about one step (for tests and tools reading `--progress=plain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainStep {
    /// `#N`.
    pub id: u32,
    /// The text after `#N ` on the start line (`[2/5] RUN make`).
    pub name: String,
    /// `#N CACHED` seen.
    pub cached: bool,
    /// `#N DONE` seen.
    pub done: bool,
    /// `#N ERROR:` seen.
    pub failed: bool,
    /// The `#N MISS because: ` reasons, in order.
    pub reasons: Vec<String>,
}

/// Parse plain progress output into steps, in start order.
pub fn parse_plain(text: &str) -> Vec<PlainStep> {
    let mut steps: Vec<PlainStep> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('#') else { continue };
        let Some((num, tail)) = rest.split_once(' ') else { continue };
        let Ok(id) = num.parse::<u32>() else { continue };
        let pos = steps.iter().position(|s| s.id == id);
        match pos {
            None if tail.starts_with('[') => steps.push(PlainStep {
                id,
                name: tail.to_string(),
                cached: false,
                done: false,
                failed: false,
                reasons: Vec::new(),
            }),
            Some(i) if tail == "CACHED" => steps[i].cached = true,
            Some(i) if tail.starts_with("DONE ") => steps[i].done = true,
            Some(i) if tail.starts_with("ERROR:") => steps[i].failed = true,
            Some(i) if tail.starts_with("MISS because: ") => {
                steps[i].reasons.push(tail["MISS because: ".len()..].to_string())
            }
            _ => {}
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn plain_renderer_round_trips_through_the_parser() {
        let buf = Buf::default();
        let (sink, r) = Renderer::plain_to(Box::new(buf.clone()));
        let s2 = sink.clone();
        std::thread::spawn(move || {
            s2.send(BuildEvent::StepStarted { id: 1, name: "[1/3] FROM busybox:local".into() });
            s2.send(BuildEvent::StepCached { id: 1 });
        })
        .join()
        .unwrap();
        sink.send(BuildEvent::StepStarted { id: 2, name: "[2/3] RUN echo hi".into() });
        sink.send(BuildEvent::StepLog { id: 2, stream: Stream::Stdout, line: "hi".into() });
        sink.send(BuildEvent::StepExplain { id: 2, reasons: vec!["file a.py changed (content)".into(), "file b added".into()] });
        sink.send(BuildEvent::StepFacts { id: 2, facts: StepFacts::default() });
        sink.send(BuildEvent::StepDone { id: 2, elapsed: Duration::from_millis(1234) });
        sink.send(BuildEvent::StepStarted { id: 3, name: "[3/3] RUN false".into() });
        sink.send(BuildEvent::StepFailed { id: 3, elapsed: Duration::ZERO, error: "exit code: 1".into() });
        sink.send(BuildEvent::Finished {
            image_id: "sha256:ab".into(),
            tags: vec!["app:1".into()],
            elapsed: Duration::from_millis(2000),
            steps: 3,
            cached: 1,
        });
        drop(sink);
        r.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("#2 hi\n"), "{text}");
        assert!(text.contains("#2 DONE 1.2s\n"), "{text}");
        assert!(text.contains("Successfully built sha256:ab in 2.00s (3 steps, 1 cached); tagged app:1"));
        let steps = parse_plain(&text);
        assert_eq!(steps.len(), 3);
        assert!(steps[0].cached && !steps[0].done);
        assert!(steps[1].done && !steps[1].cached);
        assert!(steps[2].failed);
        assert_eq!(steps[1].name, "[2/3] RUN echo hi");
        assert!(text.contains("#2 MISS because: file a.py changed (content)\n#2 MISS because: file b added\n#2 DONE"));
        assert_eq!(steps[1].reasons, ["file a.py changed (content)", "file b added"]);
        assert!(steps[0].reasons.is_empty());
    }

    #[test]
    fn a_recording_sink_keeps_events_in_order_without_run_output() {
        let (sink, rx) = ProgressSink::channel();
        let (sink, log) = sink.recording();
        sink.send(BuildEvent::StepStarted { id: 1, name: "[1/2] RUN x".into() });
        sink.send(BuildEvent::StepLog { id: 1, stream: Stream::Stdout, line: "out".into() });
        sink.send(BuildEvent::StepDone { id: 1, elapsed: Duration::ZERO });
        drop(sink);
        assert_eq!(rx.iter().count(), 3, "the renderer still gets everything");
        let ev = log.events();
        assert_eq!(ev.len(), 2);
        assert!(matches!(ev[0].event, BuildEvent::StepStarted { .. }));
        assert!(matches!(ev[1].event, BuildEvent::StepDone { .. }));
        assert!(ev[0].at <= ev[1].at);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("plain".parse::<ProgressMode>(), Ok(ProgressMode::Plain));
        assert!("fancy".parse::<ProgressMode>().is_err());
    }
}
