//! Read-side operations of the manager: inspect, list, logs, changes, export, prune.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bollard_stubs::models::{ContainerPruneResponse, ContainerSummary, FilesystemChange};
use serde_json::Value;
use tokio::sync::mpsc;

use super::inspect::{inspect, rw_size, InspectExtras, StatusBase};
use super::list::{self, ListOptions};
pub use super::logs::LogsOptions;
use super::manager::ContainerManager;
use super::record::Status;
use super::ContainerError;
use crate::filters::Filters;
use crate::util::io::{ByteReceiver, ChannelWriter};

impl ContainerManager {
    /// `GET /containers/{id}/json`.
    pub async fn inspect(
        self: &Arc<Self>,
        name: &str,
        size: bool,
    ) -> Result<Value, ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let lower_dirs = r
                .chain_id()
                .as_ref()
                .and_then(|ch| this_lowers(&this, ch))
                .unwrap_or_default();
            let layer = this.upper_dir(&r.id);
            let base = layer.parent().map(Path::to_path_buf).unwrap_or_default();
            let (size_rw, size_root_fs) = if size {
                let rw = rw_size(&layer);
                let img: i64 = r
                    .chain
                    .iter()
                    .filter_map(|ch| this.image_layer_size(ch))
                    .sum();
                (Some(rw), Some(rw + img))
            } else {
                (None, None)
            };
            let net_mode = r.host_config.network_mode.clone().unwrap_or_default();
            let sandbox_key = if r.state.status.is_running() && net_mode != "host" {
                this.sandbox_key(&r.id)
            } else {
                String::new()
            };
            let (networks, ports) = this.network_view(&r);
            let x = InspectExtras {
                networks,
                ports,
                upper_dir: layer.display().to_string(),
                merged_dir: base.join("merged").display().to_string(),
                work_dir: base.join("work").display().to_string(),
                lower_dirs,
                sandbox_key,
                size_rw,
                size_root_fs,
            };
            let mut v = inspect(&r, &x);
            // dockerd's view of its link index (`/<child>:/<name>/<alias>`), not the stored form.
            if let Some(h) = v.get_mut("HostConfig").and_then(|h| h.as_object_mut()) {
                h.insert("Links".to_string(), serde_json::json!(this.links_view(&r)));
            }
            let ids = this.exec_ids(&r.id);
            if !ids.is_empty() {
                v["ExecIDs"] = serde_json::json!(ids);
            }
            v
        })
        .await
        .map_err(|e| ContainerError::internal(format!("inspect task: {e}")))
    }

    /// Which containers `GET /containers/json` shows, newest first, and what deciding takes.
    fn list_plan(&self, opts: &ListOptions) -> Result<ListPlan, ContainerError> {
        let f = &opts.filters;
        list::validate(f)?;
        // Newest first, as dockerd lists them.
        let mut containers = self.list_all();
        containers.sort_unstable_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        // Read before any entry is built: an entry cached under it was built from these
        // references or newer ones.
        let refs = self.image_service().store().refs_generation();
        // moby's `ancestor`: the image and every image built on it (its children by parent
        // link, recursively).
        let mut ancestors = Vec::new();
        for a in f.get("ancestor") {
            if let Ok(img) = self.image_service().get_image(a) {
                let mut todo = vec![img.id];
                while let Some(id) = todo.pop() {
                    if ancestors.contains(&id) {
                        continue;
                    }
                    todo.extend(
                        self.image_service()
                            .store()
                            .children(&id)
                            .into_iter()
                            .map(|c| c.id),
                    );
                    ancestors.push(id);
                }
            }
        }
        let created_of =
            |name: &str| -> Result<i128, ContainerError> { Ok(self.get(name)?.created_at) };
        let before = f.get("before").next().map(created_of).transpose()?;
        let since = f.get("since").next().map(created_of).transpose()?;
        let all = opts.all || opts.limit.is_some() || before.is_some() || since.is_some();
        // Only containers with links give others names (most have none: no pass over the
        // records for them).
        let link_names = if containers.iter().any(|c| c.has_links) {
            self.link_names()
        } else {
            Default::default()
        };
        Ok(ListPlan {
            containers,
            refs,
            ancestors,
            before,
            since,
            all,
            link_names,
            now: SystemTime::now(),
        })
    }

    /// A container's whole summary as `GET /containers/json` shows it; `None` when the
    /// `publish` filter leaves it out.
    fn full_summary(
        &self,
        r: &super::record::Record,
        plan: &ListPlan,
        opts: &ListOptions,
    ) -> Option<ContainerSummary> {
        let f = &opts.filters;
        let mut s = list::summary(r, plan.now, opts.variant);
        s.image = Some(self.image_shown(r));
        if let Some(more) = plan.link_names.get(&r.id) {
            // dockerd's names of a container, sorted: its own and its link names.
            let names = s.names.get_or_insert_with(Vec::new);
            names.extend(more.iter().cloned());
            names.sort();
        }
        let ports = self.port_summary(r);
        if f.contains("publish") && !f.get("publish").any(|p| port_filter(p, &ports, true)) {
            return None;
        }
        s.ports = Some(ports);
        let (nets, _) = self.network_view(r);
        if !nets.is_empty() {
            s.network_settings = Some(bollard_stubs::models::ContainerSummaryNetworkSettings {
                networks: Some(nets),
            });
        }
        Some(s)
    }

    /// `docker ps`'s `Image`: the reference the container was created with while it still
    /// names the container's image, else the image's ID (moby's `refreshImage`: an image
    /// rebuilt or untagged under that name).
    fn image_shown(&self, r: &super::record::Record) -> String {
        let given = r.config.image.as_deref().unwrap_or("");
        if given.is_empty() || given == r.image {
            return r.image.clone();
        }
        match self.image_service().get_image(given) {
            Ok(img) if img.id == r.image => given.to_string(),
            _ => r.image.clone(),
        }
    }

    fn add_sizes(&self, s: &mut ContainerSummary, id: &str, chain: &[String]) {
        let rw = rw_size(&self.upper_dir(id));
        let img: i64 = chain
            .iter()
            .filter_map(|ch| self.image_layer_size(ch))
            .sum();
        // moby's `container.Summary` has both as `int64` with `omitempty`: a zero is left out
        // (inspect's are pointers and show it).
        s.size_rw = (rw != 0).then_some(rw);
        s.size_root_fs = (rw + img != 0).then_some(rw + img);
    }

    /// `GET /containers/json` as summaries (`/system/df`).
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<ContainerSummary>, ContainerError> {
        let plan = self.list_plan(opts)?;
        let mut out = Vec::new();
        for c in &plan.containers {
            let picked = c.with_record(|r| {
                if !plan.shows(c, r, &opts.filters) {
                    return None;
                }
                self.full_summary(r, &plan, opts)
                    .map(|s| (s, r.id.clone(), r.chain.clone()))
            });
            let Some((mut s, id, chain)) = picked else {
                continue;
            };
            if opts.size {
                self.add_sizes(&mut s, &id, &chain);
            }
            out.push(s);
            if opts.limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /containers/json`, encoded: each entry from its record's cached [`list::Fragment`]
    /// (rebuilt only when the record's generation moved) plus its `Status` of now. Entries
    /// with sizes or legacy link names are encoded whole.
    pub fn list_json(&self, opts: &ListOptions) -> Result<Vec<u8>, ContainerError> {
        let plan = self.list_plan(opts)?;
        let f = &opts.filters;
        let variant = opts.variant.index();
        let mut out = Vec::with_capacity(64 + plan.containers.len() * 1024);
        let mut status = String::new();
        out.push(b'[');
        let mut n = 0usize;
        for c in &plan.containers {
            let mut rd = c.record.read();
            if !plan.shows(c, &rd, f) {
                continue;
            }
            if opts.size || plan.link_names.contains_key(&rd.id) {
                let Some(mut s) = self.full_summary(&rd, &plan, opts) else {
                    continue;
                };
                let (id, chain) = (rd.id.clone(), rd.chain.clone());
                drop(rd);
                if opts.size {
                    self.add_sizes(&mut s, &id, &chain);
                }
                if n > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut out, &s).map_err(|e| {
                    ContainerError::internal(format!("encode container summary: {e}"))
                })?;
            } else {
                if f.contains("publish") {
                    let ports = self.port_summary(&rd);
                    if !f.get("publish").any(|p| port_filter(p, &ports, true)) {
                        continue;
                    }
                }
                let frag = match rd.cached_summary(variant, plan.refs) {
                    Some(frag) => frag,
                    None => {
                        let Some(mut s) = self.full_summary(&rd, &plan, opts) else {
                            continue;
                        };
                        s.status = None;
                        let frag = Arc::new(list::Fragment::new(s, StatusBase::of(&rd))?);
                        rd.store_summary(variant, plan.refs, frag.clone());
                        frag
                    }
                };
                drop(rd);
                if n > 0 {
                    out.push(b',');
                }
                frag.write(&mut out, plan.now, &mut status);
            }
            n += 1;
            if opts.limit.is_some_and(|l| n >= l) {
                break;
            }
        }
        out.extend_from_slice(b"]\n");
        Ok(out)
    }

    /// `POST /containers/prune`: remove stopped containers (filters `until`, `label`).
    pub async fn prune(
        self: &Arc<Self>,
        f: &Filters,
    ) -> Result<ContainerPruneResponse, ContainerError> {
        f.validate(&["until", "label", "label!"])
            .map_err(|e| ContainerError::invalid(e.to_string()))?;
        let now = SystemTime::now();
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        for c in self.list_all() {
            let r = c.record();
            if !matches!(
                r.state.status,
                Status::Exited | Status::Created | Status::Dead
            ) {
                continue;
            }
            let mut keep = false;
            for u in f.get("until") {
                if !list::created_before(&r, u, now)? {
                    keep = true;
                }
            }
            let labels = r.config.labels.clone().unwrap_or_default();
            if f.contains("label") && !f.match_kv_list("label", &labels) {
                keep = true;
            }
            if f.contains("label!") && f.match_kv_list("label!", &labels) {
                keep = true;
            }
            if keep {
                continue;
            }
            let size = rw_size(&self.upper_dir(&r.id));
            if self.remove(&r.id, false, false).await.is_ok() {
                deleted.push(r.id.clone());
                reclaimed += size;
            }
        }
        self.events_bus().publish(
            crate::events::Event::new("container", "prune", "")
                .attribute("reclaimed", reclaimed.to_string()),
        );
        Ok(ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        })
    }

    /// `GET /containers/{id}/changes`: what the writable layer adds, changes and deletes.
    pub async fn changes(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Vec<FilesystemChange>, ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let upper = self.upper_dir(&r.id);
        let lowers: Vec<PathBuf> = match r.chain_id() {
            Some(ch) => self.image_service().store().lower_dirs(ch)?,
            None => Vec::new(),
        };
        let placeholders = super::commit::placeholders(&r);
        tokio::task::spawn_blocking(move || diff(&upper, &lowers, &placeholders))
            .await
            .map_err(|e| ContainerError::internal(format!("changes task: {e}")))?
    }

    /// `GET /containers/{id}/export`: a tar of the container's filesystem.
    pub async fn export(self: &Arc<Self>, name: &str) -> Result<ByteReceiver, ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let this = self.clone();
        let mounted_here = !crate::runtime::host::is_mounted(&self.rootfs(&r.id));
        if mounted_here {
            let this = this.clone();
            let r = r.clone();
            tokio::task::spawn_blocking(move || this.mount_for_export(&r))
                .await
                .map_err(|e| ContainerError::internal(format!("export task: {e}")))??;
        }
        let (tx, rx) = mpsc::channel(16);
        let root = self.rootfs(&r.id);
        let event = this.event_for(&r, "export");
        let userns = self.userns_of(&r);
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter::new(tx);
            let result = (|| -> std::io::Result<()> {
                // A remapped rootfs mounted for its run shows the host's ids (its root
                // directory is the remapped root's): the archive gets the container's, as a
                // stopped container's does and as dockerd's export does.
                use std::os::unix::fs::MetadataExt;
                let shift = userns.filter(|m| {
                    std::fs::symlink_metadata(&root).is_ok_and(|md| Some(md.uid()) == m.host_uid(0))
                });
                let mut b = tar::Builder::new(&mut out);
                b.follow_symlinks(false);
                append_tree(&mut b, &root, Path::new(""), shift.as_ref())?;
                b.finish()?;
                drop(b);
                std::io::Write::flush(&mut out)
            })();
            if mounted_here && !this.status_of(&r.id).is_some_and(|s| s.is_running()) {
                let _ = crate::runtime::host::unmount(&root);
            }
            match result {
                Ok(()) => this.events_bus().publish(event),
                Err(e) => out.fail(e),
            }
        });
        Ok(rx)
    }
}

fn this_lowers(m: &ContainerManager, chain: &str) -> Option<Vec<String>> {
    m.image_service()
        .store()
        .lower_dirs(chain)
        .ok()
        .map(|v| v.iter().map(|p| p.display().to_string()).collect())
}

/// Append `dir` (relative name `rel`) and everything below it, without following links, with
/// the files' own ids, or the container's ids of a remapped rootfs's host ids (`shift`).
fn append_tree<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    shift: Option<&crate::runtime::IdMap>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let full = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&full)?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = rel.join(e.file_name());
        let path = e.path();
        let md = path.symlink_metadata()?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
        if let Some(m) = shift {
            let (uid, gid) = (md.uid(), md.gid());
            h.set_uid(u64::from(m.container_uid(uid).unwrap_or(uid)));
            h.set_gid(u64::from(m.container_gid(gid).unwrap_or(gid)));
        }
        let ft = md.file_type();
        if ft.is_symlink() {
            b.append_link(&mut h, &name, std::fs::read_link(&path)?)?;
        } else if ft.is_file() {
            b.append_data(&mut h, &name, std::fs::File::open(&path)?)?;
        } else if ft.is_socket() {
            // Not archived, as moby's archive skips them.
            continue;
        } else {
            if ft.is_char_device() || ft.is_block_device() {
                h.set_device_major(nix::sys::stat::major(md.rdev()) as u32)?;
                h.set_device_minor(nix::sys::stat::minor(md.rdev()) as u32)?;
            }
            // Directories, devices and fifos: the header alone.
            b.append_data(&mut h, &name, std::io::empty())?;
        }
        if ft.is_dir() {
            append_tree(b, root, &name, shift)?;
        }
    }
    Ok(())
}

/// The writable layer's entries (without the runtime's placeholders): whiteouts are
/// deletions, entries that exist below are changes, the rest additions (moby's
/// `overlayChanges`). Kinds: 0 modified, 1 added, 2 deleted.
fn diff(
    upper: &Path,
    lowers: &[PathBuf],
    placeholders: &std::collections::HashSet<PathBuf>,
) -> Result<Vec<FilesystemChange>, ContainerError> {
    use crate::image::commit::{upper_entries, EntryKind};
    use bollard_stubs::models::ChangeType;
    let entries = upper_entries(upper, lowers, placeholders)
        .map_err(|e| ContainerError::internal(format!("read the container's layer: {e}")))?;
    let in_lower = |rel: &Path| {
        lowers
            .iter()
            .any(|l| l.join(rel).symlink_metadata().is_ok())
    };
    let mut out: Vec<FilesystemChange> = entries
        .iter()
        .map(|e| FilesystemChange {
            path: format!("/{}", e.rel.display()),
            kind: match e.kind {
                EntryKind::Whiteout => ChangeType::_2,
                _ if in_lower(&e.rel) => ChangeType::_0,
                _ => ChangeType::_1,
            },
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The `publish` filter of `docker ps`: `80`, `80/tcp`, `8000-8080/udp` against the public
/// ports of a container.
fn port_filter(f: &str, ports: &[bollard_stubs::models::PortSummary], public: bool) -> bool {
    let (range, proto) = match f.split_once('/') {
        Some((r, p)) => (r, Some(p)),
        None => (f, None),
    };
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
        None => {
            let p: u16 = range.parse().unwrap_or(0);
            (p, p)
        }
    };
    ports.iter().any(|p| {
        let port = if public {
            p.public_port
        } else {
            Some(p.private_port)
        };
        port.is_some_and(|n| n >= lo && n <= hi)
            && proto.is_none_or(|pr| p.typ.map(|t| t.to_string()).as_deref() == Some(pr))
    })
}

/// What `GET /containers/json` decided before looking at each container.
struct ListPlan {
    /// Newest first.
    containers: Vec<Arc<super::manager::Container>>,
    /// The image store's reference generation when the plan was made.
    refs: u64,
    ancestors: Vec<String>,
    /// Creation times (`Container::created_at`) of the `before` and `since` containers.
    before: Option<i128>,
    since: Option<i128>,
    all: bool,
    link_names: std::collections::HashMap<String, Vec<String>>,
    now: SystemTime,
}

impl ListPlan {
    /// Whether a container is listed (all filters but `publish`).
    fn shows(&self, c: &super::manager::Container, r: &super::record::Record, f: &Filters) -> bool {
        if !(self.all || r.state.status.is_running() || r.state.status == Status::Restarting) {
            return false;
        }
        if self.before.is_some_and(|b| c.created_at >= b) {
            return false;
        }
        if self.since.is_some_and(|s| c.created_at <= s) {
            return false;
        }
        list::matches(r, f, &self.ancestors)
    }
}
