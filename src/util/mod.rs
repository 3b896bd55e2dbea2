//! Small helpers shared by the managers: atomic files, paths resolved inside a root, time
//! formatting.

pub mod fs;
pub mod inroot;
pub mod io;
pub mod progress;
pub mod stdcopy;
pub mod time;
