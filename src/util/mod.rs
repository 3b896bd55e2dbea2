//! Small helpers shared by the managers: environment lists, atomic files, paths resolved inside a root, byte
//! channels, progress messages, Docker's stream framing, time formatting, sha256 digests,
//! random identifiers, Go's `strconv` parsers, tree removal, the heap's upkeep and GETs of URLs users name.

pub mod digest;
pub mod env;
pub mod exe;
pub mod fs;
pub mod http;
pub mod ids;
pub mod inroot;
pub mod io;
pub mod mem;
pub mod progress;
pub mod rand;
pub mod stdcopy;
pub mod strconv;
pub mod targuard;
pub mod time;
pub mod tree;
