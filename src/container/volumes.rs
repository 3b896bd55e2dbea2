//! A container's volumes: at create, `VolumesFrom` and the image's `VOLUME`s join the user's
//! mount points, anonymous volumes are created and named, named ones created on demand, and
//! the container becomes a user of each (the volume store's "in use"), and each that is still
//! empty gets the image's content at its destination (copy-up, unless `nocopy`; moby's
//! `populateVolumes`, once, at create); at start each is mounted (the driver's options at its
//! first user); at the end of a run they are unmounted; `rm -v` and `--rm` remove the
//! anonymous ones.

use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

use bollard_stubs::models::HostConfig;

use super::manager::ContainerManager;
use super::mounts::{self, MountPoint};
use super::record::Record;
use super::ContainerError;
use crate::errors::{ErrorKind, Kinded};
use crate::util::inroot;
use crate::volume::CreateOptions;

/// The label dockerd 23+ puts on anonymous volumes.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

impl ContainerManager {
    /// `VolumesFrom`: the mount points of other containers that no user mount covers, with
    /// `:ro`/`:rw` applied.
    pub(super) fn add_volumes_from(
        &self,
        points: &mut Vec<MountPoint>,
        hc: &HostConfig,
    ) -> Result<(), ContainerError> {
        for spec in hc.volumes_from.iter().flatten() {
            let (other, rw) = mounts::parse_volumes_from(spec)?;
            // A 400 as dockerd's, never a 404: the CLI takes any 404 from create for a
            // missing image and pulls.
            let c = self.get(other).map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    ContainerError::invalid(e.message().to_string())
                } else {
                    e
                }
            })?;
            let theirs =
                c.with_record(|r| mounts::of_record(r.mount_points.as_deref(), &r.host_config))?;
            for mut p in theirs {
                if points.iter().any(|q| q.destination == p.destination) {
                    continue;
                }
                if let Some(rw) = rw {
                    p.rw = rw;
                    p.mode = if rw { "rw" } else { "ro" }.to_string();
                }
                // The volume exists and holds data already: nothing to copy up.
                p.copy_data = false;
                points.push(p);
            }
        }
        Ok(())
    }

    /// Create (or find) every volume of `points`, name the anonymous ones, and make container
    /// `id` a user of each. On failure nothing is left referenced or created.
    pub(super) fn attach_volumes(
        &self,
        id: &str,
        points: &mut [MountPoint],
    ) -> Result<(), ContainerError> {
        let mut done: Vec<(String, bool)> = Vec::new();
        let result = (|| {
            for p in points.iter_mut().filter(|p| p.is_volume()) {
                let anonymous = p.name.is_empty();
                let mut labels: std::collections::HashMap<String, String> =
                    p.labels.clone().into_iter().collect();
                if anonymous {
                    labels.insert(ANONYMOUS_LABEL.to_string(), String::new());
                }
                let v = self.volumes.create(CreateOptions {
                    name: (!anonymous).then(|| p.name.clone()),
                    driver: Some(p.driver.clone()).filter(|d| !d.is_empty()),
                    driver_opts: p.driver_opts.clone().into_iter().collect(),
                    labels,
                })?;
                p.name = v.name.clone();
                p.source = v.mountpoint.clone();
                p.driver = v.driver.clone();
                self.volumes.reference(&p.name, id)?;
                done.push((p.name.clone(), anonymous));
            }
            Ok(())
        })();
        if result.is_err() {
            for (name, anonymous) in done {
                self.volumes.dereference(&name, id);
                if anonymous {
                    let _ = self.volumes.remove(&name, true);
                }
            }
        }
        result
    }

    /// The container goes: it stops using its volumes; with `remove_anonymous` (`rm -v`,
    /// `--rm`) its anonymous volumes go too.
    pub(super) fn detach_volumes(&self, id: &str, points: &[MountPoint], remove_anonymous: bool) {
        for p in points.iter().filter(|p| p.is_volume()) {
            self.volumes.dereference(&p.name, id);
            if remove_anonymous && self.is_anonymous(&p.name) {
                if let Err(e) = self.volumes.remove(&p.name, false) {
                    tracing::warn!("remove volume {} of {id}: {e}", p.name);
                }
            }
        }
    }

    fn is_anonymous(&self, name: &str) -> bool {
        self.volumes
            .get(name)
            .ok()
            .and_then(|v| v.labels.get(ANONYMOUS_LABEL).map(|_| ()))
            .is_some()
    }

    /// Blocking. moby's `populateVolumes`, at create: the image's content at each volume's
    /// destination is copied into the volume while it is empty, through the container's rootfs
    /// mounted for the while, and the mount point then asks for no more copies, so that a
    /// volume emptied by the container stays empty at the next start. A volume mounted at a
    /// subpath keeps its copy at start.
    pub(super) fn populate_volumes(&self, r: &mut Record) -> Result<(), ContainerError> {
        let wanted = |p: &MountPoint| p.is_volume() && p.copy_data && p.subpath.is_empty();
        if !r.mount_points.iter().flatten().any(wanted) {
            return Ok(());
        }
        // Most volumes sit where the image has nothing (`docker run -v data:/data`): then
        // there is nothing to copy and no rootfs to mount.
        let lowers = match r.chain_id() {
            Some(chain) => self.images.store().lower_dirs(chain)?,
            None => Vec::new(),
        };
        let in_image = r
            .mount_points
            .iter()
            .flatten()
            .filter(|p| wanted(p))
            .any(|p| may_exist_in(&lowers, &p.destination));
        if !in_image {
            for p in r.mount_points.iter_mut().flatten().filter(|p| wanted(p)) {
                p.copy_data = false;
            }
            return Ok(());
        }
        self.mount_rootfs(r)?;
        let rootfs = self.rootfs(&r.id);
        let mut result = Ok(());
        for p in r.mount_points.iter_mut().flatten().filter(|p| wanted(p)) {
            let path = match self.volumes.mount(&p.name, &r.id, &p.destination, true) {
                Ok(path) => path,
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            };
            let copied = if path.is_dir() {
                copy_up(&rootfs, &p.destination, &path)
            } else {
                Ok(())
            };
            self.volumes.unmount(&p.name, &r.id);
            if let Err(e) = copied {
                result = Err(ContainerError::internal(format!(
                    "copy {} of the image into volume {}: {e}",
                    p.destination, p.name
                )));
                break;
            }
            p.copy_data = false;
        }
        self.unmount_rootfs(&r.id);
        result
    }

    /// Blocking. Mount the container's volumes for a run (and copy the image's content into
    /// the empty ones a record still asks it for): the mount points with their sources for
    /// the spec.
    pub(super) fn mount_volumes(&self, r: &Record) -> Result<Vec<MountPoint>, ContainerError> {
        let mut list = r.spec_mounts()?.to_vec();
        let rootfs = self.rootfs(&r.id);
        let subpaths = self.runtime.subpath_mounts_dir(&r.id);
        // What a previous run may have left (berthd killed before its end was seen).
        crate::volume::subpath::unbind_all(&subpaths);
        let mut mounted = Vec::new();
        let result = (|| {
            for (i, p) in list.iter_mut().enumerate().filter(|(_, p)| p.is_volume()) {
                let mut path = self.volumes.mount(&p.name, &r.id, &p.destination, p.rw)?;
                mounted.push(p.name.clone());
                if !p.subpath.is_empty() {
                    let target = subpaths.join(i.to_string());
                    crate::volume::subpath::bind(&path, &p.subpath, &target)?;
                    path = target;
                }
                if p.copy_data && path.is_dir() {
                    copy_up(&rootfs, &p.destination, &path).map_err(|e| {
                        ContainerError::internal(format!(
                            "copy {} of the image into volume {}: {e}",
                            p.destination, p.name
                        ))
                    })?;
                }
                p.source = path.display().to_string();
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(list),
            Err(e) => {
                crate::volume::subpath::unbind_all(&subpaths);
                for name in mounted {
                    self.volumes.unmount(&name, &r.id);
                }
                Err(e)
            }
        }
    }

    /// A run ended: its volumes are unmounted (the driver's mount goes with its last user).
    pub(super) fn unmount_volumes(&self, r: &Record) {
        crate::volume::subpath::unbind_all(&self.runtime.subpath_mounts_dir(&r.id));
        for p in r.mount_points.iter().flatten().filter(|p| p.is_volume()) {
            self.volumes.unmount(&p.name, &r.id);
        }
    }
}

/// Whether `destination` may name something in the image whose layers are `lowers`: it
/// exists in a layer, or one of its parents is a symlink in one (resolved only in the mounted
/// rootfs). Whiteouts are not read: a path a later layer deleted still counts, which only
/// costs a mount.
fn may_exist_in(lowers: &[std::path::PathBuf], destination: &str) -> bool {
    let rel = Path::new(destination.trim_start_matches('/'));
    lowers.iter().any(|lower| {
        rel.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| match fs::symlink_metadata(lower.join(a)) {
                Ok(m) => a == rel || m.file_type().is_symlink(),
                Err(_) => false,
            })
    })
}

