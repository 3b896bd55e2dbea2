//! The daemon's PID file: refuses to start while another live daemon holds it.

use std::path::{Path, PathBuf};

use crate::util::fs::atomic_write;

/// A written PID file, removed on drop.
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let fail = |msg: String| {
            PidFileError::conflict(format!(
                "failed to start daemon, ensure berthd is not running or delete {}: {msg}",
                path.display()
            ))
        };
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                if pid > 0 && pid as u32 != std::process::id() && process_alive(pid) {
                    return Err(fail(format!("process with PID {pid} is still running")));
                }
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("failed to create pidfile directory: {e}")))?;
        }
        atomic_write(path, std::process::id().to_string().as_bytes(), 0o644)
            .map_err(|e| fail(e.to_string()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn process_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

crate::module_error! {
    /// The pid file is held by a running daemon or cannot be written.
    pub struct PidFileError;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_live_pid_and_replaces_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/berthd.pid");
        {
            let _f = PidFile::create(&p).unwrap();
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                std::process::id().to_string()
            );
        }
        assert!(!p.exists(), "removed on drop");
        // PID 1 is always alive.
        std::fs::write(&p, "1").unwrap();
        let e = PidFile::create(&p).err().unwrap();
        assert!(
            e.to_string()
                .contains("process with PID 1 is still running"),
            "{e}"
        );
        // A PID that cannot exist.
        std::fs::write(&p, "999999999").unwrap();
        assert!(PidFile::create(&p).is_ok());
    }
}
