//! Live restore at berthd's start: load every record, reattach to running supervisors, record
//! exits that happened meanwhile and clean up after supervisors that died.

use std::sync::Arc;

use futures_util::StreamExt;

use super::manager::{lock, Container, ContainerManager};
use super::record::{Record, Status};
use crate::runtime::host;

/// How many supervisors restore talks to at once.
const REATTACH_AT_ONCE: usize = 64;

impl ContainerManager {
    /// Load every container from disk and reattach to the running ones.
    pub async fn restore(self: &Arc<Self>) {
        // What removals before a crash or a restart left to delete.
        let trash = self.trash_dir();
        tokio::task::spawn_blocking(move || crate::util::tree::empty(&trash));
        let dir = self.cfg.data_root.join("containers");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(_) => return,
        };
        let mut loaded = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if !path.is_dir() || e.file_name() == super::manager::TRASH {
                continue;
            }
            // Records being replaced when berthd died (the old one is whole).
            if let Err(err) = crate::util::fs::remove_temp_files(&path) {
                tracing::warn!("clean {}: {err}", path.display());
            }
            match Record::load(&path) {
                Ok(r) => loaded.push(r),
                Err(err) => {
                    tracing::warn!("skip container {}: {err}", path.display());
                    // A container whose record was never written (crash during create).
                    if !Record::file(&path).exists() {
                        crate::util::tree::remove_all(&path);
                    }
                }
            }
        }
        // Volume users whose run is not recorded as running (it ended while berthd was down
        // and was restarted or removed, or its record is gone) are forgotten first; the runs
        // that ended meanwhile unmount theirs when their exit is recorded below.
        let running: std::collections::HashSet<String> = loaded
            .iter()
            .filter(|r| r.state.status.is_running())
            .map(|r| r.id.clone())
            .collect();
        self.volumes.retain_active(&running);
        // Before any restart is spawned below: endpoints, ports and proxies of runs that ended
        // meanwhile go (a restarting container joins afresh), running containers on user
        // networks get their DNS server back, and namespace files of ended runs are removed.
        let netns_of_running: std::collections::HashMap<String, std::path::PathBuf> = loaded
            .iter()
            .filter(|r| r.state.status.is_running() || r.state.status == Status::Paused)
            .map(|r| (r.id.clone(), self.netns_file(&r.id)))
            .collect();
        self.network.retain(&netns_of_running).await;
        // A `network connect` cut by the kill between the endpoint's creation and the
        // container's record: the client never got an answer, so the endpoint goes (its
        // veth with it) rather than appearing in the container's networks unasked.
        for r in loaded
            .iter()
            .filter(|r| netns_of_running.contains_key(&r.id))
        {
            for a in self.network.attached(&r.id) {
                if !r.networks.contains_key(&a.network_name) {
                    tracing::info!(
                        "container {}: drop the endpoint on {} its record does not list",
                        r.id,
                        a.network_name
                    );
                    if let Err(e) = self.network.disconnect(&r.id, &a.network_id).await {
                        tracing::warn!("container {}: {e}", r.id);
                    }
                }
            }
        }
        if let Some(dir) = self.netns_file("x").parent() {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if !netns_of_running.contains_key(&id) {
                    let _ = crate::network::netns::remove(&e.path());
                }
            }
        }
        // Reattaching is two round trips to each supervisor: many at once, not one by one.
        let mut reattach = Vec::new();
        for r in loaded {
            let c = self.new_container(r.clone());
            self.insert(c.clone());
            // The volume store keeps which runs have a volume mounted; which containers
            // refer to it is known from the records.
            for p in r.mount_points.iter().flatten().filter(|p| p.is_volume()) {
                if let Err(e) = self.volumes.reference(&p.name, &r.id) {
                    tracing::warn!("container {}: volume {}: {e}", r.id, p.name);
                }
            }
            match r.state.status {
                Status::Running | Status::Paused => reattach.push(self.reattach(c)),
                Status::Restarting if r.state.manually_stopped => {
                    let _ = self.update(&c, |r| {
                        r.state.status = Status::Exited;
                        r.state.restart_pending = false;
                    });
                    self.reap_unstarted(&r.id).await;
                }
                Status::Restarting => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let _op = c.op.lock().await;
                        let _ = this.update(&c, |r| r.restart_count += 1);
                        if let Err(e) = this.start_locked(&c).await {
                            tracing::warn!("restart {}: {e}", c.id);
                        }
                    });
                }
                Status::Removing => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let _op = c.op.lock().await;
                        let _ = this.update(&c, |r| r.state.status = Status::Dead);
                        let _ = this.remove_locked(&c, true, false).await;
                    });
                }
                _ => {
                    self.reap_unstarted(&r.id).await;
                    // An auto-remove container that is not running goes, as dockerd's
                    // `restore` removes it: one that ended just before berthd did, or one
                    // created and never started (its `docker run --rm` client went with the
                    // daemon).
                    if r.host_config.auto_remove == Some(true) {
                        self.spawn_auto_remove(c);
                    }
                }
            }
        }
        futures_util::stream::iter(reattach)
            .buffer_unordered(REATTACH_AT_ONCE)
            .collect::<Vec<()>>()
            .await;
    }

    /// A container recorded as not running may still have a supervisor: berthd died between
    /// launching it and recording the start. End it (its init never ran the command) and clean
    /// up after it.
    pub(super) async fn reap_unstarted(&self, id: &str) {
        self.runtime.reap_unstarted(id).await;
        if host::is_mounted(&self.rootfs(id)) {
            self.unmount_rootfs(id);
        }
    }

    pub(super) async fn reattach(self: &Arc<Self>, c: Arc<Container>) {
        match self.runtime.watch(&c.id).await {
            Ok(w) => {
                let generation = {
                    let mut g = lock(&c.generation);
                    *g += 1;
                    *g
                };
                if let Some(st) = self.runtime.state(&c.id).await {
                    let mut paused = st.paused;
                    // A commit that paused the container did not get to unpause it.
                    if c.record().state.paused_for_commit {
                        if paused {
                            match self.runtime.resume(&c.id).await {
                                Ok(()) => {
                                    paused = false;
                                    tracing::info!(
                                        "container {}: unpaused (a commit was interrupted)",
                                        c.id
                                    );
                                }
                                Err(e) => tracing::warn!("container {}: unpause: {e}", c.id),
                            }
                        }
                        let _ = self.update(&c, |r| r.state.paused_for_commit = false);
                    }
                    if paused != (c.status() == Status::Paused) {
                        let _ = self.update(&c, |r| {
                            r.state.status = if paused {
                                Status::Paused
                            } else {
                                Status::Running
                            };
                        });
                    }
                }
                tracing::info!("reattached to container {}", c.id);
                self.spawn_watcher(c.clone(), w, generation);
                self.health_init(&c);
            }
            Err(_) => {
                // The supervisor is gone: it recorded the exit, or it died with the container.
                if c.record().state.paused_for_commit {
                    let _ = self.update(&c, |r| r.state.paused_for_commit = false);
                }
                let why = "the container's supervisor exited while berthd was down";
                let status = self.runtime.exit_of_gone(&c.id, why).await;
                self.on_exit(&c, status).await;
            }
        }
    }
}
