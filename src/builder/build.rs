//! The build itself (moby's `builder/dockerfile/builder.go`, `dispatchers.go`,
//! `internals.go`): stages dispatched in order, each step probed in the cache (an image whose
//! parent is the current image and whose `container_config` matches the step's), else run as a
//! container and committed through the container manager.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{ContainerConfig, HealthConfig, HostConfig, ResourcesUlimits};
use serde_json::Value;
use tokio::sync::mpsc;

use super::cache::{CacheItem, ContextCache, PruneOptions, PruneReport};
use super::context::BuildContext;
use super::copy::{self, CopyInput, DestKind};
use super::dockerfile::{self, ArgDecl, Command, CopySpec, Healthcheck, Instruction, Kind};
use super::shell::ShellLex;
use super::BuilderError;
use crate::container::archive::PutOptions;
use crate::container::create::join_body;
use crate::container::manager::WaitCondition;
use crate::container::ContainerManager;
use crate::errors::{ErrorKind, Kinded};
use crate::events::{Event, EventBus};
use crate::image::short_id;
use crate::image::store::Image;
use crate::image::ImageService;
use crate::registry::client::AuthConfig;
use crate::util::env;
use crate::util::inroot::clean;
use crate::util::io::{BodyReceiver, ChannelReader};
use crate::util::progress::{JsonMessage, Progress};
use crate::util::stdcopy;

/// dockerd's predefined build args: usable without an `ARG`, never warned about, kept out of
/// the image's history (`HTTP_PROXY` and friends).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The PATH a stage gets when its image has none (moby's `oci.DefaultPathEnv`).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The parameters of `POST /build`.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub quiet: bool,
    pub nocache: bool,
    pub remove: bool,
    pub force_remove: bool,
    pub pull: bool,
    /// `buildargs`: a `null` value means "take it from the environment" (unset here).
    pub build_args: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    pub target: String,
    pub network_mode: String,
    pub extra_hosts: Vec<String>,
    pub shm_size: Option<i64>,
    /// `ulimits`: the RUN containers' `HostConfig.Ulimits`.
    pub ulimits: Vec<ResourcesUlimits>,
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub cgroup_parent: String,
    pub platform: String,
    pub squash: bool,
    pub remote: String,
    /// `cachefrom`: images whose history may serve as the cache (moby's `ImageCache`); when
    /// given, local images serve only where they are ancestors of one of these.
    pub cache_from: Vec<String>,
    /// `X-Registry-Config`: credentials by registry, for pulling base images.
    pub auth_configs: HashMap<String, AuthConfig>,
}

/// One message of the build's output stream (the API writes dockerd's JSON for each).
#[derive(Debug, Clone, PartialEq)]
pub enum BuildMessage {
    /// `{"stream": …}`.
    Stream(String),
    /// `{"aux":{"ID": …}}`.
    Aux(String),
    /// A progress message of a base image's pull, as the pull endpoint writes it.
    Progress(JsonMessage),
    /// `{"errorDetail":{…},"error": …}`: the build failed after output began.
    Error { code: Option<i64>, message: String },
}

/// The build service.
pub struct Builder {
    containers: Arc<ContainerManager>,
    images: Arc<ImageService>,
    /// Contexts, downloads and read-only image mounts go under it.
    work_dir: PathBuf,
    /// Files of recent contexts, reused by header.
    cache: Arc<ContextCache>,
    events: Arc<EventBus>,
}

/// An error of a step, with the exit code of a failed RUN.
struct StepError {
    code: Option<i64>,
    message: String,
}

impl From<BuilderError> for StepError {
    fn from(e: BuilderError) -> Self {
        StepError {
            code: None,
            message: e.to_string(),
        }
    }
}

fn err(e: impl std::fmt::Display) -> StepError {
    StepError {
        code: None,
        message: e.to_string(),
    }
}

/// Go's `%q` of a string list (`["a" "b"]`), as dockerd writes CMD and friends in history.
fn go_quoted_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

/// Go's `%v` of a string list (`[a b]`).
fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// What the cache compares of a step's config (moby's `compare`): the command, environment,
/// labels, ports, entrypoint, volumes, user and the stdio flags.
fn cache_key(c: &Value) -> Value {
    let keys = [
        "Cmd",
        "Env",
        "Labels",
        "ExposedPorts",
        "Entrypoint",
        "Volumes",
        "User",
        "Tty",
        "OpenStdin",
        "AttachStdout",
        "AttachStderr",
    ];
    let mut out = serde_json::Map::new();
    for k in keys {
        let v = c.get(k).cloned().unwrap_or(Value::Null);
        let empty = match &v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b,
            _ => false,
        };
        if !empty {
            out.insert(k.to_string(), v);
        }
    }
    Value::Object(out)
}

/// moby's `isValidParent`: `img`'s history and layers begin with `parent`'s (any image
/// continues scratch).
fn valid_cache_parent(img: &Image, parent: Option<&Image>) -> bool {
    let (h, d) = (&img.config.history, &img.config.rootfs.diff_ids);
    if h.is_empty() {
        return false;
    }
    let Some(p) = parent else { return true };
    let (ph, pd) = (&p.config.history, &p.config.rootfs.diff_ids);
    if ph.is_empty() && pd.is_empty() {
        return true;
    }
    ph.len() < h.len() && pd.len() <= d.len() && h.starts_with(ph) && d.starts_with(pd)
}

/// The state of the stage being built (moby's `dispatchState`).
struct Stage {
    image: String,
    config: ContainerConfig,
    author: Option<String>,
    /// ARGs declared in this stage: name -> value (None: declared without a value).
    args: Vec<(String, Option<String>)>,
    cmd_set: bool,
    /// The `cachefrom` images still in play (`None`: no `cachefrom`, the local cache alone).
    /// Carried from stage to stage: a restore narrows them to its image, as moby does.
    cache_from: Option<Vec<Image>>,
}

impl Stage {
    fn env(&self) -> Vec<String> {
        self.config.env.clone().unwrap_or_default()
    }

