//! The wire protocol between berthd and a container's supervisor.
//!
//! A client connects to `<state-dir>/sup.sock` and writes one JSON [`Request`] line; the
//! supervisor answers with one JSON [`Reply`] line. `watch` and `attach` connections then stay
//! open and carry frames in Docker's multiplexed layout (one kind byte, three zero bytes, a
//! big-endian `u32` length, the payload): output of kind [`STDOUT`]/[`STDERR`] and [`EVENT`]s
//! from the supervisor, stdin ([`STDIN`], [`STDIN_CLOSE`]) from the client.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::logger::LogConfig;

/// Frame kinds beyond Docker's stream numbers (whose framing, `util::stdcopy`, this reuses).
pub use crate::util::stdcopy::{frame_len, put_frame, HEADER, STDERR, STDIN, STDOUT};
pub const STDIN_CLOSE: u8 = 3;
pub const EVENT: u8 = 16;

/// What berthd hands a new supervisor (`<state-dir>/supervisor.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorConfig {
    pub id: String,
    /// libcontainer's state root (`<exec-root>/runtime`); the bundle is the state dir.
    pub lc_root: PathBuf,
    #[serde(flatten)]
    pub io: ProcessIo,
    /// The container's absolute cgroup path.
    pub cgroup_path: String,
    /// The cgroup's directories (see `runtime::cgroup_dirs`), which the supervisor removes when
    /// the container ends. A config written by an older berthd has none: libcontainer's
    /// delete then finds them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_dirs: Option<Vec<PathBuf>>,
    /// The file that counts the cgroup's OOM kills (see `runtime::oom_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_file: Option<PathBuf>,
    /// Directories whose mounts the container's create does not need to see
    /// ([`crate::runtime::subtree`]); none when few containers run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shed: Vec<PathBuf>,
}

/// The container's stdio and log, as the container manager asks for them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessIo {
    pub log_path: PathBuf,
    pub log: LogConfig,
    /// The attributes every log entry records (`labels`, `env`, `tag` log options).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_attrs: BTreeMap<String, String>,
    pub tty: bool,
    pub open_stdin: bool,
    /// Close the container's stdin when the first attached client closes its stdin.
    pub stdin_once: bool,
    /// `[height, width]` of the terminal before the first byte is written.
    pub console_size: Option<[u16; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start the created container.
    Start,
    /// Keep the connection for [`Event`] frames.
    Watch,
    /// Keep the connection for output frames (and stdin frames from the client).
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Kill {
        signal: i32,
    },
    /// Signal one exec process (a health probe past its timeout). A request of its own, not a
    /// field of `Kill`: a supervisor from before it existed refuses it instead of signalling
    /// the container's init.
    KillExec {
        exec_id: String,
        signal: i32,
    },
    Pause,
    Resume,
    Resize {
        height: u16,
        width: u16,
        /// An exec's terminal instead of the container's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
    },
    State,
    /// Start a process in the container (`docker exec`). With `attach`, the connection then
    /// carries its output frames and an [`Event::ExecExited`] at the end.
    Exec(ExecRequest),
}

/// A `docker exec` process to start (the fields sit beside `"op":"exec"` on the wire).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecRequest {
    pub exec_id: String,
    /// The OCI `Process`.
    pub process: serde_json::Value,
    pub tty: bool,
    pub stdin: bool,
    pub attach: bool,
    pub console_size: Option<[u16; 2]>,
    /// Capabilities added to the process only so that it can load the container's seccomp
    /// profile; dropped before it runs the command.
    #[serde(default)]
    pub add_caps: Vec<String>,
    /// As [`SupervisorConfig::shed`], for starting this process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shed: Vec<PathBuf>,
}

/// The answer to every request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a failed start: the exit code Docker gives (126, 127), 0 when not an exec failure.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SupervisorState>,
    /// The pid of a started exec process.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pid: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

impl Reply {
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            ..Default::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
            ..Default::default()
        }
    }
}

/// What the supervisor knows, written atomically to `<state-dir>/state.json` at start and
/// answered to `state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SupervisorState {
    /// The supervisor's own pid.
    pub supervisor_pid: i32,
    /// The container's init pid, once created.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`, to tell a reused pid apart.
    pub start_time: u64,
    pub started: bool,
    pub paused: bool,
    /// RFC 3339 start time of the process.
    #[serde(default)]
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

/// How the container ended (`<state-dir>/exit.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ExitStatus {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// Events on a `watch` connection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Exited(ExitStatus),
    Oom,
    ExecExited { exec_id: String, exit_code: i32 },
}

/// The first line a new supervisor writes on its status pipe.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Created {
    pub ok: bool,
    #[serde(default)]
    pub error: String,
    /// 126 or 127 for an executable Docker would report so.
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default)]
    pub pid: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","signal":15}"#).unwrap();
        assert!(matches!(r, Request::Kill { signal: 15 }));
        let s = serde_json::to_string(&Event::Exited(ExitStatus {
            exit_code: 3,
            ..Default::default()
        }))
        .unwrap();
        assert!(s.starts_with(r#"{"event":"exited","exit_code":3"#), "{s}");
    }
}
