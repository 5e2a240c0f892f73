//! Pure rules that turn `rbuild run` flags plus an image config into what the sandbox runs:
//! Docker's Entrypoint/Cmd combination, the environment merge, `-v`, `-w`, stop signals.
//!
//! Everything here is a function of its arguments (the host environment comes in as a
//! closure) so the rules are table-tested without a container.

use std::path::PathBuf;

use super::ContainerError;

/// The `PATH` Docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The argv of a new container, by Docker's rules:
///
/// - `--entrypoint E` replaces the image's Entrypoint with `[E]` and also drops the image's
///   Cmd (only the command-line args follow it); `--entrypoint ""` clears the Entrypoint.
/// - Without `--entrypoint`, the image's Entrypoint stays and the command-line args replace
///   the image's Cmd when there are any.
/// - argv = entrypoint ++ cmd; an empty result is an error ("no command specified").
pub fn resolve_argv(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint_flag: Option<&str>,
    args: &[String],
) -> Result<Vec<String>, ContainerError> {
    let (entrypoint, cmd): (Vec<String>, Vec<String>) = match entrypoint_flag {
        Some("") => (Vec::new(), args.to_vec()),
        Some(e) => (vec![e.to_string()], args.to_vec()),
        None if args.is_empty() => (image_entrypoint.to_vec(), image_cmd.to_vec()),
        None => (image_entrypoint.to_vec(), args.to_vec()),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    Ok(argv)
}

/// Parse the text of an `--env-file`: one `KEY=VALUE` or `KEY` per line, `#` comments and
/// blank lines skipped, leading whitespace dropped, the value kept verbatim (no quotes
/// processing, as Docker). Returns the entries in the `-e` syntax.
pub fn parse_env_file(text: &str, path: &std::path::Path) -> Result<Vec<String>, ContainerError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split_once('=').map_or(line, |(k, _)| k);
        if let Err(msg) = check_env_key(key) {
            return Err(ContainerError::EnvFile { path: path.to_path_buf(), line: i + 1, msg });
        }
        out.push(line.to_string());
    }
    Ok(out)
}

fn check_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("no variable name before '='".into());
    }
    if key.chars().any(char::is_whitespace) {
        return Err(format!("variable name {key:?} contains whitespace"));
    }
    Ok(())
}

/// The container's environment: the image's `Env`, then the user's entries (env files first,
/// then `-e`, as Docker), each replacing an earlier entry with the same key. A bare `KEY`
/// takes the host's value and is dropped when the host has none. `PATH` defaults to
/// [`DEFAULT_PATH`], `HOSTNAME` is the container's hostname and `HOME` defaults to `home`
/// (the user's home directory, see [`home_dir`]).
pub fn merge_env(
    image_env: &[String],
    user_entries: &[String],
    host_env: &dyn Fn(&str) -> Option<String>,
    hostname: &str,
    home: &str,
) -> Result<Vec<(String, String)>, ContainerError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| match env.iter_mut().find(|(ek, _)| ek == k) {
        Some(e) => e.1 = v,
        None => env.push((k.to_string(), v)),
    };
    for e in image_env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        if !k.is_empty() {
            set(k, v.to_string());
        }
    }
    let mut from_user: Vec<(String, String)> = Vec::new();
    for e in user_entries {
        match e.split_once('=') {
            Some((k, v)) => {
                check_env_key(k).map_err(|msg| ContainerError::InvalidEnv(e.clone(), msg))?;
                from_user.push((k.to_string(), v.to_string()));
            }
            None => {
                check_env_key(e).map_err(|msg| ContainerError::InvalidEnv(e.clone(), msg))?;
                if let Some(v) = host_env(e) {
                    from_user.push((e.clone(), v));
                }
            }
        }
    }
    for (k, v) in from_user {
        set(&k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.insert(1.min(env.len()), ("HOSTNAME".into(), hostname.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), home.into()));
    }
    Ok(env)
}