    /// The build args in effect for a RUN (declared ARGs with a value not overridden by ENV).
    fn run_args(&self) -> Vec<(String, String)> {
        let env = self.env();
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            if let Some(v) = v {
                if env::get(&env, k).is_none() {
                    out.retain(|(x, _)| x != k);
                    out.push((k.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// The `container_config` of a step that runs nothing: the stage's config with
    /// `<shell> #(nop) <comment>` as its command (what the cache compares and history shows).
    fn nop_probe(&self, comment: &str) -> ContainerConfig {
        let mut cmd = self.shell();
        cmd.push("#(nop) ".to_string());
        cmd.push(comment.to_string());
        ContainerConfig {
            cmd: Some(cmd),
            ..self.config.clone()
        }
    }

    /// [`Self::nop_probe`] in the one-argument form dockerd keeps for WORKDIR, COPY and ADD
    /// (moby's `withCmdCommentString`: `<shell> "#(nop) <comment>"`, one space where the
    /// others show two), so that their cache keys match images dockerd built (`--cache-from`).
    fn nop_probe_single(&self, comment: &str) -> ContainerConfig {
        let mut cmd = self.shell();
        cmd.push(format!("#(nop) {comment}"));
        ContainerConfig {
            cmd: Some(cmd),
            ..self.config.clone()
        }
    }

    fn shell(&self) -> Vec<String> {
        self.config
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }
}

/// Output of a running build.
struct Out {
    tx: mpsc::Sender<BuildMessage>,
    quiet: bool,
    /// What a quiet build held back (written if it fails, as dockerd does).
    held: Vec<String>,
}

impl Out {
    async fn say(&mut self, text: impl Into<String>) {
        let text = text.into();
        if self.quiet {
            self.held.push(text);
            return;
        }
        let _ = self.tx.send(BuildMessage::Stream(text)).await;
    }

    async fn aux(&mut self, id: &str) {
        if !self.quiet {
            let _ = self.tx.send(BuildMessage::Aux(id.to_string())).await;
        }
    }

    fn gone(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A read-only view of an image's root file system: its single layer's directory, or an
/// overlay of its layers mounted under the work directory; unmounted when dropped.
struct ImageRoot {
    path: PathBuf,
    mounted: bool,
    /// The directory is the builder's own (an overlay mount point or an empty root).
    owned: bool,
}

impl Drop for ImageRoot {
    fn drop(&mut self) {
        if self.mounted {
            let _ = crate::runtime::host::unmount(&self.path);
        }
        if self.owned {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

impl Builder {
    pub fn new(
        containers: Arc<ContainerManager>,
        images: Arc<ImageService>,
        work_dir: PathBuf,
        cache: Arc<ContextCache>,
        events: Arc<EventBus>,
    ) -> Arc<Builder> {
        // Leftovers of builds a crash interrupted.
        if let Ok(entries) = std::fs::read_dir(&work_dir) {
            for e in entries.flatten() {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
                crate::util::tree::remove_all(&e.path());
            }
        }
        Arc::new(Builder {
            containers,
            images,
            work_dir,
            cache,
            events,
        })
    }

    /// The `BuildCache` part of `/system/df`.
    pub fn cache_usage(&self) -> Vec<CacheItem> {
        self.cache.usage()
    }

    /// `POST /build/prune`, and dockerd's `builder prune` event with what it reclaimed.
    pub async fn prune(&self, opts: PruneOptions) -> Result<PruneReport, BuilderError> {
        let cache = self.cache.clone();
        let report = tokio::task::spawn_blocking(move || cache.prune(&opts))
            .await
            .map_err(|e| BuilderError::internal(format!("prune task: {e}")))??;
        self.events.publish(
            Event::new("builder", "prune", "").attribute("reclaimed", report.reclaimed.to_string()),
        );
        Ok(report)
    }

    /// `POST /build`: read the context and the Dockerfile, check what can be checked before
    /// any output (a failure here is a plain HTTP error), then build in a task of its own whose
    /// messages the returned channel carries. Dropping the receiver cancels the build.
    pub async fn build(
        self: &Arc<Self>,
        body: BodyReceiver,
        opts: BuildOptions,
    ) -> Result<mpsc::Receiver<BuildMessage>, BuilderError> {
        if opts.squash {
            return Err(BuilderError::invalid(
                "squash is only supported with experimental mode",
            ));
        }
        if !opts.platform.is_empty() && !platform_ok(&opts.platform) {
            return Err(BuilderError::invalid(format!(
                "\"{}\": unsupported platform: this daemon builds for linux/{} only",
                opts.platform,
                crate::version::go_arch()
            )));
        }
        std::fs::create_dir_all(&self.work_dir)
            .map_err(|e| BuilderError::io(format!("create {}", self.work_dir.display()), e))?;
        let work = self.work_dir.clone();
        let dockerfile_name = opts.dockerfile.clone();
        let remote = opts.remote.clone();
        let context = if remote.is_empty() {
            let cache = self.cache.clone();
            tokio::task::spawn_blocking(move || {
                BuildContext::from_tar(
                    ChannelReader::new(body),
                    &dockerfile_name,
                    &work,
                    Some(&cache),
                )
            })
            .await
            .map_err(|e| BuilderError::internal(format!("context task: {e}")))??
        } else {
            drop(body);
            BuildContext::from_remote(&remote, &dockerfile_name, &work).await?
        };
        let parsed = dockerfile::parse(&context.dockerfile)?;
        let mut stages = parsed.stages.clone();
        if !opts.target.is_empty() {
            let target = opts.target.to_lowercase();
            match stages
                .iter()
                .position(|s| s.name.as_deref() == Some(target.as_str()))
            {
                Some(i) => stages.truncate(i + 1),
                None => {
                    return Err(BuilderError::invalid(format!(
                        "target stage \"{}\" could not be found",
                        opts.target
                    )))
                }
            }
        }
        if stages.is_empty() {
            return Err(BuilderError::invalid(
                "No image was generated. Is your Dockerfile empty?",
            ));
        }
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            let mut out = Out {
                tx: tx.clone(),
                quiet: opts.quiet,
                held: Vec::new(),
            };
            let result = this.run(&parsed, &stages, &context, &opts, &mut out).await;
            drop(context);
            match result {
                Ok(id) => {
                    if opts.quiet {
                        let _ = tx.send(BuildMessage::Stream(format!("{id}\n"))).await;
                    }
                }
                Err(e) => {
                    for text in std::mem::take(&mut out.held) {
                        let _ = tx.send(BuildMessage::Stream(text)).await;
                    }
                    let _ = tx
                        .send(BuildMessage::Error {
                            code: e.code,
                            message: e.message,
                        })
                        .await;
                }
            }
        });
        Ok(rx)
    }

    /// The build: every stage, then the tags. Returns the image ID.
    async fn run(
        self: &Arc<Self>,
        parsed: &dockerfile::Dockerfile,
        stages: &[dockerfile::Stage],
        context: &BuildContext,
        opts: &BuildOptions,
        out: &mut Out,
    ) -> Result<String, StepError> {
        let lex = ShellLex::new(parsed.escape);
        // `--label`s become one LABEL step at the end of the last stage (counted from the start,
        // as moby adds it before dispatching).
        let label_step = usize::from(!opts.labels.is_empty());
        let total = parsed.meta_args.len()
            + stages.len()
            + stages.iter().map(|s| s.instructions.len()).sum::<usize>()
            + label_step;
        let mut step = 0usize;
        // Build args: what the user passed; `used` tracks which were consumed.
        let mut used: HashSet<String> = HashSet::new();
        let user_args = &opts.build_args;
        // Meta ARGs (before the first FROM): usable in FROM lines.
        let mut meta: Vec<(String, Option<String>)> = Vec::new();
        for a in &parsed.meta_args {
            step += 1;
            out.say(format!("Step {step}/{total} : ARG {}\n", arg_text(a)))
                .await;
            let env: Vec<String> = meta
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
                .collect();
            let default = match &a.default {
                Some(d) => Some(lex.process_word(d, &|k| env::get(&env, k))?),
                None => None,
            };
            let value = match user_args.get(&a.name) {
                Some(Some(v)) => {
                    used.insert(a.name.clone());
                    Some(v.clone())
                }
                _ => default,
            };
            meta.retain(|(k, _)| k != &a.name);
            meta.push((a.name.clone(), value));
        }
        let meta_env: Vec<String> = meta
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();

        // moby's `cache.New`: `cachefrom` names that resolve to no image are skipped.
        let mut cache_from = (!opts.cache_from.is_empty()).then(|| {
            opts.cache_from
                .iter()
                .filter_map(|r| self.images.get_image(r).ok())
                .collect::<Vec<_>>()
        });
        let mut results: Vec<(Option<String>, String)> = Vec::new();
        let mut last = String::new();
        for (index, s) in stages.iter().enumerate() {
            step += 1;
            out.say(format!("Step {step}/{total} : {}\n", s.original))
                .await;
            let base = lex.process_word(&s.base, &|k| env::get(&meta_env, k))?;
            if base.is_empty() {
                return Err(err(format!("base name ({}) should not be blank", s.base)));
            }
            let base_id = match results
                .iter()
                .find(|(name, _)| name.as_deref() == Some(base.to_lowercase().as_str()))
            {
                Some((_, id)) => id.clone(),
                None => self.base_image(&base, opts, out).await?,
            };
            let mut config: ContainerConfig = if base_id.is_empty() {
                ContainerConfig::default()
            } else {
                let img = self.images.get_image(&base_id).map_err(err)?;
                let run = img.config.config.clone().unwrap_or_default();
                serde_json::to_value(&run)
                    .and_then(serde_json::from_value)
                    .map_err(|e| err(format!("base image config: {e}")))?
            };
            // moby's `setDefaultPath`: every stage has a PATH.
            let mut env = config.env.take().unwrap_or_default();
            if env::get(&env, "PATH").is_none() {
                env.push(format!("PATH={DEFAULT_PATH}"));
            }
            config.env = Some(env);
            let triggers = config.on_build.take().unwrap_or_default();
            let mut stage = Stage {
                image: base_id.clone(),
                config,
                author: None,
                args: Vec::new(),
                cmd_set: false,
                cache_from: cache_from.take(),
            };
            // Meta args are visible in the stage only when redeclared; the user's build args
            // too (through ARG).
            if !triggers.is_empty() {
                let n = triggers.len();
                out.say(format!(
                    "# Executing {n} build trigger{}\n",
                    if n == 1 { "" } else { "s" }
                ))
                .await;
                for t in &triggers {
                    let ins = dockerfile::parse_instruction(t, parsed.escape)?;
                    self.dispatch(
                        &ins, &mut stage, &lex, context, opts, out, &results, &meta, &mut used,
                    )
                    .await?;
                }
            }
            out.say(format!(" ---> {}\n", short_id(&stage.image))).await;
            let is_last = index + 1 == stages.len();
            let mut instructions = s.instructions.clone();
            if is_last && !opts.labels.is_empty() {
                // `--label`s: a LABEL step at the end of the last stage, as dockerd does.
                let pairs: Vec<(String, String)> = opts
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let text = pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(" ");
                instructions.push(Instruction {
                    kind: Kind::Label(
                        pairs
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::to_string(v).unwrap_or_default()))
                            .collect(),
                    ),
                    original: format!("LABEL {text}"),
                    line: 0,
                });
            }
            for ins in &instructions {
                if out.gone() {
                    return Err(err("Build cancelled"));
                }
                step += 1;
                out.say(format!("Step {step}/{total} : {}\n", ins.original))
                    .await;
                self.dispatch(
                    ins, &mut stage, &lex, context, opts, out, &results, &meta, &mut used,
                )
                .await?;
                out.say(format!(" ---> {}\n", short_id(&stage.image))).await;
            }
            out.aux(&stage.image).await;
            cache_from = stage.cache_from.take();
            results.push((s.name.clone(), stage.image.clone()));
            last = stage.image.clone();
        }
        let unused: Vec<&String> = user_args
            .keys()
            .filter(|k| !used.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let names: Vec<String> = unused.iter().map(|s| s.to_string()).collect();
            out.say(format!(
                "[Warning] One or more build-args {} were not consumed\n",
                go_list(&names)
            ))
            .await;
        }
        out.say(format!("Successfully built {}\n", short_id(&last)))
            .await;
        for t in &opts.tags {
            let r = self.images.tag(&last, t, None).map_err(err)?;
            out.say(format!("Successfully tagged {}\n", r.familiar()))
                .await;
        }
        Ok(last)
    }

    /// The image a `FROM` names: local, or pulled when missing (and always with `pull`),
    /// its progress in the build's output.
    async fn base_image(
        &self,
        name: &str,
        opts: &BuildOptions,
        out: &mut Out,
    ) -> Result<String, StepError> {
        if name == "scratch" {
            // No image: the steps start from an empty root file system.
            return Ok(String::new());
        }
        match self.images.get_image(name) {
            Ok(img) if !opts.pull => return Ok(img.id),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let reference = crate::image::reference::Reference::parse_any(name).map_err(err)?;
        let auth = opts
            .auth_configs
            .iter()
            .find(|(k, _)| {
                let k = k
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                k.split('/').next() == Some(reference.domain.as_str())
                    || (reference.domain == crate::registry::DEFAULT_INDEX
                        && k.contains("index.docker.io"))
            })
            .map(|(_, a)| a.clone())
            .unwrap_or_default();
        let (ptx, mut prx) = mpsc::channel::<JsonMessage>(64);
        let images = self.images.clone();
        let n = name.to_string();
        let pull =
            tokio::spawn(
                async move { images.pull(&n, None, None, &auth, Progress::new(ptx)).await },
            );
        while let Some(m) = prx.recv().await {
            if !out.quiet {
                let _ = out.tx.send(BuildMessage::Progress(m)).await;
            }
        }
        pull.await
            .map_err(|e| err(format!("pull task: {e}")))?
            .map_err(err)?;
        Ok(self.images.get_image(name).map_err(err)?.id)
    }

    /// One instruction.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        self: &Arc<Self>,
        ins: &Instruction,
        st: &mut Stage,
        lex: &ShellLex,
        context: &BuildContext,
        opts: &BuildOptions,
        out: &mut Out,
        results: &[(Option<String>, String)],
        meta: &[(String, Option<String>)],
        used: &mut HashSet<String>,
    ) -> Result<(), StepError> {
        // Words expand against the config's environment and the stage's build args.
        let mut env = st.env();
        for (k, v) in st.run_args() {
            env.push(format!("{k}={v}"));
        }
        let expand = |w: &str| -> Result<String, StepError> {
            Ok(lex.process_word(w, &|k| env::get(&env, k))?)
        };
        match &ins.kind {
            Kind::Env(pairs) => {
                let mut parts = Vec::new();
                let mut new_env = st.env();
                for (k, v) in pairs {
                    let k = expand(k)?;
                    // moby expands every pair against the environment before the instruction.
                    let v = expand(v)?;
                    new_env = env::replace_or_append(new_env, &[format!("{k}={v}")]);
                    parts.push(format!("{k}={v}"));
                }
                check_config_size(new_env.iter().map(String::len), st.config.labels.as_ref())?;
                st.config.env = Some(new_env);
                self.commit_nop(st, &format!("ENV {}", parts.join(" ")), opts, out)
                    .await
            }
            Kind::Label(pairs) => {
                let mut labels = st.config.labels.clone().unwrap_or_default();
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let k = expand(k)?;
                    let v = expand(v)?;
                    parts.push(format!("{k}={v}"));
                    labels.insert(k, v);
                }
                let env_sizes = st.config.env.iter().flatten().map(String::len);
                check_config_size(env_sizes, Some(&labels))?;
                st.config.labels = Some(labels);
                self.commit_nop(st, &format!("LABEL {}", parts.join(" ")), opts, out)
                    .await
            }
            Kind::Maintainer(m) => {
                st.author = Some(m.clone());
                self.commit_nop(st, &format!("MAINTAINER {m}"), opts, out)
                    .await
            }
            Kind::Cmd(c) => {
                let cmd = self.command(st, c);
                st.config.cmd = Some(cmd.clone());
                st.config.args_escaped = None;
                st.cmd_set = true;
                self.commit_nop(st, &format!("CMD {}", go_quoted_list(&cmd)), opts, out)
                    .await
            }
            Kind::Entrypoint(c) => {
                let ep = self.command(st, c);
                st.config.entrypoint = Some(ep.clone());
                if !st.cmd_set {
                    st.config.cmd = None;
                }
                self.commit_nop(
                    st,
                    &format!("ENTRYPOINT {}", go_quoted_list(&ep)),
                    opts,
                    out,
                )
                .await
            }
            Kind::Expose(ports) => {
                let mut words = Vec::new();
                for p in ports {
                    words.extend(lex.process_words(p, &|k| env::get(&env, k))?);
                }
                let mut exposed = st.config.exposed_ports.clone().unwrap_or_default();
                for w in &words {
                    for key in
                        crate::image::changes::exposed_keys(w).map_err(BuilderError::invalid)?
                    {
                        if !exposed.contains(&key) {
                            exposed.push(key);
                        }
                    }
                }
                st.config.exposed_ports = Some(exposed);
                self.commit_nop(st, &format!("EXPOSE {}", words.join(" ")), opts, out)
                    .await
            }
            Kind::Volume(vols) => {
                let mut paths = Vec::new();
                for v in vols {
                    let p = expand(v)?;
                    if p.trim().is_empty() {
                        return Err(err("VOLUME specified can not be an empty string"));
                    }
                    paths.push(p);
                }
                let mut volumes = st.config.volumes.clone().unwrap_or_default();
                for p in &paths {
                    if !volumes.contains(p) {
                        volumes.push(p.clone());
                    }
                }
                st.config.volumes = Some(volumes);
                self.commit_nop(st, &format!("VOLUME {}", go_list(&paths)), opts, out)
                    .await
            }
            Kind::User(u) => {
                let u = expand(u)?;
                st.config.user = Some(u.clone());
                self.commit_nop(st, &format!("USER {u}"), opts, out).await
            }
            Kind::Workdir(w) => {
                let w = expand(w)?;
                let current = st.config.working_dir.clone().unwrap_or_default();
                let dir = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", if current.is_empty() { "/" } else { &current })
                };
                let dir = clean(&dir);
                st.config.working_dir = Some(dir.clone());
                let probe = st.nop_probe_single(&format!("WORKDIR {dir}"));
                if self.use_cache(st, &probe, opts, out).await? {
                    return Ok(());
                }
                // moby's `ContainerCreateWorkdir`: the directory is made (0755, root) in the
                // step's layer when the image lacks it (looked at only on a miss).
                let files = {
                    let root = self.image_root(&st.image)?;
                    workdir_tar(&root.path, &dir).map_err(err)?
                };
                self.create_commit(st, probe, files, opts, out).await
            }
            Kind::StopSignal(s) => {
                let s = expand(s)?;
                st.config.stop_signal = Some(s.clone());
                self.commit_nop(st, &format!("STOPSIGNAL {s}"), opts, out)
                    .await
            }
            Kind::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => HealthConfig {
                        test: Some(vec!["NONE".to_string()]),
                        ..Default::default()
                    },
                    Healthcheck::Cmd {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => HealthConfig {
                        test: Some(test.clone()),
                        interval: Some(*interval).filter(|v| *v != 0),
                        timeout: Some(*timeout).filter(|v| *v != 0),
                        start_period: Some(*start_period).filter(|v| *v != 0),
                        start_interval: Some(*start_interval).filter(|v| *v != 0),
                        retries: Some(*retries).filter(|v| *v != 0),
                    },
                };
                let text = format!(
                    "HEALTHCHECK &{{{} {:?} {:?} {:?} {:?} '\\x{:02x}'}}",
                    go_quoted_list(hc.test.as_deref().unwrap_or_default()),
                    go_dur(hc.interval),
                    go_dur(hc.timeout),
                    go_dur(hc.start_period),
                    go_dur(hc.start_interval),
                    hc.retries.unwrap_or(0)
                );
                st.config.healthcheck = Some(hc);
                self.commit_nop(st, &text, opts, out).await
            }
            Kind::Shell(sh) => {
                st.config.shell = Some(sh.clone());
                self.commit_nop(st, &format!("SHELL {}", go_list(sh)), opts, out)
                    .await
            }
            Kind::Onbuild(t) => {
                let mut ob = st.config.on_build.clone().unwrap_or_default();
                ob.push(t.clone());
                st.config.on_build = Some(ob);
                self.commit_nop(st, &format!("ONBUILD {t}"), opts, out)
                    .await
            }
            Kind::Arg(decls) => {
                let mut parts = Vec::new();
                for a in decls {
                    let default = match &a.default {
                        Some(d) => Some(expand(d)?),
                        None => meta
                            .iter()
                            .find(|(k, _)| k == &a.name)
                            .and_then(|(_, v)| v.clone()),
                    };
                    let value = match opts.build_args.get(&a.name) {
                        Some(Some(v)) => {
                            used.insert(a.name.clone());
                            Some(v.clone())
                        }
                        _ => default,
                    };
                    st.args.retain(|(k, _)| k != &a.name);
                    st.args.push((a.name.clone(), value));
                    parts.push(arg_text(a));
                }
                self.commit_nop(st, &format!("ARG {}", parts.join(" ")), opts, out)
                    .await
            }
            Kind::Run(c) => self.run_step(st, c, opts, out).await,
            Kind::Copy(spec) | Kind::Add(spec) => {
                let add = matches!(ins.kind, Kind::Add(_));
                self.copy_step(st, spec, add, &expand, context, opts, out, results)
                    .await
            }
        }
    }

    /// The command of RUN/CMD/ENTRYPOINT: the shell form through `SHELL`.
    fn command(&self, st: &Stage, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = st.shell();
                v.push(s.clone());
                v
            }
        }
    }

    /// A metadata step: probe the cache with `#(nop) <comment>` as the command, else create a
    /// container (never started) and commit it: an `empty_layer` history entry.
    async fn commit_nop(
        &self,
        st: &mut Stage,
        comment: &str,
        opts: &BuildOptions,
        out: &mut Out,
    ) -> Result<(), StepError> {
        let probe = st.nop_probe(comment);
        self.probe_create_commit(st, probe, None, opts, out).await
    }

    /// Probe the cache for `probe`; on a miss create a container with `probe` (plus `files`
    /// put into it), commit it with the stage's config and remove it.
    async fn probe_create_commit(
        &self,
        st: &mut Stage,
        probe: ContainerConfig,
        files: Option<Vec<u8>>,
        opts: &BuildOptions,
        out: &mut Out,
    ) -> Result<(), StepError> {
        if self.use_cache(st, &probe, opts, out).await? {
            return Ok(());
        }
        self.create_commit(st, probe, files, opts, out).await
    }

    /// Create a container with `probe` (plus `files` put into it), commit it with the
    /// stage's config and remove it.
    async fn create_commit(
        &self,
        st: &mut Stage,
        probe: ContainerConfig,
        files: Option<Vec<u8>>,
        opts: &BuildOptions,
        out: &mut Out,
    ) -> Result<(), StepError> {
        // COPY and ADD: dockerd writes the files into a layer of its own, no container, so
        // none is shown ("Running in", "Removed intermediate container") or left behind.
        let copying = files.is_some();
        let id = self.create(st, probe.clone(), opts, out, !copying).await?;
        let result = async {
            if let Some(tar) = files {
                let body = crate::util::io::body_of(vec![bytes::Bytes::from(tar)]);
                self.containers
                    .archive_put(&id, "/", PutOptions::default(), body)
                    .await
                    .map_err(err)?;
            }
            self.commit(st, &id, &probe).await
        }
        .await;
        if copying {
            if let Err(e) = self.containers.remove(&id, true, true).await {
                tracing::warn!("remove the copy container {id}: {e}");
            }
        } else {
            self.remove_intermediate(&id, result.is_ok(), opts, out)
                .await;
        }
        result
    }

    /// Probe the cache for a step whose `container_config` is `probe`; on a hit, say so and
    /// make the hit the stage's image.
    async fn use_cache(
        &self,
        st: &mut Stage,
        probe: &ContainerConfig,
        opts: &BuildOptions,
        out: &mut Out,
    ) -> Result<bool, StepError> {
        if opts.nocache {
            return Ok(false);
        }
        let hit = match st.cache_from.take() {
            None => self.local_cache(&st.image, probe),
            Some(mut sources) => {
                let hit = self.cache_from(&st.image, probe, &mut sources).await;
                st.cache_from = Some(sources);
                hit?
            }
        };
        match hit {
            Some(id) => {
                out.say(" ---> Using cache\n").await;
                st.image = id;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// moby's `getLocalCachedImage`: the newest image built here whose parent is `parent` and
    /// whose `container_config` matches `probe`.
    fn local_cache(&self, parent: &str, probe: &ContainerConfig) -> Option<String> {
        let want = cache_key(&serde_json::to_value(probe).ok()?);
        let mut children = if parent.is_empty() {
            // After `FROM scratch`: images without a parent.
            self.images
                .store()
                .images()
                .into_iter()
                .filter(|i| i.parent.is_none())
                .collect()
        } else {
            self.images.store().children(parent)
        };
        // The newest match wins.
        children.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        children.into_iter().find_map(|img| {
            if !img.built_locally {
                return None;
            }
            let cc = img.config.other.get("container_config")?;
            (cache_key(cc) == want).then_some(img.id)
        })
    }

    /// moby's `ImageCache.GetCache` (`cachefrom`): a local hit that is an ancestor of one of
    /// `sources`; else a source whose history continues `parent`'s with this step (compared
    /// by `created_by`, the step's command joined). At a source's last entry the source itself
    /// is the hit (linked to `parent`); inside its history an image is restored from it, and
    /// only that source stays in play.
    async fn cache_from(
        &self,
        parent: &str,
        probe: &ContainerConfig,
        sources: &mut Vec<Image>,
    ) -> Result<Option<String>, StepError> {
        let store = self.images.store();
        if let Some(local) = self.local_cache(parent, probe) {
            let is_ancestor = |source: &Image| {
                let mut seen = HashSet::new();
                let mut next = source.parent.clone();
                while let Some(p) = next {
                    if p == local {
                        return true;
                    }
                    if !seen.insert(p.clone()) {
                        return false;
                    }
                    next = store.image(&p).and_then(|i| i.parent);
                }
                false
            };
            if sources.iter().any(is_ancestor) {
                return Ok(Some(local));
            }
        }
        let parent = match parent {
            "" => None,
            id => Some(
                store
                    .image(id)
                    .ok_or_else(|| err(format!("unable to find image {id}")))?,
            ),
        };
        let index = parent.as_ref().map_or(0, |p| p.config.history.len());
        let created_by = probe.cmd.clone().unwrap_or_default().join(" ");
        let Some(target) = sources
            .iter()
            .find(|t| {
                valid_cache_parent(t, parent.as_ref())
                    && t.config
                        .history
                        .get(index)
                        .map(|h| h.created_by.as_deref().unwrap_or(""))
                        == Some(created_by.as_str())
            })
            .cloned()
        else {
            return Ok(None);
        };
        if index + 1 == target.config.history.len() {
            if let Some(p) = &parent {
                store.set_parent(&target.id, &p.id).map_err(|e| {
                    err(format!(
                        "failed to set parent for {} to {}: {e}",
                        target.id, p.id
                    ))
                })?;
            }
            return Ok(Some(target.id));
        }
        let config = serde_json::to_value(probe)
            .and_then(serde_json::from_value)
            .map_err(|e| err(format!("convert config: {e}")))?;
        let images = self.images.clone();
        let t = target.clone();
        let restored =
            tokio::task::spawn_blocking(move || images.restore_cached(parent.as_ref(), &t, config))
                .await
                .map_err(|e| err(format!("cache task: {e}")))?
                .map_err(|e| {
                    err(format!(
                        "failed to restore cached image from {}: {e}",
                        target.id
                    ))
                })?;
        *sources = vec![target];
        Ok(Some(restored.id))
    }

    /// Create a step container from the current image.
    async fn create(
        &self,
        st: &Stage,
        config: ContainerConfig,
        opts: &BuildOptions,
        out: &mut Out,
        announce: bool,
    ) -> Result<String, StepError> {
        // moby's `containerManager.Create(runConfig, hostConfig)`: the step's whole config,
        // without a health check, its output attached.
        let body = join_body(
            ContainerConfig {
                image: Some(st.image.clone()),
                healthcheck: Some(HealthConfig {
                    test: Some(vec!["NONE".to_string()]),
                    ..Default::default()
                }),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..config
            },
            self.host_config(opts),
        );
        let created = if st.image.is_empty() {
            self.containers.create_scratch(body).await
        } else {
            self.containers.create(None, None, body, None).await
        };
        let (id, warnings) = created.map_err(err)?;
        for w in warnings {
            out.say(format!(" ---> [Warning] {w}\n")).await;
        }
        if announce {
            out.say(format!(" ---> Running in {}\n", short_id(&id)))
                .await;
        }
        Ok(id)
    }

    /// moby's `hostConfigFromOptions`.
    fn host_config(&self, opts: &BuildOptions) -> HostConfig {
        HostConfig {
            network_mode: Some(if opts.network_mode.is_empty() {
                "default".to_string()
            } else {
                opts.network_mode.clone()
            }),
            extra_hosts: Some(opts.extra_hosts.clone()).filter(|h| !h.is_empty()),
            shm_size: opts.shm_size.filter(|s| *s > 0),
            ulimits: Some(opts.ulimits.clone()).filter(|u| !u.is_empty()),
            memory: opts.memory.filter(|m| *m > 0),
            memory_swap: opts.memory_swap.filter(|m| *m != 0),
            cpu_shares: opts.cpu_shares.filter(|c| *c > 0),
            cpu_period: opts.cpu_period.filter(|c| *c > 0),
            cpu_quota: opts.cpu_quota.filter(|c| *c > 0),
            cpuset_cpus: Some(opts.cpuset_cpus.clone()).filter(|c| !c.is_empty()),
            cpuset_mems: Some(opts.cpuset_mems.clone()).filter(|c| !c.is_empty()),
            cgroup_parent: Some(opts.cgroup_parent.clone()).filter(|c| !c.is_empty()),
            log_config: Some(bollard_stubs::models::HostConfigLogConfig {
                typ: Some("json-file".to_string()),
                config: None,
            }),
            ..Default::default()
        }
    }

    /// Commit a step container: the stage's config is the image's, `probe` its
    /// `container_config` (what the cache compares).
    async fn commit(
        &self,
        st: &mut Stage,
        id: &str,
        probe: &ContainerConfig,
    ) -> Result<(), StepError> {
        let image = self
            .containers
            .commit_step(id, &st.config, probe, st.author.clone())
            .await
            .map_err(err)?;
        st.image = image;
        Ok(())
    }

    /// moby's `RemoveAll` after a step: with `rm` after a success, with `forcerm` always.
    async fn remove_intermediate(&self, id: &str, ok: bool, opts: &BuildOptions, out: &mut Out) {
        if opts.force_remove || (opts.remove && ok) {
            match self.containers.remove(id, true, true).await {
                Ok(()) => {
                    out.say(format!(
                        " ---> Removed intermediate container {}\n",
                        short_id(id)
                    ))
                    .await
                }
                Err(e) => {
                    out.say(format!(
                        "Removing intermediate container {}: {e}\n",
                        short_id(id)
                    ))
                    .await
                }
            }
        }
    }

    /// RUN: probe, else run the command in a container (output streamed, stderr in red as
    /// dockerd's classic builder writes it), then commit.
    async fn run_step(
        &self,
        st: &mut Stage,
        c: &Command,
        opts: &BuildOptions,
        out: &mut Out,
    ) -> Result<(), StepError> {
        let cmd = self.command(st, c);
        let args = st.run_args();
        // moby's `prependEnvOnCmd`: the build args a RUN sees are part of its cache key and
        // history (`|2 A=1 B=2 /bin/sh -c …`), except the predefined proxy ones.
        let mut recorded: Vec<String> = args
            .iter()
            .filter(|(k, _)| !PREDEFINED_ARGS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        recorded.sort();
        let mut save_cmd = cmd.clone();
        if !recorded.is_empty() {
            let mut v = vec![format!("|{}", recorded.len())];
            v.extend(recorded.iter().cloned());
            v.extend(cmd.iter().cloned());
            save_cmd = v;
        }
        let mut probe = st.config.clone();
        probe.cmd = Some(save_cmd);
        probe.entrypoint = None;
        if self.use_cache(st, &probe, opts, out).await? {
            return Ok(());
        }
        let mut run = st.config.clone();
        run.cmd = Some(cmd.clone());
        // moby: `[""]` resets the image's entrypoint for the step.
        run.entrypoint = Some(vec![String::new()]);
        let mut env = st.env();
        for (k, v) in &args {
            env.push(format!("{k}={v}"));
        }
        run.env = Some(env);
        let id = self.create(st, run, opts, out, true).await?;
        let result = async {
            let code = self.run_container(&id, out).await?;
            if code != 0 {
                return Err(StepError {
                    code: Some(code),
                    message: format!(
                        "The command '{}' returned a non-zero code: {code}",
                        cmd.join(" ")
                    ),
                });
            }
            self.commit(st, &id, &probe).await
        }
        .await;
        self.remove_intermediate(&id, result.is_ok(), opts, out)
            .await;
        result
    }

    /// Start a step container, stream its output, and wait for its exit code. A client that
    /// goes away kills it.
    async fn run_container(&self, id: &str, out: &mut Out) -> Result<i64, StepError> {
        let waiter = self
            .containers
            .wait(id, WaitCondition::NextExit)
            .map_err(err)?;
        let stdio = self.containers.start_attached(id).await.map_err(err)?;
        let (mut output, _stdin) = stdio.split();
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                c = output.next(false) => c,
                _ = out.tx.closed() => {
                    let _ = self.containers.remove(id, true, true).await;
                    return Err(err("Build cancelled"));
                }
            };
            let Some(chunk) = chunk else { break };
            pending.extend_from_slice(&chunk);
            while let Some((kind, len)) = stdcopy::frame_len(&pending) {
                let payload =
                    String::from_utf8_lossy(&pending[stdcopy::HEADER..stdcopy::HEADER + len])
                        .into_owned();
                pending.drain(..stdcopy::HEADER + len);
                if kind == stdcopy::STDERR {
                    out.say(format!("\u{1b}[91m{payload}\u{1b}[0m")).await;
                } else {
                    out.say(payload).await;
                }
            }
        }
        let (code, _) = tokio::time::timeout(Duration::from_secs(3600), waiter)
            .await
            .map_err(|_| err("step timed out"))?;
        Ok(code)
    }

    /// COPY/ADD: the sources in the context (or a stage's or image's file system), their
    /// checksum in the cache key, a tar of them put into a step container, then a commit.
    #[allow(clippy::too_many_arguments)]
    async fn copy_step(
        &self,
        st: &mut Stage,
        spec: &CopySpec,
        add: bool,
        expand: &(dyn Fn(&str) -> Result<String, StepError> + Sync),
        context: &BuildContext,
        opts: &BuildOptions,
        out: &mut Out,
        results: &[(Option<String>, String)],
    ) -> Result<(), StepError> {
        let name = if add { "ADD" } else { "COPY" };
        let mut srcs = Vec::new();
        for s in &spec.srcs {
            srcs.push(expand(s)?);
        }
        let dest = expand(&spec.dest)?;
        let chown = match &spec.chown {
            Some(c) => Some(expand(c)?),
            None => None,
        };
        // Where the sources come from.
        let _from_root: Option<ImageRoot>;
        let source_root: PathBuf = match &spec.from {
            None => context.root.clone(),
            Some(from) => {
                let from = expand(from)?.to_lowercase();
                let image = match from.parse::<usize>() {
                    Ok(i) => results
                        .get(i)
                        .map(|(_, id)| id.clone())
                        .ok_or_else(|| err(format!("invalid from flag value {from}")))?,
                    Err(_) => match results.iter().find(|(n, _)| n.as_deref() == Some(&from)) {
                        Some((_, id)) => id.clone(),
                        None => self.base_image(&from, opts, out).await?,
                    },
                };
                let root = self.image_root(&image)?;
                let p = root.path.clone();
                _from_root = Some(root);
                p
            }
        };
        let from_image = spec.from.is_some();
        // The parent image's files are looked at for `--chown` names, and on a miss for what
        // the destinations are: mounted only then (a cached step mounts nothing).
        let mut parent_root = match &spec.chown {
            Some(_) => Some(self.image_root(&st.image)?),
            None => None,
        };
        // Made by the first download only (ADD of a URL).
        let scratch = self
            .work_dir
            .join(format!("dl-{}", crate::util::rand::random_hex(12)));
        let workdir = st.config.working_dir.clone().unwrap_or_default();
        let parent_path = parent_root.as_ref().map(|r| r.path.clone());
        let (checksum, prepared) = {
            let srcs = srcs.clone();
            let dest = dest.clone();
            let scratch_c = scratch.clone();
            let chown = chown.clone();
            let known = spec.from.is_none().then(|| context.hashes.clone());
            tokio::task::spawn_blocking(
                move || -> Result<(String, copy::Prepared), BuilderError> {
                    let owner = match (&chown, &parent_path) {
                        (Some(spec), Some(root)) => {
                            let passwd = read_in_root(root, "etc/passwd");
                            let group = read_in_root(root, "etc/group");
                            Some(copy::resolve_chown(
                                spec,
                                passwd.as_deref(),
                                group.as_deref(),
                            )?)
                        }
                        _ => None,
                    };
                    let input = CopyInput {
                        srcs: &srcs,
                        dest: &dest,
                        workdir: &workdir,
                        source_root: &source_root,
                        add,
                        chown: owner,
                        scratch: &scratch_c,
                        known: known.as_deref(),
                    };
                    let mut prepared = copy::prepare(&input)?;
                    // moby: COPY --from without --chown keeps the source's owners.
                    if from_image && owner.is_none() {
                        prepared = prepared.preserve_ownership();
                    }
                    let sum = prepared.source_hash()?;
                    Ok((sum, prepared))
                },
            )
            .await
            .map_err(|e| err(format!("copy task: {e}")))??
        };
        // No space after it: moby's `performCopy` writes `--chown=1:2dir:<hex>`, and the comment
        // is part of the cache key.
        let chown_comment = chown.map(|c| format!("--chown={c}")).unwrap_or_default();
        // The destination as moby's `normalizeDest` makes it: under the workdir, cleaned, its
        // trailing slash kept.
        let dest = if dest.starts_with('/') {
            dest
        } else {
            let wd = st.config.working_dir.clone().unwrap_or_default();
            let joined = clean(&format!("/{wd}/{dest}"));
            if dest.ends_with('/') && joined != "/" {
                format!("{joined}/")
            } else {
                joined
            }
        };
        let probe = st.nop_probe_single(&format!("{name} {chown_comment}{checksum} in {dest} "));
        // The tar is made only on a miss: a cached COPY reads its sources once, to hash them.
        let result = if self.use_cache(st, &probe, opts, out).await? {
            Ok(())
        } else {
            let root = match parent_root.take() {
                Some(r) => Ok(r),
                None => self.image_root(&st.image),
            };
            match root {
                Ok(root) => {
                    let parent_path = root.path.clone();
                    let tar =
                        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, BuilderError> {
                            let kind = |p: &str| dest_kind(&parent_path, p);
                            let mut tar = Vec::new();
                            prepared.write_tar(&kind, &mut tar)?;
                            Ok(tar)
                        })
                        .await;
                    drop(root);
                    match tar {
                        Ok(Ok(tar)) => self.create_commit(st, probe, Some(tar), opts, out).await,
                        Ok(Err(e)) => Err(e.into()),
                        Err(e) => Err(err(format!("copy task: {e}"))),
                    }
                }
                Err(e) => Err(e),
            }
        };
        drop(parent_root);
        crate::util::tree::remove_all(&scratch);
        result
    }

    /// A read-only view of `image`'s root file system.
    fn image_root(&self, image: &str) -> Result<ImageRoot, StepError> {
        let mut lowers = if image.is_empty() {
            Vec::new()
        } else {
            let img = self.images.get_image(image).map_err(err)?;
            match img.chain.last() {
                Some(top) => self.images.store().lower_dirs(top).map_err(err)?,
                None => Vec::new(),
            }
        };
        match lowers.len() {
            0 => {
                let path = self
                    .work_dir
                    .join(format!("empty-{}", crate::util::rand::random_hex(12)));
                std::fs::create_dir_all(&path).map_err(err)?;
                Ok(ImageRoot {
                    path,
                    mounted: false,
                    owned: true,
                })
            }
            1 => Ok(ImageRoot {
                path: lowers.remove(0),
                mounted: false,
                owned: false,
            }),
            _ => {
                let path = self
                    .work_dir
                    .join(format!("root-{}", crate::util::rand::random_hex(12)));
                std::fs::create_dir_all(&path).map_err(err)?;
                if let Err(e) = crate::runtime::host::mount_overlay_ro(&lowers, &path) {
                    let _ = std::fs::remove_dir(&path);
                    return Err(err(format!("mount image {image}: {e}")));
                }
                Ok(ImageRoot {
                    path,
                    mounted: true,
                    owned: true,
                })
            }
        }
    }
}

/// Whether `p` names this daemon's platform (`linux`, `linux/amd64`, …).
fn platform_ok(p: &str) -> bool {
    let mut parts = p.split('/');
    let os = parts.next().unwrap_or("");
    let arch = parts.next();
    os == "linux" && arch.is_none_or(|a| a == crate::version::go_arch())
}

/// The most a build stage's environment and labels may hold together (bytes). Each value is
/// bounded by the shell lexer's longest word, but every ENV or LABEL line can add one: a
/// Dockerfile of short lines repeating a long value would grow the image config (and berthd's
/// memory) without end. dockerd has no bound.
const MAX_CONFIG_VALUES: usize = 16 << 20;

fn check_config_size(
    env: impl Iterator<Item = usize>,
    labels: Option<&std::collections::HashMap<String, String>>,
) -> Result<(), StepError> {
    let labels = labels.map_or(0, |l| l.iter().map(|(k, v)| k.len() + v.len()).sum());
    if env.sum::<usize>() + labels > MAX_CONFIG_VALUES {
        return Err(err(format!(
            "the stage's environment and labels are larger than {MAX_CONFIG_VALUES} bytes"
        )));
    }
    Ok(())
}

fn arg_text(a: &ArgDecl) -> String {
    match &a.default {
        Some(d) => format!("{}={d}", a.name),
        None => a.name.clone(),
    }
}

/// Go's `time.Duration` `%q`-ish text of a nanosecond count (history comments only).
fn go_dur(ns: Option<i64>) -> String {
    crate::util::time::go_duration_string(Duration::from_nanos(ns.unwrap_or(0).max(0) as u64))
}

/// A tar of the directories of `dir` that `root` lacks (0755, owned by root), or `None`.
fn workdir_tar(root: &Path, dir: &str) -> std::io::Result<Option<Vec<u8>>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut path = String::new();
    let mut any = false;
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(part);
        match dest_kind(root, &path) {
            DestKind::Dir => continue,
            DestKind::Other if !any => {
                return Err(std::io::Error::other(format!(
                    "mkdir {path}: not a directory"
                )))
            }
            _ => {}
        }
        any = true;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        builder.append_data(
            &mut h,
            format!("{}/", path.trim_start_matches('/')),
            std::io::empty(),
        )?;
    }
    if !any {
        return Ok(None);
    }
    builder.into_inner().map(Some)
}

