//! `docker commit` (moby's `daemon/commit.go`): the container's config merged with the
//! request's and the `--change` lines, its writable layer without the placeholders berth
//! creates, registered through [`ImageService::commit_layer`](crate::image::ImageService).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use bollard_stubs::models::ContainerConfig;

use super::create::merge_image_config;
use super::manager::ContainerManager;
use super::record::{Record, Status};
use super::ContainerError;
use crate::image::changes::apply_changes;
use crate::image::commit::{commit_reference, layer_tar_reader, upper_entries, ChildConfig};
use crate::image::config::RunConfig;

/// The options of `POST /commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub repo: String,
    pub tag: String,
    pub author: String,
    pub comment: String,
    /// Pause a running container while its layer is read (the API's default).
    pub pause: bool,
    /// Dockerfile lines (`CMD`, `ENV`, ...), as `docker commit --change`.
    pub changes: Vec<String>,
    /// The request body: merged over the container's config.
    pub config: Option<ContainerConfig>,
}

/// Files, links and mount targets the runtime creates in a container's writable layer (moby
/// keeps them in its init layer): left out of `docker diff` and `docker commit` when they are
/// empty files (or `/etc/mtab`'s link to `/proc/mounts`) and not in the image.
pub(super) fn placeholders(r: &Record) -> HashSet<PathBuf> {
    let mut out: HashSet<PathBuf> = [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        ".dockerenv",
        "etc/mtab",
        "proc",
        "sys",
        "dev",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    if let Some(mps) = &r.mount_points {
        for m in mps {
            let d = m.destination.trim_start_matches('/');
            if !d.is_empty() {
                out.insert(PathBuf::from(d));
            }
        }
    }
    out
}

fn to_run(c: &ContainerConfig) -> Result<RunConfig, ContainerError> {
    serde_json::to_value(c)
        .and_then(serde_json::from_value)
        .map_err(|e| ContainerError::internal(format!("convert config: {e}")))
}

fn from_run(c: &RunConfig) -> Result<ContainerConfig, ContainerError> {
    serde_json::to_value(c)
        .and_then(serde_json::from_value)
        .map_err(|e| ContainerError::internal(format!("convert config: {e}")))
}

impl ContainerManager {
    /// `POST /commit`: a new image from the container's writable layer and its config merged
    /// with `opts`; tagged `repo:tag` when a repository is given. Returns the image ID.
    pub async fn commit(
        self: &Arc<Self>,
        name: &str,
        opts: CommitOptions,
    ) -> Result<String, ContainerError> {
        let target = commit_reference(&opts.repo, &opts.tag)?;
        let c = self.get(name)?;
        let r = c.record();
        match r.state.status {
            Status::Dead => {
                return Err(ContainerError::conflict(format!(
                    "You cannot commit container {} which is Dead",
                    r.id
                )))
            }
            Status::Removing => {
                return Err(ContainerError::conflict(format!(
                    "You cannot commit container {} which is being removed",
                    r.id
                )))
            }
            _ => {}
        }
        // moby: the body (or the container's config), the changes over it, then the
        // container's config supplies what is left out.
        let mut run = to_run(opts.config.as_ref().unwrap_or(&r.config))?;
        apply_changes(&mut run, &opts.changes)?;
        let mut merged = from_run(&run)?;
        merge_image_config(&mut merged, &to_run(&r.config)?);
        let config = to_run(&merged)?;
        let child = ChildConfig {
            container_id: Some(r.id.clone()),
            author: Some(opts.author.clone()),
            comment: Some(opts.comment.clone()),
            created_by: r.config.cmd.clone().unwrap_or_default().join(" "),
            config,
            container_config: serde_json::to_value(&r.config).ok(),
        };

        // The record says so before the pause, so that a restore after a crash in between
        // thaws the container (`restore.rs`). A record that cannot be written (a full disk)
        // does not stop the pause: the commit pauses as it always did, only unprotected.
        let pausing = opts.pause && r.state.status == Status::Running;
        let marked = pausing
            && self
                .update(&c, |r| r.state.paused_for_commit = true)
                .is_ok();
        let paused_here = pausing && {
            match self.pause(&r.id, true).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("commit {}: pause: {e}", r.id);
                    false
                }
            }
        };
        let result = self.commit_layer(&r, child).await;
        if paused_here {
            if let Err(e) = self.pause(&r.id, false).await {
                tracing::warn!("commit {}: unpause: {e}", r.id);
            }
        }
        if marked {
            let _ = self.update(&c, |r| r.state.paused_for_commit = false);
        }
        let id = result?;

        let mut image_ref = String::new();
        if let Some(t) = &target {
            let tagged = self.image_service().tag(&id, &t.familiar(), None)?;
            image_ref = tagged.familiar();
        }
        let e = self
            .event_for(&r, "commit")
            .attribute("comment", opts.comment.clone())
            .attribute("imageID", id.clone())
            .attribute("imageRef", image_ref);
        self.events_bus().publish(e);
        Ok(id)
    }

    /// A build step's commit (moby's `CommitBuildStep`): the container's layer over its image,
    /// `config` as the new image's config and `container_config` as what the builder's cache
    /// compares; the history entry's `created_by` is the container's command.
    pub async fn commit_step(
        self: &Arc<Self>,
        name: &str,
        config: &ContainerConfig,
        container_config: &ContainerConfig,
        author: Option<String>,
    ) -> Result<String, ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let child = ChildConfig {
            container_id: Some(r.id.clone()),
            author,
            comment: None,
            created_by: container_config.cmd.clone().unwrap_or_default().join(" "),
            config: to_run(config)?,
            container_config: serde_json::to_value(container_config).ok(),
        };
        self.commit_layer(&r, child).await
    }

    /// The writable layer of `r` as a layer over its image, and the image.
    async fn commit_layer(
        self: &Arc<Self>,
        r: &Record,
        child: ChildConfig,
    ) -> Result<String, ContainerError> {
        let upper = self.upper_dir(&r.id);
        let lowers = match r.chain_id() {
            Some(ch) => self.image_service().store().lower_dirs(ch)?,
            None => Vec::new(),
        };
        let ph = placeholders(r);
        let images = self.image_service().clone();
        let parent = Some(r.image.clone()).filter(|i| !i.is_empty());
        tokio::task::spawn_blocking(move || -> Result<String, ContainerError> {
            let io = |e: std::io::Error| {
                ContainerError::internal(format!("read the container's layer: {e}"))
            };
            let entries = upper_entries(&upper, &lowers, &ph).map_err(io)?;
            let tar = layer_tar_reader(upper, entries).map_err(io)?;
            let img = images.commit_layer(parent.as_deref(), Some(tar), child)?;
            Ok(img.id)
        })
        .await
        .map_err(|e| ContainerError::internal(format!("commit task: {e}")))?
    }
}
