//! Docker's `--user` and `--group-add`, resolved against the container's own `/etc/passwd` and
//! `/etc/group`, the way runc's `user.GetExecUser` and `GetAdditionalGroups` do.
//!
//! Both files are read through [`crate::util::inroot::open_file`] (`openat2` with
//! `RESOLVE_IN_ROOT`): an image whose `/etc/passwd` is a symlink to `/../../etc/shadow` reads
//! `<rootfs>/etc/shadow`, never the host's. A missing file is the same as an empty one, so numeric
//! ids work in images without them.

use std::io::{self, Read};
use std::path::Path;

use super::spec::SpecError;
use crate::util::inroot;

/// The largest `/etc/passwd` or `/etc/group` berth reads.
const MAX_FILE: u64 = 32 << 20;

/// runc's bounds for ids, kept for compatibility with 32-bit systems.
const MAX_ID: i64 = (1 << 31) - 1;

/// The process identity a container (or exec) process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: for a user given by name or found by uid without an explicit group,
    /// every group of `/etc/group` that lists them; then the `group_add` entries. Without
    /// duplicates, in that order. The primary gid is not included.
    pub additional_gids: Vec<u32>,
    /// From `/etc/passwd`; `/root` for root and `/` for others without an entry.
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: i64,
    gid: i64,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: i64,
    members: Vec<String>,
}

/// Resolve Docker's `user`, `user:group`, `uid`, `uid:gid` (and mixes) plus `group_add` (names
/// or numbers) against the files of `rootfs`. `""` is root.
pub fn resolve(rootfs: &Path, user: &str, group_add: &[String]) -> Result<ExecUser, SpecError> {
    let passwd = read_etc(rootfs, "etc/passwd")?;
    let group = read_etc(rootfs, "etc/group")?;
    resolve_from(user, group_add, passwd.as_deref(), group.as_deref())
}

