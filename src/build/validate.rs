//! Checks of every step of the stages to build, before anything runs: an unsupported flag
//! or a value Docker rejects (STOPSIGNAL, EXPOSE, an empty `--from`, a tmpfs `size=`), or a
//! required secret no `--secret` gives, fails the build at once with its
//! `Dockerfile:LINE:COL` location, instead of after earlier steps ran.

use crate::dockerfile::ast::{Instruction, Mount, Security, Source};
use crate::plan::graph::{is_git_source, is_remote_source, stage_by_name};
use crate::plan::sources::compile_excludes;
use crate::plan::stages::{ScopedInstruction, StageError};

use super::checksum::{check_commit_prefix, Checksum};
use super::copy::chmod_mode;
use super::mounts::{missing_secret, missing_ssh, mount_target, tmpfs_size, SecretMount};
use super::{BuildError, Ctx, Secrets, SshAgents};

/// Check every instruction (and base-stage ONBUILD trigger) of the needed stages.
pub(crate) fn validate(ctx: &Ctx<'_>) -> Result<(), BuildError> {
    for &i in &ctx.graph.stages.order {
        let Some(scoped) = ctx.graph.scoped.get(i).and_then(Option::as_ref) else { continue };
        for t in scoped.triggers.iter().chain(&scoped.instructions) {
            if let Err(message) = check(&t.expanded, &ctx.opts.secrets, &ctx.opts.ssh).and_then(|()| check_from(ctx, &t.expanded)) {
                return Err(at(ctx, t, message));
            }
        }
    }
    Ok(())
}

fn at(ctx: &Ctx<'_>, t: &ScopedInstruction, message: String) -> BuildError {
    BuildError::Plan(StageError::At {
        path: ctx.dockerfile_display.clone(),
        line: t.span.start.line,
        col: t.span.start.col.max(1),
        message,
    })
}

/// A RUN mount's `from=` must name a stage of this Dockerfile or an image in the store.
fn check_from(ctx: &Ctx<'_>, instr: &Instruction) -> Result<(), String> {
    let Instruction::Run(r) = instr else { return Ok(()) };
    for m in &r.mounts {
        if let Mount::Bind { from: Some(f), .. } | Mount::Cache { from: Some(f), .. } = m {
            if stage_by_name(ctx.df, f).is_none() {
                ctx.store.resolve(f).map_err(|e| format!("RUN --mount from={f} is neither a stage of this Dockerfile nor an image here: {e}"))?;
            }
        }
    }
    Ok(())
}

/// The flags of a COPY or ADD: `--chmod` octal, `--exclude` patterns that compile,
/// `--checksum` of the form its source needs.
fn check_copy(chmod: Option<&str>, exclude: &[String], checksum: Option<&str>, sources: &[Source]) -> Result<(), String> {
    if let Some(m) = chmod {
        chmod_mode(m)?;
    }
    if !exclude.is_empty() {
        compile_excludes(exclude).map_err(|e| e.to_string())?;
    }
    if let Some(c) = checksum {
        let git = sources.iter().any(|s| matches!(s, Source::Path(p) if is_git_source(p)));
        if git {
            check_commit_prefix(c)?;
        } else {
            Checksum::parse(c)?;
        }
    }
    Ok(())
}

