//! `DELETE /containers/{id}`: stop (with force), unmount, remove the files, forget the name.

use std::sync::Arc;
use std::time::Duration;

use super::manager::{lock, Container, ContainerManager};
use super::record::{Record, Status};
use super::ContainerError;

impl ContainerManager {
    /// `DELETE /containers/{id}`; `volumes` (`rm -v`) removes its anonymous volumes too.
    pub async fn remove(
        self: &Arc<Self>,
        name: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        self.remove_locked(&c, force, volumes).await
    }

    /// `DELETE /containers/<parent>/<alias>?link=1` (moby's `rmLink`): the parent forgets the
    /// legacy link, and a running parent's `/etc/hosts` loses the alias. The linked container
    /// is looked up first (404), as dockerd's.
    pub async fn remove_link(self: &Arc<Self>, name: &str) -> Result<(), ContainerError> {
        let child = self.get(name)?;
        let full = format!("/{}", name.trim_start_matches('/'));
        let (parent, alias) = full.rsplit_once('/').unwrap_or_default();
        if parent.is_empty() {
            return Err(ContainerError::conflict(
                "Conflict, cannot remove the default link name of the container",
            ));
        }
        let p = self.get(parent).map_err(|_| {
            ContainerError::invalid(format!("Cannot get parent {parent} for link name {full}"))
        })?;
        let _op = p.op.lock().await;
        let r = self.update(&p, |r| {
            if let Some(links) = r.host_config.links.as_mut() {
                links.retain(|l| {
                    super::network::parse_link(l)
                        .map_or(true, |(id, a)| !(id == child.id && a == alias))
                });
            }
        })?;
        if r.state.status.is_running() {
            let attached = self.network_service().attached(&r.id);
            self.write_network_files(&r, &attached, super::network::Rewrite::HostsOnly)?;
        }
        Ok(())
    }

    pub(super) async fn remove_locked(
        self: &Arc<Self>,
        c: &Arc<Container>,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        let r = c.record();
        if r.state.status == Status::Removing {
            return Err(ContainerError::conflict(format!(
                "removal of container {} is already in progress",
                r.id
            )));
        }
        if r.state.status == Status::Restarting && !force {
            return Err(ContainerError::conflict(format!(
                "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
                r.name
            )));
        }
        if r.state.status.is_running() {
            if !force {
                return Err(ContainerError::conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    r.name
                )));
            }
            self.update(c, |r| r.state.manually_stopped = true)?;
            if r.state.status == Status::Paused {
                let _ = self.runtime.resume(&c.id).await;
            }
            self.events
                .publish(self.event(&r, "kill").attribute("signal", "9"));
            let _ = self.signal(c, libc::SIGKILL).await;
            Self::wait_stopped(c, Some(Duration::from_secs(30))).await;
        }
        // Not saved: the directory goes in one rename below, so a crash before it leaves the
        // container as it was recorded, and one after leaves nothing to finish.
        let r = self.update_unsaved(c, |r| {
            r.state.status = Status::Removing;
            r.state.restart_pending = false;
        });
        let this = self.clone();
        let id = c.id.clone();
        let trashed = tokio::task::spawn_blocking(move || {
            this.unmount_rootfs(&id);
            this.runtime.cleanup(&id);
            let dir = this.container_dir(&id);
            match crate::util::tree::move_to_trash(&dir, &this.trash_dir()) {
                Ok(moved) => Some(moved),
                Err(e) => {
                    tracing::debug!("move {} to the trash: {e}", dir.display());
                    // The record first: a crash half-way leaves no record pointing at
                    // missing files.
                    let _ = std::fs::remove_file(Record::file(&dir));
                    crate::util::tree::remove_all(&dir);
                    None
                }
            }
        })
        .await
        .map_err(|e| ContainerError::internal(format!("remove task: {e}")))?;
        if let Some(moved) = trashed {
            // The files (a large writable layer may hold many) go after the answer.
            tokio::task::spawn_blocking(move || crate::util::tree::remove_all(&moved));
        }
        match self.containers.write() {
            Ok(mut m) => m.remove(&c.id),
            Err(p) => p.into_inner().remove(&c.id),
        };
        {
            let mut names_map = lock(&self.names);
            if names_map.get(&r.name) == Some(&c.id) {
                names_map.remove(&r.name);
            }
        }
        *lock(&c._lease) = None;
        self.detach_volumes(&c.id, r.mount_points.as_deref().unwrap_or(&[]), volumes);
        self.drop_execs(&c.id);
        for (_, _, _, tx) in std::mem::take(&mut *lock(&c.pending_attach)) {
            let _ = tx.send(None);
        }
        c.snapshot.send_modify(|s| s.removed = true);
        self.publish(&r, "destroy");
        Ok(())
    }
}
