//! `--userns-remap` (daemon.json `userns-remap`): `default` (the user and group `dockremap`,
//! created with subordinate id ranges if missing, as dockerd does) or `user[:group]` (names or
//! ids), resolved to the host id range container root maps to.

use std::path::Path;

use super::ConfigError;
use crate::runtime::IdMap;

/// The user dockerd creates for `--userns-remap=default`.
pub const DEFAULT_REMAP_USER: &str = "dockremap";
/// The size of the range berth adds for that user when it has none.
const DEFAULT_RANGE: u32 = 65536;

/// A resolved remapping: the names it came from and the ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernsRemap {
    pub user: String,
    pub group: String,
    pub map: IdMap,
}

impl UsernsRemap {
    /// The directory name dockerd uses for this remapping under its data root.
    pub fn dir_name(&self) -> String {
        let (uid, gid) = self.map.root();
        format!("{uid}.{gid}")
    }
}

/// Resolve the flag's value against the host's users and `/etc/subuid` / `/etc/subgid`.
pub fn resolve(value: &str) -> Result<UsernsRemap, ConfigError> {
    resolve_in(value, Path::new("/etc"))
}

fn resolve_in(value: &str, etc: &Path) -> Result<UsernsRemap, ConfigError> {
    let (user, group) = match value.split_once(':') {
        Some((u, g)) => (u.to_string(), g.to_string()),
        None => (value.to_string(), String::new()),
    };
    if user.is_empty() {
        return Err(ConfigError::invalid(format!(
            "invalid userns-remap {value:?}: expected \"default\" or user[:group]"
        )));
    }
    let (user, group) = if user == "default" {
        if etc == Path::new("/etc") {
            ensure_default_user()?;
        }
        (
            DEFAULT_REMAP_USER.to_string(),
            DEFAULT_REMAP_USER.to_string(),
        )
    } else {
        let user = name_of(&user, &etc.join("passwd"))?;
        let group = if group.is_empty() {
            user.clone()
        } else {
            name_of(&group, &etc.join("group"))?
        };
        (user, group)
    };
    if value == "default" && etc == Path::new("/etc") {
        ensure_ranges(&user)?;
    }
    let uid_of = id_of(&user, &etc.join("passwd"));
    let gid_of = id_of(&group, &etc.join("group"));
    let uids = all_ranges(&etc.join("subuid"), "user", &user, uid_of)?;
    let gids = all_ranges(&etc.join("subgid"), "group", &group, gid_of)?;
    let map = IdMap::from_ranges(&uids, &gids).ok_or_else(|| {
        ConfigError::invalid(format!(
            "Can't create ID mappings: the subordinate ranges of {user:?} and {group:?} overlap, \
             end past the last id, or are more than {} per file",
            crate::util::ids::MAX_RANGES
        ))
    })?;
    Ok(UsernsRemap { user, group, map })
}

/// `name:x:id:…` lines of `/etc/passwd` or `/etc/group`.
fn entries(file: &Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.to_string();
            let id = f.nth(1)?.parse().ok()?;
            Some((name, id))
        })
        .collect()
}

/// A name, or the name of a numeric id.
fn name_of(v: &str, file: &Path) -> Result<String, ConfigError> {
    let list = entries(file);
    if list.iter().any(|(n, _)| n == v) {
        return Ok(v.to_string());
    }
    if let Ok(id) = v.parse::<u32>() {
        if let Some((n, _)) = list.iter().find(|(_, i)| *i == id) {
            return Ok(n.clone());
        }
    }
    Err(ConfigError::invalid(format!(
        "Can't create ID mappings: no such user or group {v:?} in {}",
        file.display()
    )))
}

fn id_of(name: &str, file: &Path) -> Option<u32> {
    entries(file)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, id)| id)
}

/// `name:start:count` lines (the name may also be the numeric id).
fn ranges(file: &Path) -> Vec<(String, u32, u32)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let name = f.next()?.to_string();
            let start = f.next()?.parse().ok()?;
            let count = f.next()?.parse().ok()?;
            Some((name, start, count))
        })
        .collect()
}

/// Every subordinate range (`(start, count)`) of `name` (a `kind`: user or group) in `file`,
/// listed by name or by id, as dockerd maps them all.
fn all_ranges(
    file: &Path,
    kind: &str,
    name: &str,
    id: Option<u32>,
) -> Result<Vec<(u32, u32)>, ConfigError> {
    let found: Vec<(u32, u32)> = ranges(file)
        .into_iter()
        .filter(|(n, _, c)| *c > 0 && (n == name || id.is_some_and(|i| n == &i.to_string())))
        .map(|(_, s, c)| (s, c))
        .collect();
    if found.is_empty() {
        let sub = if kind == "user" { "subuid" } else { "subgid" };
        return Err(ConfigError::invalid(format!(
            "Can't create ID mappings: no {sub} ranges found for {kind} {name:?} in {}",
            file.display()
        )));
    }
    Ok(found)
}

