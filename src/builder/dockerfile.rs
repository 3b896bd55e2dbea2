//! A parsed Dockerfile (over `parse-dockerfile`): the `ARG`s before the first `FROM`, and the
//! stages with their instructions, words not yet expanded (the builder expands them with
//! `shell::ShellLex` as it dispatches, since values depend on earlier steps).

use super::BuilderError;

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The escape token (`\`, or `` ` `` from the `# escape=` directive).
    pub escape: char,
    /// `ARG`s before the first `FROM` (usable in `FROM` lines only).
    pub meta_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and what follows it up to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The base image (or `scratch`, or an earlier stage's name), not expanded.
    pub base: String,
    /// `AS name`, lower-cased as dockerd does.
    pub name: Option<String>,
    /// `--platform=…`, not expanded.
    pub platform: Option<String>,
    /// The `FROM` line as dockerd prints it in `Step n/m : …`.
    pub original: String,
    pub instructions: Vec<Instruction>,
}

/// One instruction after `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub kind: Kind,
    /// The instruction as dockerd prints it in `Step n/m : …` (moby's `node.Original`: the
    /// source text with line continuations joined).
    pub original: String,
    /// 1-based line of the instruction's start.
    pub line: usize,
}

/// The shell form (run through `SHELL`) or the JSON (exec) form.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopySpec {
    /// The sources, not expanded (JSON form: as written; shell form: the words).
    pub srcs: Vec<String>,
    /// The destination, not expanded.
    pub dest: String,
    /// `--from=<stage name|stage index|image>`.
    pub from: Option<String>,
    /// `--chown=user[:group]`, not expanded.
    pub chown: Option<String>,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD …`, durations in nanoseconds (0: unset).
#[derive(Debug, Clone, PartialEq)]
pub enum Healthcheck {
    None,
    Cmd {
        /// `["CMD", args…]` or `["CMD-SHELL", text]`.
        test: Vec<String>,
        interval: i64,
        timeout: i64,
        start_period: i64,
        start_interval: i64,
        retries: i64,
    },
}

/// What an instruction does. Words are as written (quotes kept where expansion needs them).
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Run(Command),
    Cmd(Command),
    Entrypoint(Command),
    /// `ENV k=v …` or the legacy `ENV k v`.
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Label(Vec<(String, String)>),
    /// The port words (`80/tcp`, `${P}`).
    Expose(Vec<String>),
    /// The paths (JSON or words).
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    /// The trigger instruction's text (`RUN echo hi`), stored in the image's `OnBuild`.
    Onbuild(String),
    Maintainer(String),
    Copy(CopySpec),
    Add(CopySpec),
}

/// Parse a Dockerfile's text. Errors carry dockerd's texts (unknown instruction, BuildKit-only
/// flags such as `RUN --mount`, `COPY --chmod`/`--link`: "the --mount option requires
/// BuildKit…", a Dockerfile without FROM: "no build stage in current context", …).
pub fn parse(text: &str) -> Result<Dockerfile, BuilderError> {
    let _ = text;
    Err(BuilderError::internal("dockerfile parser not implemented"))
}

/// Parse one instruction line (an `ONBUILD` trigger, with the Dockerfile's escape token).
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, BuilderError> {
    let _ = (text, escape);
    Err(BuilderError::internal("dockerfile parser not implemented"))
}