/// What is wrong with one expanded instruction, given the build's secrets.
pub(crate) fn check(instr: &Instruction, secrets: &Secrets, ssh: &SshAgents) -> Result<(), String> {
    match instr {
        Instruction::Run(r) => {
            if r.security == Some(Security::Insecure) {
                return Err("RUN --security=insecure is not supported yet".into());
            }
            for m in &r.mounts {
                match m {
                    Mount::Bind { from: Some(f), .. } | Mount::Cache { from: Some(f), .. } if f.is_empty() => {
                        return Err("RUN --mount from= is empty: name a stage or an image".into())
                    }
                    Mount::Bind { target, .. } => bind_target("bind", target)?,
                    Mount::Cache { target, .. } => bind_target("cache", target)?,
                    Mount::Tmpfs { target, size } => {
                        mount_target("tmpfs", None, target)?;
                        tmpfs_size(size.as_deref())?;
                    }
                    Mount::Secret { id, target, env, required, .. } => {
                        let s = SecretMount::resolve(id.as_deref(), target.as_deref(), env.as_deref(), None)?;
                        if *required && secrets.get(&s.id).is_none() {
                            return Err(missing_secret(&s.id));
                        }
                    }
                    Mount::Ssh { id, required: true, .. } => {
                        let id = id.as_deref().filter(|i| !i.is_empty()).unwrap_or("default");
                        if ssh.get(id).is_none() {
                            return Err(missing_ssh(id));
                        }
                    }
                    _ => {}
                }
            }
        }
        Instruction::Copy(c) if c.from.as_deref().is_some_and(|f| f.trim().is_empty()) => {
            return Err("COPY --from is empty: name a stage, a stage index or an image, or drop --from to copy from the context".into());
        }
        Instruction::Copy(c) if c.sources.iter().any(is_remote_source) => {
            return Err("COPY cannot take a URL or git source: use ADD".into());
        }
        Instruction::Copy(c) => check_copy(c.chmod.as_deref(), &c.exclude, None, &c.sources)?,
        Instruction::Add(a) => check_copy(a.chmod.as_deref(), &a.exclude, a.checksum.as_deref(), &a.sources)?,
        Instruction::Stopsignal(t) => check_signal(&t.value)?,
        Instruction::Expose(w) => {
            for p in &w.words {
                check_port(p)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A bind or cache mount needs a target, and not `/` (BuildKit refuses it too).
fn bind_target(kind: &str, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err(format!("RUN --mount=type={kind}: the target is empty: add target=<path>"));
    }
    mount_target(kind, None, target).map(|_| ())
}

/// Docker's `signal.ParseSignal`: a number > 0, or a name with or without `SIG`
/// (case-insensitive), including `RTMIN+n` / `RTMAX-n`.
fn check_signal(raw: &str) -> Result<(), String> {
    let bad = || format!("STOPSIGNAL: invalid signal: {raw}; use a name such as SIGTERM or a number");
    if let Ok(n) = raw.parse::<i64>() {
        return if (1..=64).contains(&n) { Ok(()) } else { Err(bad()) };
    }
    let up = raw.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let rt = |s: &str, sign: char| -> bool {
        match s.split_once(sign) {
            Some((_, n)) => n.parse::<u32>().is_ok_and(|n| (1..=15).contains(&n)),
            None => s.is_empty(),
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return if rt(rest, '+') { Ok(()) } else { Err(bad()) };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return if rt(rest, '-') { Ok(()) } else { Err(bad()) };
    }
    // Names Go's syscall knows on Linux (moby/sys/signal's SignalMap).
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL", "PIPE",
        "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP", "TTIN", "TTOU",
        "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "UNUSED",
    ];
    if NAMES.contains(&name) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Docker's `nat.ParsePortSpecs` for EXPOSE: `port[-port][/tcp|udp|sctp]`.
fn check_port(spec: &str) -> Result<(), String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, "tcp"),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.to_ascii_lowercase().as_str()) {
        return Err(format!("EXPOSE {spec}: invalid proto: {proto}; use tcp, udp or sctp"));
    }
    let port = |p: &str| p.parse::<u16>().is_ok();
    let ok = match ports.split_once('-') {
        Some((a, b)) => port(a) && port(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => port(ports),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("EXPOSE {spec}: invalid containerPort: {ports}; use a number from 1 to 65535"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_ports() {
        for s in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "SIGWINCH"] {
            assert!(check_signal(s).is_ok(), "{s}");
        }
        for s in ["SIGFOO", "0", "-1", "99", "RTMIN+99", ""] {
            assert!(check_signal(s).is_err(), "{s}");
        }
        for p in ["80", "53/udp", "8000-8010/tcp", "1/SCTP"] {
            assert!(check_port(p).is_ok(), "{p}");
        }
        assert!(check_port("1/bogus").unwrap_err().contains("invalid proto"));
        assert!(check_port("99999").unwrap_err().contains("invalid containerPort"));
        assert!(check_port("9-1").is_err());
    }
}
