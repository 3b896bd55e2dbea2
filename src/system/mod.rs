//! Facts about the host and the daemon's identity, for `/version` and `/info`.

use std::path::Path;

use crate::util::fs::atomic_write;

/// What berth reads from the host once at start.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub hostname: String,
    pub kernel_version: String,
    pub operating_system: String,
    pub os_version: String,
    pub architecture: String,
    pub ncpu: i64,
    pub mem_total: i64,
    pub ipv4_forwarding: bool,
    pub seccomp: bool,
}

impl HostInfo {
    pub fn probe() -> HostInfo {
        let uts = nix::sys::utsname::uname().ok();
        let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uts.as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let os_release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        HostInfo {
            hostname: field(|u| u.nodename()),
            kernel_version: field(|u| u.release()),
            operating_system: os_release_value(&os_release, "PRETTY_NAME")
                .unwrap_or_else(|| "Linux".to_string()),
            os_version: os_release_value(&os_release, "VERSION_ID").unwrap_or_default(),
            architecture: field(|u| u.machine()),
            ncpu: std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
            mem_total: mem_total(),
            ipv4_forwarding: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .map(|s| s.trim() == "1")
                .unwrap_or(false),
            seccomp: std::fs::read_to_string("/proc/self/status")
                .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
                .unwrap_or(false),
        }
    }
}

/// A value of an os-release file, unquoted.
fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// Total memory in bytes from `/proc/meminfo`.
fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let kb = l
                    .strip_prefix("MemTotal:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim();
                kb.parse::<i64>().ok()
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The engine ID in `<data-root>/engine-id`, if a start saved one (an empty file, which a
/// crash of the host right after a first start may leave, counts as none).
pub fn load_engine_id(data_root: &Path) -> Result<Option<String>, SystemError> {
    let path = data_root.join("engine-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SystemError::io(
            format!("load engine id {}", path.display()),
            e,
        )),
    }
}

/// A new engine ID, for a first start: a random UUID, as dockerd makes.
pub fn new_engine_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Save a first start's engine ID (temp file, fsync, rename, fsync of the directory).
pub fn save_engine_id(data_root: &Path, id: &str) -> Result<(), SystemError> {
    let path = data_root.join("engine-id");
    atomic_write(&path, id.as_bytes(), 0o600)
        .map_err(|e| SystemError::io(format!("save engine id {}", path.display()), e))
}

/// Mask the credentials of a proxy URL as dockerd does (`http://xxxxx:xxxxx@host`).
pub fn mask_credentials(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            if u.set_username("xxxxx").is_err() || u.set_password(Some("xxxxx")).is_err() {
                return raw.to_string();
            }
            let s = u.to_string();
            // Url adds a root path that Go's url.URL does not print.
            if u.path() == "/" && !raw.ends_with('/') {
                s.trim_end_matches('/').to_string()
            } else {
                s
            }
        }
        _ => raw.to_string(),
    }
}

/// A proxy setting from the environment, upper case first, as Go's `httpproxy` reads it.
pub fn proxy_env(name: &str) -> String {
    std::env::var(name.to_ascii_uppercase())
        .or_else(|_| std::env::var(name.to_ascii_lowercase()))
        .unwrap_or_default()
}

crate::module_error! {
    /// A host-facts or identity failure.
    pub struct SystemError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_id_is_saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_engine_id(dir.path()).unwrap(), None);
        let id = new_engine_id();
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        assert_ne!(id, new_engine_id());
        save_engine_id(dir.path(), &id).unwrap();
        assert_eq!(load_engine_id(dir.path()).unwrap(), Some(id));
        // What a crash right after a first start may leave: no ID, so a new one is made.
        std::fs::write(dir.path().join("engine-id"), "").unwrap();
        assert_eq!(load_engine_id(dir.path()).unwrap(), None);
    }

    #[test]
    fn reads_host_facts() {
        let h = HostInfo::probe();
        assert!(h.ncpu >= 1);
        assert!(h.mem_total > 0);
        assert!(!h.kernel_version.is_empty());
        assert_eq!(
            os_release_value(
                "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n",
                "PRETTY_NAME"
            ),
            Some("Debian GNU/Linux 12".to_string())
        );
    }

    #[test]
    fn masks_proxy_credentials() {
        assert_eq!(
            mask_credentials("http://user:secret@proxy:3128"),
            "http://xxxxx:xxxxx@proxy:3128"
        );
        assert_eq!(mask_credentials("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(mask_credentials("not a url"), "not a url");
    }
}