/// Copy-up (moby's `copyExistingContents`): while the volume is empty, the image's directory
/// at `destination` (resolved inside the rootfs: no symlink leads out) is copied into it with
/// owners, modes and links, and the volume's root takes the directory's owner and mode.
fn copy_up(rootfs: &Path, destination: &str, volume: &Path) -> std::io::Result<()> {
    if fs::read_dir(volume)?.next().is_some() {
        return Ok(());
    }
    let rel = destination.trim_start_matches('/');
    let root = fs::File::open(rootfs)?;
    let dir = match inroot::open_dir(&root, rel.as_bytes()) {
        Ok(d) => d,
        // Nothing (or not a directory) there in the image: nothing to copy.
        Err(_) => return Ok(()),
    };
    use std::os::fd::AsRawFd;
    let src = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    copy_tree(&src, volume)?;
    let meta = fs::metadata(&src)?;
    lchown(volume, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(volume, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    drop(dir);
    Ok(())
}

/// Copy the entries of `src` into the existing directory `dst`, never following links.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
        } else {
            // Devices, fifos and sockets are not copied (as dockerd's copy skips them).
            continue;
        }
        lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        if !ft.is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_in_the_image_is_found_in_its_layers() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        fs::create_dir_all(a.join("data/sub")).unwrap();
        fs::create_dir_all(b.join("etc")).unwrap();
        std::os::unix::fs::symlink("/srv", b.join("link")).unwrap();
        let lowers = vec![b, a];
        assert!(may_exist_in(&lowers, "/data"));
        assert!(may_exist_in(&lowers, "/data/sub"));
        assert!(may_exist_in(&lowers, "/link/below"));
        assert!(!may_exist_in(&lowers, "/nowhere"));
        assert!(!may_exist_in(&lowers, "/etc/nothing"));
        assert!(!may_exist_in(&[], "/data"));
    }
}
