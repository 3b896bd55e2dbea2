//! Containers: the manager, its records on disk, restart policies and logs.

pub mod names;