/// A file of an image root read in-root (for `--chown` names).
fn read_in_root(root: &Path, rel: &str) -> Option<String> {
    use std::io::Read;
    let mut f = crate::util::inroot::open_file(root, rel).ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    Some(s)
}

/// What an absolute path is in an image root (symlinks followed in-root).
fn dest_kind(root: &Path, path: &str) -> DestKind {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return DestKind::Dir;
    }
    let Ok(dir) = std::fs::File::open(root) else {
        return DestKind::Missing;
    };
    match crate::util::inroot::resolve(&dir, rel.as_bytes(), nix::fcntl::OFlag::O_PATH) {
        Ok(fd) => match nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd)) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => DestKind::Dir,
            Ok(_) => DestKind::Other,
            Err(_) => DestKind::Missing,
        },
        Err(_) => DestKind::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_config_values_are_bounded() {
        let mut labels = std::collections::HashMap::new();
        labels.insert("l".to_string(), "v".repeat(1 << 20));
        let env = [1 << 20; 14];
        assert!(check_config_size(env.iter().copied(), Some(&labels)).is_ok());
        let env = [1 << 20; 16];
        let e = check_config_size(env.iter().copied(), Some(&labels)).unwrap_err();
        assert!(
            e.message.contains("larger than 16777216 bytes"),
            "{}",
            e.message
        );
    }

    #[test]
    fn history_formats() {
        assert_eq!(
            go_quoted_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(go_list(&["/data".into(), "/x".into()]), "[/data /x]");
    }

    #[test]
    fn cache_keys_ignore_empty_fields() {
        let a = serde_json::json!({"Cmd":["a"],"Env":[],"Labels":{},"Hostname":"x"});
        let b = serde_json::json!({"Cmd":["a"],"Hostname":"y","Tty":false});
        assert_eq!(cache_key(&a), cache_key(&b));
        let c = serde_json::json!({"Cmd":["b"]});
        assert_ne!(cache_key(&a), cache_key(&c));
    }

    #[test]
    fn platforms() {
        assert!(platform_ok("linux"));
        assert!(platform_ok(&format!("linux/{}", crate::version::go_arch())));
        assert!(!platform_ok("windows/amd64"));
        assert!(!platform_ok("linux/s390x"));
    }
}
