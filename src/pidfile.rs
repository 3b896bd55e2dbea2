//! The daemon's PID file: refuses to start while another live daemon holds it.
//!
//! "Holds" is an exclusive `flock` on the file, kept for the daemon's lifetime (close-on-exec,
//! so no supervisor or helper inherits it). The kernel drops it when the daemon dies, even by
//! `kill -9`, so a PID file left behind is stale exactly when nobody holds its lock. dockerd
//! asks whether the PID written in the file is alive instead, which a busy host can answer
//! wrongly: after a `kill -9` the PID may already belong to another process (pid_max is 32768
//! here), and the restart is refused. The crash loop hit that.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A written and locked PID file, removed on drop.
pub struct PidFile {
    path: PathBuf,
    /// The lock (and the file) for the daemon's lifetime.
    _lock: Flock<File>,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let fail = |msg: String| {
            PidFileError::conflict(format!(
                "failed to start daemon, ensure berthd is not running or delete {}: {msg}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("failed to create pidfile directory: {e}")))?;
        }
        // In place, not replaced: the lock belongs to this file. A daemon that was exiting
        // may remove the path between our open and our lock: then the file we locked is no
        // longer the one at the path, and we try again.
        let mut attempts = 0;
        let mut lock = loop {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(|e| fail(e.to_string()))?;
            let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let holder = text.trim();
                    return Err(fail(if holder.is_empty() {
                        "another process holds it".to_string()
                    } else {
                        format!("process with PID {holder} is still running")
                    }));
                }
                Err((_, e)) => return Err(fail(format!("lock: {e}"))),
            };
            let same = match (lock.metadata(), std::fs::metadata(path)) {
                (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
                _ => false,
            };
            attempts += 1;
            if same {
                break lock;
            }
            if attempts == 3 {
                return Err(fail("the file keeps being replaced".to_string()));
            }
        };
        // Nobody holds it: whatever PID it names is gone (or is someone else's by now). Not
        // fsynced (dockerd's neither): the file means something only while the lock is held,
        // and no lock outlives a reboot.
        let pid = std::process::id().to_string();
        (|| -> std::io::Result<()> {
            lock.set_len(0)?;
            lock.rewind()?;
            lock.write_all(pid.as_bytes())
        })()
        .map_err(|e| fail(format!("write: {e}")))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked; the lock goes with the descriptor right after.
        let _ = std::fs::remove_file(&self.path);
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
    fn refuses_a_held_file_and_takes_over_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run/berthd.pid");
        {
            let _f = PidFile::create(&p).unwrap();
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                std::process::id().to_string()
            );
            // Held: a second daemon is refused, whatever the file says.
            let e = PidFile::create(&p).err().unwrap();
            assert!(
                e.to_string().contains(&format!(
                    "process with PID {} is still running",
                    std::process::id()
                )),
                "{e}"
            );
        }
        assert!(!p.exists(), "removed on drop");
        // Left behind by a daemon that was killed: its PID now names another live process
        // (PID 1 here), but nobody holds the lock, so the file is stale.
        std::fs::write(&p, "1").unwrap();
        let f = PidFile::create(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            std::process::id().to_string()
        );
        drop(f);
        // A longer stale content is replaced whole.
        std::fs::write(&p, "123456789\n").unwrap();
        let _f = PidFile::create(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            std::process::id().to_string()
        );
    }
}
