//! Resolving a Docker `USER` value (`name`, `uid`, `name:group`, `uid:gid`, ...) against the
//! container's `/etc/passwd` and `/etc/group`, the way runc's `GetExecUser` does:
//!
//! - a user name must exist in passwd; a numeric uid need not (its gid then defaults to 0);
//! - the primary gid comes from the passwd entry unless a group is given after `:`;
//! - a group name must exist in group; a numeric gid need not;
//! - supplementary groups are the groups whose member list names the user.
//!
//! Pure text functions, so they are unit-tested without a rootfs.

/// The ids a process runs as after resolving a `USER` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (without the primary gid unless listed in group).
    pub groups: Vec<u32>,
    /// Home directory from passwd, if the user has an entry.
    pub home: Option<String>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.is_empty() {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.is_empty() {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

/// Resolve `spec` (`user[:group]`) with the text of the rootfs's passwd and group files
/// (empty strings when the files are missing). The error is a one-line message.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() {
        return Err(format!("invalid user {spec:?}: the user part is empty"));
    }
    let (uid, mut gid, name, home) = if let Ok(uid) = user_part.parse::<u32>() {
        match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (
                uid,
                e.gid,
                Some(e.name.to_string()),
                Some(e.home.to_string()),
            ),
            None => (uid, 0, None, None),
        }
    } else {
        match passwd_entries(passwd).find(|e| e.name == user_part) {
            Some(e) => (
                e.uid,
                e.gid,
                Some(e.name.to_string()),
                Some(e.home.to_string()),
            ),
            None => {
                return Err(format!(
                "unable to find user {user_part}: no matching entries in the image's /etc/passwd"
            ))
            }
        }
    };
    if let Some(g) = group_part {
        if g.is_empty() {
            return Err(format!("invalid user {spec:?}: the group part is empty"));
        }
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match group_entries(group).find(|e| e.name == g) {
                Some(e) => e.gid,
                None => {
                    return Err(format!(
                        "unable to find group {g}: no matching entries in the image's /etc/group"
                    ))
                }
            },
        };
    }
    let mut groups = Vec::new();
    if let Some(name) = &name {
        for e in group_entries(group) {
            if e.members.iter().any(|m| m == name) && !groups.contains(&e.gid) {
                groups.push(e.gid);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home: home.filter(|h| !h.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\nbroken line\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:app, other\nnogroup:x:65534:\napp:x:1000:\nstaff:x:50:app\n";

    fn r(s: &str) -> Result<ExecUser, String> {
        resolve(s, PASSWD, GROUP)
    }

    #[test]
    fn names_and_numbers() {
        let u = r("nobody").unwrap();
        assert_eq!((u.uid, u.gid), (65534, 65534));
        let u = r("app").unwrap();
        assert_eq!((u.uid, u.gid, u.groups.clone()), (1000, 1000, vec![10, 50]));
        assert_eq!(u.home.as_deref(), Some("/home/app"));
        let u = r("1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        let u = r("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.groups.len()), (4242, 0, 0));
        let u = r("app:nogroup").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 65534));
        let u = r("0:7").unwrap();
        assert_eq!((u.uid, u.gid), (0, 7));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(r("ghost")
            .unwrap_err()
            .contains("unable to find user ghost"));
        assert!(r("app:ghosts")
            .unwrap_err()
            .contains("unable to find group ghosts"));
        assert!(r(":0").is_err());
        assert!(r("app:").is_err());
        assert!(resolve("root", "", "").is_err());
        assert_eq!(resolve("0", "", "").unwrap().uid, 0);
    }
}
