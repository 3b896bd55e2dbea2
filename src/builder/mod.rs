//! The classic Dockerfile builder (moby's `builder/dockerfile`): each step is a container and
//! a commit through the container manager and the image service. No HTTP types.
//!
//! - `dockerfile.rs`: the parsed Dockerfile (over `parse-dockerfile`), stages and instructions;
//! - `shell.rs`: Docker's variable expansion (moby/buildkit `shell/lex.go`);
//! - `context.rs`, `dockerignore.rs`: the build context (tar, compressed or not; remote) and
//!   moby's `patternmatcher`;
//! - `cache.rs`: the build-context cache (`BuildCache` of `/system/df`, `/build/prune`);
//! - `copy.rs`: COPY and ADD into a step's root file system, and their cache checksums;
//! - `build.rs`: the build: stages, steps, the cache, the output stream.

pub mod backend;
pub mod build;
pub mod cache;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod dockerignore;
pub mod shell;

crate::module_error! {
    /// A build failure, with dockerd's wording where clients show it.
    pub struct BuilderError;
}