/// The resolution itself, over the files' contents (`None`: the file does not exist).
fn resolve_from(
    user: &str,
    group_add: &[String],
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, SpecError> {
    let mut parts = user.split(':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    let uid_arg = parse_numeric(user_arg)?;
    let gid_arg = parse_numeric(group_arg)?;

    let mut uid: i64 = 0;
    let mut gid: i64 = 0;
    let mut home = String::new();
    let mut sgids: Vec<i64> = Vec::new();

    let users: Vec<PasswdEntry> = passwd
        .map(|p| {
            parse_passwd(p)
                .filter(|u| {
                    if user_arg.is_empty() {
                        u.uid == 0
                    } else if let Some(n) = uid_arg {
                        u.uid == n
                    } else {
                        u.name == user_arg
                    }
                })
                .collect()
        })
        .unwrap_or_default();

    let mut matched_name = None;
    if let Some(u) = users.into_iter().next() {
        uid = u.uid;
        gid = u.gid;
        home = u.home;
        matched_name = Some(u.name);
    } else if !user_arg.is_empty() {
        match uid_arg {
            Some(n) => uid = n,
            None => {
                return Err(SpecError::invalid(format!(
                    "unable to find user {user_arg}: no matching entries in passwd file"
                )))
            }
        }
    }

    if !group_arg.is_empty() || matched_name.is_some() {
        let groups: Vec<GroupEntry> = group
            .map(|g| {
                parse_group(g)
                    .filter(|g| {
                        if group_arg.is_empty() {
                            matched_name
                                .as_deref()
                                .is_some_and(|n| g.members.iter().any(|m| m == n))
                        } else if let Some(n) = gid_arg {
                            g.gid == n
                        } else {
                            g.name == group_arg
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !group_arg.is_empty() {
            if let Some(g) = groups.first() {
                gid = g.gid;
            } else {
                match gid_arg {
                    Some(n) => gid = n,
                    None => {
                        return Err(SpecError::invalid(format!(
                            "unable to find group {group_arg}: no matching entries in group file"
                        )))
                    }
                }
            }
        } else {
            sgids = groups.iter().map(|g| g.gid).collect();
        }
    }

    sgids.extend(additional_groups(group_add, group)?);
    let mut additional_gids = Vec::new();
    for g in sgids {
        let g = to_id(g)?;
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    let uid = to_id(uid)?;
    if home.is_empty() {
        home = if uid == 0 { "/root" } else { "/" }.to_string();
    }
    Ok(ExecUser {
        uid,
        gid: to_id(gid)?,
        additional_gids,
        home,
    })
}

/// runc's `GetAdditionalGroups`: names must exist in `/etc/group`, numbers may be used as-is.
fn additional_groups(group_add: &[String], group: Option<&str>) -> Result<Vec<i64>, SpecError> {
    if group_add.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = group_add
        .iter()
        .map(|g| Ok((g.as_str(), parse_numeric(g)?)))
        .collect::<Result<Vec<_>, SpecError>>()?;
    let matches = |g: &GroupEntry, (name, num): (&str, Option<i64>)| match num {
        Some(n) => g.gid == n,
        None => g.name == name,
    };
    let groups: Vec<GroupEntry> = group
        .map(|text| {
            parse_group(text)
                .filter(|g| wanted.iter().any(|w| matches(g, *w)))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for w in &wanted {
        match groups.iter().find(|g| matches(g, *w)) {
            Some(g) => {
                if !(0..=MAX_ID).contains(&g.gid) {
                    return Err(range_error());
                }
                out.push(g.gid);
            }
            None => match w.1 {
                Some(n) => out.push(n),
                None => {
                    return Err(SpecError::invalid(format!(
                        "unable to find group {}: no matching entries in group file",
                        w.0
                    )))
                }
            },
        }
    }
    Ok(out)
}

fn range_error() -> SpecError {
    SpecError::invalid(format!("uids and gids must be in range 0-{MAX_ID}"))
}

fn to_id(n: i64) -> Result<u32, SpecError> {
    if (0..=MAX_ID).contains(&n) {
        u32::try_from(n).map_err(|_| range_error())
    } else {
        Err(range_error())
    }
}

/// Go's `strconv.Atoi` as runc uses it: `None` for a non-number, an error for a number out of
/// range.
fn parse_numeric(s: &str) -> Result<Option<i64>, SpecError> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(n) if (0..=MAX_ID).contains(&n) => Ok(Some(n)),
        _ => Err(range_error()),
    }
}

/// Go's `Atoi` ignoring errors, as runc parses numeric fields of the files.
fn atoi(s: &str) -> i64 {
    s.parse().unwrap_or(0)
}

fn parse_passwd(text: &str) -> impl Iterator<Item = PasswdEntry> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("");
            PasswdEntry {
                name: field(0).to_string(),
                uid: atoi(field(2)),
                gid: atoi(field(3)),
                home: field(5).to_string(),
            }
        })
}

fn parse_group(text: &str) -> impl Iterator<Item = GroupEntry> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("");
            GroupEntry {
                name: field(0).to_string(),
                gid: atoi(field(2)),
                members: field(3)
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            }
        })
}

/// Read `rel` inside `rootfs` without leaving it; `None` when it does not exist.
fn read_etc(rootfs: &Path, rel: &str) -> Result<Option<String>, SpecError> {
    let context = || format!("reading /{rel} of {}", rootfs.display());
    let file = match inroot::open_file(rootfs, rel) {
        Ok(f) => f,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(SpecError::io(context(), e)),
    };
    let mut buf = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| SpecError::io(context(), e))?;
    if buf.len() as u64 > MAX_FILE {
        return Err(SpecError::internal(format!(
            "{}: larger than {MAX_FILE} bytes",
            context()
        )));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn is_missing(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::Kinded;
    use std::fs;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
                          \n\
                          bob:x:1001:1001::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
                         # a comment\n\
                         wheel:x:10:alice,root\n\
                         audio:x:29:alice\n\
                         alice:x:1000:\n\
                         bob:x:1001:\n\
                         staff:x:50:bob\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    #[test]
    fn default_is_root_with_home_from_passwd() {
        let r = rootfs();
        let u = resolve(r.path(), "", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(u.additional_gids, vec![10], "root is a member of wheel");
    }

    #[test]
    fn name_resolves_uid_gid_home_and_supplementary_groups() {
        let r = rootfs();
        let u = resolve(r.path(), "alice", &[]).unwrap();
        assert_eq!(
            u,
            ExecUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29],
                home: "/home/alice".into()
            }
        );
        // A uid found in passwd also gets the user's groups.
        let u = resolve(r.path(), "1001", &[]).unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1001, 1001, vec![50])
        );
    }

    #[test]
    fn explicit_group_replaces_gid_and_drops_implicit_groups() {
        let r = rootfs();
        let u = resolve(r.path(), "alice:staff", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.additional_gids.is_empty());
        let u = resolve(r.path(), "alice:4242", &[]).unwrap();
        assert_eq!(u.gid, 4242);
        let u = resolve(r.path(), "bob:10", &[]).unwrap();
        assert_eq!(u.gid, 10);
    }

    #[test]
    fn group_add_by_name_and_number() {
        let r = rootfs();
        let add = vec!["audio".to_string(), "777".to_string(), "wheel".to_string()];
        let u = resolve(r.path(), "bob", &add).unwrap();
        assert_eq!(u.additional_gids, vec![50, 29, 777, 10]);
        let err = resolve(r.path(), "bob", &["nosuch".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nosuch: no matching entries in group file"
        );
    }

    #[test]
    fn unknown_names_fail_in_runc_words() {
        let r = rootfs();
        let err = resolve(r.path(), "nosuch", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user nosuch: no matching entries in passwd file"
        );
        assert_eq!(err.kind(), crate::errors::ErrorKind::InvalidParameter);
        let err = resolve(r.path(), "alice:nosuch", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group nosuch: no matching entries in group file"
        );
        let err = resolve(r.path(), "99999999999", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "uids and gids must be in range 0-2147483647"
        );
        let err = resolve(r.path(), "-1", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "uids and gids must be in range 0-2147483647"
        );
    }

    #[test]
    fn numeric_ids_work_without_files() {
        let dir = tempfile::tempdir().unwrap();
        let u = resolve(dir.path(), "1234:5678", &["42".to_string()]).unwrap();
        assert_eq!(
            u,
            ExecUser {
                uid: 1234,
                gid: 5678,
                additional_gids: vec![42],
                home: "/".into()
            }
        );
        let u = resolve(dir.path(), "", &[]).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        // A uid without an entry keeps gid 0, as runc does.
        let u = resolve(dir.path(), "1234", &[]).unwrap();
        assert_eq!((u.uid, u.gid), (1234, 0));
        let err = resolve(dir.path(), "alice", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user alice: no matching entries in passwd file"
        );
        let err = resolve(dir.path(), "0:wheel", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group wheel: no matching entries in group file"
        );
    }

    #[test]
    fn symlinked_files_stay_in_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        // The "host" file, outside the root.
        fs::create_dir_all(tmp.path().join("outside")).unwrap();
        fs::write(
            tmp.path().join("outside/passwd"),
            "mallory:x:0:0::/host:/bin/sh\n",
        )
        .unwrap();
        // Both links reach tmp/outside/passwd when followed on the host.
        for link in ["/etc/../../outside/passwd", "../../outside/passwd"] {
            let _ = fs::remove_file(root.join("etc/passwd"));
            std::os::unix::fs::symlink(link, root.join("etc/passwd")).unwrap();
            let err = resolve(&root, "mallory", &[]).unwrap_err();
            assert_eq!(
                err.to_string(),
                "unable to find user mallory: no matching entries in passwd file",
                "{link} must resolve to <root>/outside/passwd, which does not exist"
            );
        }
        fs::create_dir_all(root.join("outside")).unwrap();
        fs::write(
            root.join("outside/passwd"),
            "mallory:x:4000:4000::/inside:/bin/sh\n",
        )
        .unwrap();
        let u = resolve(&root, "mallory", &[]).unwrap();
        assert_eq!((u.uid, u.home.as_str()), (4000, "/inside"));
        // A link to itself is a missing file, as for runc.
        fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(resolve(&root, "42", &[]).unwrap().uid, 42);
    }
}