/// The home directory of `user` (name or uid, optionally `:group`) by the image's
/// `/etc/passwd` text, as Docker sets `HOME`: `/root` for root without an entry, `/` for a
/// user without one.
pub fn home_dir(user: Option<&str>, passwd: Option<&str>) -> String {
    let who = user.filter(|u| !u.is_empty()).map_or("root", |u| u.split(':').next().unwrap_or(u));
    let who = if who.is_empty() { "root" } else { who };
    let entry = passwd.and_then(|text| {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let hit = f.len() >= 6 && (f[0] == who || (who.bytes().all(|b| b.is_ascii_digit()) && f[2] == who));
            hit.then(|| f[5].to_string())
        })
    });
    match entry {
        Some(h) if !h.is_empty() => h,
        _ if who == "root" || who == "0" => "/root".into(),
        _ => "/".into(),
    }
}

/// One `-v HOST:CTR[:ro|:rw]` bind mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    /// Absolute host path (canonicalized by the caller before use).
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: PathBuf,
    /// Mounted read-only (`:ro`).
    pub readonly: bool,
}

/// Parse `-v HOST:CTR[:ro|:rw]`. Both paths must be absolute (named volumes are not
/// supported).
pub fn parse_volume(spec: &str) -> Result<Volume, ContainerError> {
    let bad = |msg: &str| ContainerError::InvalidVolume(spec.to_string(), msg.to_string());
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, readonly) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        [_, _, o] => return Err(bad(&format!("unknown option {o:?} (use ro or rw)"))),
        _ => return Err(bad("expected HOST:CONTAINER[:ro]")),
    };
    if !host.starts_with('/') {
        return Err(bad("the host path must be absolute (named volumes are not supported)"));
    }
    if !ctr.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    if ctr == "/" {
        return Err(bad("cannot mount over the container's root"));
    }
    Ok(Volume { host: PathBuf::from(host), container: PathBuf::from(ctr), readonly })
}

/// The working directory: `-w` over the image's `WorkingDir`, default `/`; must be absolute.
pub fn resolve_workdir(flag: Option<&str>, image: Option<&str>) -> Result<String, ContainerError> {
    let w = match (flag, image) {
        (Some(f), _) => f,
        (None, Some(i)) if !i.is_empty() => i,
        _ => "/",
    };
    if !w.starts_with('/') {
        return Err(ContainerError::InvalidWorkdir(w.to_string()));
    }
    Ok(w.to_string())
}

/// Parse a stop signal as an image's `StopSignal` gives it: `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, ContainerError> {
    use std::str::FromStr;
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map_err(|_| ContainerError::InvalidSignal(s.to_string()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| ContainerError::InvalidSignal(s.to_string()))
}

