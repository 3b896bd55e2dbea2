//! TEMPORARY STUB (replaced by the logger branch).
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
pub mod jsonfile {
    use super::*;
    pub struct Writer { f: std::fs::File }
    impl Writer {
        pub fn open(path: &std::path::Path, _cfg: &LogConfig) -> std::io::Result<Writer> {
            Ok(Writer { f: std::fs::OpenOptions::new().create(true).append(true).open(path)? })
        }
        pub fn write(&mut self, stream: Stream, data: &[u8], now: std::time::SystemTime) -> std::io::Result<()> {
            use std::io::Write;
            let line = serde_json::json!({"log": String::from_utf8_lossy(data), "stream": stream.as_str(), "time": crate::util::time::rfc3339_nano(now)});
            writeln!(self.f, "{line}")
        }
        pub fn flush(&mut self, _now: std::time::SystemTime) -> std::io::Result<()> { Ok(()) }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream { Stdout, Stderr }
impl Stream { pub fn as_str(&self) -> &'static str { match self { Stream::Stdout => "stdout", Stream::Stderr => "stderr" } } }
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Driver { JsonFile, Local, None }
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig { pub driver: Driver, pub max_size: Option<u64>, pub max_file: u32, pub compress: bool }
#[derive(Debug)]
pub struct LogError(pub String);
impl std::fmt::Display for LogError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) } }
impl LogConfig {
    pub fn from_docker(driver: &str, _opts: &HashMap<String, String>) -> Result<LogConfig, LogError> {
        Ok(LogConfig { driver: if driver == "none" { Driver::None } else { Driver::JsonFile }, max_size: None, max_file: 1, compress: false })
    }
    pub fn readable(&self) -> bool { self.driver != Driver::None }
}
