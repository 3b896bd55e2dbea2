//! Small helpers shared by the managers: atomic files, time formatting.

pub mod fs;
pub mod io;
pub mod progress;
pub mod stdcopy;
pub mod time;