/// The command as `ps` shows it: argv joined by spaces.
pub fn display_command(argv: &[String]) -> String {
    argv.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// (image entrypoint, image cmd, --entrypoint, args) → argv
    type Case<'a> = (&'a [&'a str], &'a [&'a str], Option<&'a str>, &'a [&'a str], &'a [&'a str]);

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let cases: &[Case] = &[
            (&[], &["sh"], None, &[], &["sh"]),
            (&[], &["sh"], None, &["ls", "-l"], &["ls", "-l"]),
            (&["/ep", "a"], &["c"], None, &[], &["/ep", "a", "c"]),
            (&["/ep", "a"], &["c"], None, &["x"], &["/ep", "a", "x"]),
            (&["/ep"], &[], None, &[], &["/ep"]),
            // --entrypoint drops the image's Cmd
            (&["/ep"], &["c"], Some("/bin/echo"), &[], &["/bin/echo"]),
            (&["/ep"], &["c"], Some("/bin/echo"), &["hi"], &["/bin/echo", "hi"]),
            // --entrypoint "" clears the image's Entrypoint
            (&["/ep"], &["c"], Some(""), &["ls"], &["ls"]),
            // the flag value is one word, not split
            (&[], &[], Some("echo hi"), &[], &["echo hi"]),
        ];
        for (ep, cmd, flag, args, want) in cases {
            let got = resolve_argv(&v(ep), &v(cmd), *flag, &v(args)).unwrap();
            assert_eq!(got, v(want), "ep={ep:?} cmd={cmd:?} flag={flag:?} args={args:?}");
        }
    }

    #[test]
    fn no_command_is_an_error() {
        assert!(matches!(resolve_argv(&[], &[], None, &[]), Err(ContainerError::NoCommand)));
        assert!(matches!(resolve_argv(&[], &v(&["sh"]), Some(""), &[]), Err(ContainerError::NoCommand)));
        let msg = ContainerError::NoCommand.to_string();
        assert!(msg.contains("no command specified"), "{msg}");
    }

    #[test]
    fn env_merge_order_and_host_lookup() {
        let host = |k: &str| match k {
            "FROM_HOST" => Some("h".to_string()),
            _ => None,
        };
        let env = merge_env(
            &v(&["PATH=/bin", "A=1", "B=2"]),
            &v(&["B=file", "B=flag", "FROM_HOST", "NOT_ON_HOST", "C=x=y", "EMPTY="]),
            &host,
            "abc123",
            "/root",
        )
        .unwrap();
        let get = |k: &str| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("flag"));
        assert_eq!(get("FROM_HOST"), Some("h"));
        assert_eq!(get("NOT_ON_HOST"), None);
        assert_eq!(get("C"), Some("x=y"));
        assert_eq!(get("EMPTY"), Some(""));
        assert_eq!(get("HOSTNAME"), Some("abc123"));
        assert_eq!(get("HOME"), Some("/root"));
        assert_eq!(env.iter().filter(|(k, _)| k == "B").count(), 1);
    }

    #[test]
    fn env_defaults() {
        let env = merge_env(&[], &[], &|_| None, "h", "/home/u").unwrap();
        assert_eq!(env[0], ("PATH".to_string(), DEFAULT_PATH.to_string()));
        assert!(env.contains(&("HOME".into(), "/home/u".into())));
        let env = merge_env(&v(&["HOME=/img"]), &v(&["HOSTNAME=x"]), &|_| None, "h", "/root").unwrap();
        assert!(env.contains(&("HOSTNAME".into(), "x".into())));
        assert!(env.contains(&("HOME".into(), "/img".into())));
    }

    #[test]
    fn home_from_passwd() {
        let pw = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
        assert_eq!(home_dir(None, Some(pw)), "/root");
        assert_eq!(home_dir(Some("app"), Some(pw)), "/home/app");
        assert_eq!(home_dir(Some("1000:1000"), Some(pw)), "/home/app");
        assert_eq!(home_dir(Some("65534"), Some(pw)), "/nonexistent");
        assert_eq!(home_dir(Some("4242"), Some(pw)), "/");
        assert_eq!(home_dir(Some("0"), None), "/root");
        assert_eq!(home_dir(Some("app"), None), "/");
    }

    #[test]
    fn bad_env_entries() {
        assert!(merge_env(&[], &v(&["=x"]), &|_| None, "h", "/").is_err());
        assert!(merge_env(&[], &v(&["A B=x"]), &|_| None, "h", "/").is_err());
    }

    #[test]
    fn env_file_syntax() {
        let p = std::path::Path::new("f.env");
        let got = parse_env_file("# comment\n\n  A=1\nB\nC= spaced value \n", p).unwrap();
        assert_eq!(got, v(&["A=1", "B", "C= spaced value "]));
        let err = parse_env_file("A=1\n=2\n", p).unwrap_err().to_string();
        assert!(err.contains("f.env") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("/a:/b").unwrap(),
            Volume { host: "/a".into(), container: "/b".into(), readonly: false }
        );
        assert!(parse_volume("/a:/b:ro").unwrap().readonly);
        assert!(!parse_volume("/a:/b:rw").unwrap().readonly);
        for bad in ["a:/b", "/a:b", "/a", "/a:/b:rx", "/a:/", "/a:/b:ro:x"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn workdir() {
        assert_eq!(resolve_workdir(None, None).unwrap(), "/");
        assert_eq!(resolve_workdir(None, Some("")).unwrap(), "/");
        assert_eq!(resolve_workdir(None, Some("/app")).unwrap(), "/app");
        assert_eq!(resolve_workdir(Some("/x"), Some("/app")).unwrap(), "/x");
        assert!(resolve_workdir(Some("rel"), None).is_err());
    }

    #[test]
    fn signals() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGQUIT").unwrap(), Signal::SIGQUIT);
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
