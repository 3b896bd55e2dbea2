//! berthd's own binary, which it runs again for its helper processes (supervisors, port
//! proxies, archive helpers).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What helpers exec: the binary this process runs, even after a package upgrade replaced or
/// removed its file (its path would then name another version, or nothing: `current_exe`
/// says `… (deleted)`), so that a helper always speaks its daemon's protocol.
pub const SELF_EXE: &str = "/proc/self/exe";

/// [`SELF_EXE`] as a path.
pub fn self_exe() -> PathBuf {
    PathBuf::from(SELF_EXE)
}

/// The name helpers show in `ps`: the path berthd was started from.
pub fn name() -> OsString {
    match std::env::current_exe() {
        Ok(p) => {
            let s = p.into_os_string().into_string().unwrap_or_default();
            OsString::from(s.strip_suffix(" (deleted)").unwrap_or(&s))
        }
        Err(_) => OsString::from("berthd"),
    }
}

/// A command for `exe`; for [`SELF_EXE`] with berthd's own name as `argv[0]`.
pub fn command(exe: &Path) -> Command {
    let mut c = Command::new(exe);
    if exe == Path::new(SELF_EXE) {
        c.arg0(name());
    }
    c
}

#[cfg(test)]
mod tests {
    #[test]
    fn helpers_run_this_binary_under_its_name() {
        let c = super::command(&super::self_exe());
        assert_eq!(c.get_program(), super::SELF_EXE);
        assert!(!super::name().to_string_lossy().ends_with("(deleted)"));
    }
}