/// Create the `dockremap` user and group (a system user, no login), as dockerd does.
fn ensure_default_user() -> Result<(), ConfigError> {
    if id_of(DEFAULT_REMAP_USER, Path::new("/etc/passwd")).is_some() {
        return Ok(());
    }
    let out = std::process::Command::new("useradd")
        .args(["--system", "--user-group", "-s", "/bin/false", DEFAULT_REMAP_USER])
        .output()
        .map_err(|e| {
            ConfigError::invalid(format!(
                "Can't create ID mappings: error trying to create the {DEFAULT_REMAP_USER} user: {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(ConfigError::invalid(format!(
            "Can't create ID mappings: error trying to create the {DEFAULT_REMAP_USER} user: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Give `user` a range in `/etc/subuid` and `/etc/subgid` when it has none: 65536 ids after
/// the highest range in the file (at least from 100000), as dockerd's `addSubordinateRanges`.
fn ensure_ranges(user: &str) -> Result<(), ConfigError> {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let file = Path::new(file);
        let list = ranges(file);
        if list.iter().any(|(n, _, c)| n == user && *c > 0) {
            continue;
        }
        let start = list
            .iter()
            .map(|(_, s, c)| s.saturating_add(*c))
            .max()
            .unwrap_or(0)
            .max(100_000);
        let mut text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{user}:{start}:{DEFAULT_RANGE}\n"));
        crate::util::fs::atomic_write(file, text.as_bytes(), 0o644).map_err(|e| {
            ConfigError::invalid(format!(
                "Can't create ID mappings: adding a range for {user} to {}: {e}",
                file.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etc() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("group"),
            "root:x:0:\nalice:x:1000:\nstaff:x:50:\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("subuid"),
            "bob:100000:65536\nalice:165536:65536\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("subgid"),
            "50:300000:1000\nalice:165536:65536\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn resolves_names_ids_and_ranges() {
        let d = etc();
        let r = resolve_in("alice", d.path()).unwrap();
        assert_eq!((r.user.as_str(), r.group.as_str()), ("alice", "alice"));
        assert_eq!(r.map, IdMap::single(165536, 65536, 165536, 65536));
        assert_eq!(r.dir_name(), "165536.165536");
        // Numeric ids, and a group whose range is listed by id.
        let r = resolve_in("1000:50", d.path()).unwrap();
        assert_eq!((r.user.as_str(), r.group.as_str()), ("alice", "staff"));
        assert_eq!(r.map.gids, IdMap::single(0, 0, 300000, 1000).gids);
    }

    #[test]
    fn maps_every_range_of_the_user() {
        let d = etc();
        // A second range for alice, listed by id and below the first: container root moves
        // to the lowest range, as with dockerd.
        std::fs::write(
            d.path().join("subuid"),
            "alice:165536:65536\nbob:100000:65536\n1000:300000:1000\nalice:400000:0\n",
        )
        .unwrap();
        let r = resolve_in("alice", d.path()).unwrap();
        let (uids, _) = r.map.sizes();
        assert_eq!(uids, 66536);
        assert_eq!(r.map.host_uid(0), Some(165536));
        assert_eq!(r.map.host_uid(65536), Some(300000));
        assert_eq!(r.dir_name(), "165536.165536");
        std::fs::write(
            d.path().join("subuid"),
            "alice:165536:65536\nalice:165537:10\n",
        )
        .unwrap();
        let e = resolve_in("alice", d.path()).unwrap_err().to_string();
        assert!(e.contains("overlap"), "{e}");
    }

    #[test]
    fn refuses_unknown_users_and_missing_ranges() {
        let d = etc();
        let e = resolve_in("carol", d.path()).unwrap_err().to_string();
        assert!(e.contains("no such user"), "{e}");
        let e = resolve_in("root", d.path()).unwrap_err().to_string();
        assert!(
            e.contains("no subuid ranges found for user \"root\""),
            "{e}"
        );
        let e = resolve_in("alice:root", d.path()).unwrap_err().to_string();
        assert!(
            e.contains("no subgid ranges found for group \"root\""),
            "{e}"
        );
        assert!(resolve_in(":x", d.path()).is_err());
    }
}
