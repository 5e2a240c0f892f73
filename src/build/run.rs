//! RUN: a process in the sandbox over the parent layers, its upper dir becomes the layer.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use crate::dockerfile::ast::{CommandLine, NetworkMode, Run, Security};
use crate::plan::cachekey::{self, RunInput};
use crate::progress::{BuildEvent, Stream};
use crate::sandbox::{self, BindMount, Rootfs, Spec, Stdio};
use crate::snapshot::MtimePolicy;

use super::mounts::{materialize, plan_mounts};
use super::rootfs::{lower_dirs, prepare_copies, step_layer, RootMode, Scratch};
use super::stage::{StageState, StepInfo};
use super::{BuildError, Ctx, Network};

/// Lines of output kept for the error of a failing RUN.
const TAIL_LINES: usize = 10;

/// Where heredoc scripts with a `#!` line are mounted, read-only (BuildKit uses /dev/pipes,
/// but the sandbox's /dev is a fresh tmpfs). The mount point leaves no trace in the layer.
const HEREDOC_DIR: &str = "/.rbuild-heredoc";

/// Run one RUN step; `Ok(true)` when it was a cache hit.
pub fn run_step(
    ctx: &Ctx<'_>,
    s: &mut StageState,
    env: Vec<(String, String)>,
    r: &Run,
    info: &StepInfo,
) -> Result<bool, BuildError> {
    if r.security == Some(Security::Insecure) {
        return Err(info.err("RUN --security=insecure is not supported yet"));
    }
    let network = match r.network {
        Some(NetworkMode::None) => Network::None,
        Some(NetworkMode::Host) => Network::Host,
        Some(NetworkMode::Default) | None => ctx.opts.network,
    };

    // The command: exec form as is; shell form through SHELL. A command that is only a
    // heredoc runs the heredoc's body as the script (its own interpreter with `#!`);
    // otherwise the heredoc bodies follow the command text so the shell feeds them.
    let shell = s.shell();
    let mut heredoc_files: Vec<(String, String)> = Vec::new();
    let argv: Vec<String> = match &r.command {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(cmd) => {
            let only_heredoc = r.heredocs.len() == 1 && is_only_heredoc(cmd);
            if only_heredoc {
                let h = &r.heredocs[0];
                if h.content.starts_with("#!") {
                    heredoc_files.push((h.name.clone(), h.content.clone()));
                    vec![format!("{HEREDOC_DIR}/{}", h.name)]
                } else {
                    let mut v = shell.clone();
                    v.push(h.content.clone());
                    v
                }
            } else {
                let mut script = cmd.clone();
                for h in &r.heredocs {
                    script.push('\n');
                    script.push_str(&h.content);
                    script.push_str(&h.name);
                    script.push('\n');
                }
                let mut v = shell.clone();
                v.push(script);
                v
            }
        }
    };
    let workdir = s.workdir();
    let user = s.user();
    let input = RunInput {
        argv: argv.clone(),
        heredocs: heredoc_files.clone(),
        env: env.clone(),
        user: user.clone(),
        workdir: workdir.clone(),
        network: match network {
            Network::Host => "host".into(),
            Network::None => "none".into(),
        },
        mounts: Vec::new(),
    };
    let mounts_plan = plan_mounts(ctx, r, &workdir, info)?;
    let input = RunInput { mounts: mounts_plan.iter().map(|m| m.key.clone()).collect(), ..input };
    let key = cachekey::run_key(&s.key, &input);
    if s.reuse_cached(ctx, &key, info, None, 0) {
        return Ok(true);
    }

    let lower = lower_dirs(ctx.store, &s.layers)?;
    let scratch = Scratch::new(&ctx.tmp, "run-")?;
    // Secrets given as env variables join the process env only here, after the key: their
    // values never enter a key, a record or a message.
    let extra = materialize(&mounts_plan, ctx, &scratch, info)?;
    let mut mounts = extra.mounts;
    // The ssh relays serve until the RUN is over (the end of this function).
    let _relays = extra.relays;
    let mut env = env;
    for (k, v) in extra.env {
        // As BuildKit: SSH_AUTH_SOCK points at the ssh mount unless the env sets it.
        if k == "SSH_AUTH_SOCK" && env.iter().any(|(e, _)| e == "SSH_AUTH_SOCK") {
            continue;
        }
        env.retain(|(e, _)| *e != k);
        env.push((k, v));
    }
    if !heredoc_files.is_empty() {
        let dir = scratch.path().join("heredocs");
        std::fs::create_dir(&dir).map_err(|e| BuildError::io(&dir, e))?;
        for (name, content) in &heredoc_files {
            let host = dir.join(name);
            std::fs::write(&host, content).map_err(|e| BuildError::io(&host, e))?;
            std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(|e| BuildError::io(&host, e))?;
        }
        mounts.push(BindMount { src: dir, dst: PathBuf::from(HEREDOC_DIR), readonly: true }.into());
    }
    let mode = ctx.root_mode();
    let rootfs = match mode {
        RootMode::Overlay => Rootfs::Overlay { lower, upper: scratch.upper(), work: scratch.work() },
        RootMode::Copy => Rootfs::Dir(prepare_copies(&scratch, &lower)?.1),
    };
    let spec = Spec {
        rootfs,
        argv: argv.clone(),
        env,
        cwd: PathBuf::from(&workdir),
        user,
        hostname: "rbuild".to_string(),
        network: match network {
            Network::Host => sandbox::Network::Host,
            Network::None => sandbox::Network::None,
        },
        mounts,
        stdio: Stdio::Merged,
        status_file: None,
        privileged: false,
        // Docker gives RUN the user's HOME from /etc/passwd when ENV does not set one.
        set_home: true,
    };
    let command = argv.join(" ");
    let mut sb = match sandbox::spawn(&spec, &ctx.opts.init_exe) {
        Ok(sb) => sb,
        Err(sandbox::SandboxError::Exec { argv0, reason, code }) => {
            return Err(BuildError::RunFailed {
                location: info.location.clone(),
                instruction: info.instruction.clone(),
                command,
                code,
                tail: format!("\n  > exec {argv0}: {reason}"),
            })
        }
        Err(e) => return Err(info.err(e.to_string())),
    };
    let pid = sb.container_pid();
    ctx.cancel.register(pid);
    let mut tail: VecDeque<String> = VecDeque::new();
    if let Some(out) = sb.take_stdout() {
        let mut rd = BufReader::new(out);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match rd.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.clone());
                    ctx.progress.send(BuildEvent::StepLog { id: info.id, stream: Stream::Stdout, line });
                }
            }
        }
    }
    let code = sb.wait().map_err(|e| info.err(e.to_string()));
    ctx.cancel.unregister(pid);
    let code = code?;
    if ctx.cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    if code != 0 {
        let tail: String = tail.iter().map(|l| format!("\n  > {l}")).collect();
        return Err(BuildError::RunFailed {
            location: info.location.clone(),
            instruction: info.instruction.clone(),
            command,
            code,
            tail,
        });
    }
    let policy = match ctx.opts.source_date_epoch {
        Some(t) => MtimePolicy::Clamp(t.max(0) as u64),
        None => MtimePolicy::Keep,
    };
    let (layer, tar_size) = step_layer(ctx.store, mode, &scratch, policy, &[])?;
    let created_by = match &r.command {
        CommandLine::Shell(cmd) => format!("RUN {} {}", shell.join(" "), cmd),
        CommandLine::Exec(v) => format!("RUN {}", serde_json::to_string(v).unwrap_or_default()),
    };
    s.commit_layer(ctx, &key, layer, tar_size, created_by)?;
    Ok(false)
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` and nothing else.
fn is_only_heredoc(cmd: &str) -> bool {
    let t = cmd.trim();
    let Some(rest) = t.strip_prefix("<<") else { return false };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    !rest.is_empty() && !rest.contains(char::is_whitespace)
}

/// The hex part of `sha256:<hex>` (the store's cache index takes hex names).
pub fn key_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_only_commands() {
        assert!(is_only_heredoc("<<EOF"));
        assert!(is_only_heredoc(" <<-'EOF' "));
        assert!(!is_only_heredoc("python3 <<EOF"));
        assert!(!is_only_heredoc("<<EOF cat"));
    }
}
