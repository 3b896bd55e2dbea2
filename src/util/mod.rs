//! Small helpers shared by the managers: atomic files, byte channels, progress messages, time
//! formatting, sha256 digests, random identifiers and tree removal.

pub mod digest;
pub mod fs;
pub mod io;
pub mod progress;
pub mod rand;
pub mod time;
pub mod tree;
