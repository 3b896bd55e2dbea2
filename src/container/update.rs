//! Changing a container: `rename`, `update` (resources applied live) and `top`.

use std::sync::Arc;

use super::create::{check_blkio, verify_host_config};
use super::manager::{lock, ContainerManager};
use super::names;
use super::record::Record;
use super::ContainerError;
use crate::errors::Kinded;
use crate::runtime::spec;

impl ContainerManager {
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        // The container's lifecycle lock: a start or stop does not race the endpoints' names.
        let _op = c.op.lock().await;
        let new_bare = new_name.strip_prefix('/').unwrap_or(new_name).to_string();
        if new_bare.is_empty() {
            return Err(ContainerError::invalid(
                "Neither old nor new names may be empty",
            ));
        }
        // moby's `reserveName` failures, wrapped as its rename wraps them.
        if !names::valid(&new_bare) {
            return Err(ContainerError::invalid(format!(
                "Error when allocating new name: Invalid container name (/{new_bare}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = c.record().name;
        if old == new_bare {
            return Err(ContainerError::invalid(
                "Renaming a container with the same name as its current name",
            ));
        }
        {
            let mut names_map = lock(&self.names);
            if let Some(other) = names_map.get(&new_bare) {
                return Err(ContainerError::conflict(format!(
                    "Error when allocating new name: Conflict. The container name \"/{new_bare}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            names_map.insert(new_bare.clone(), c.id.clone());
            names_map.remove(&old);
        }
        let r = self.update(&c, |r| r.name = new_bare.clone())?;
        // As moby's `ContainerRename` for a running container: the endpoints are renamed at
        // once, so the embedded DNS answers the new name (and `DNSNames` shows it).
        if r.state.status.is_running() {
            let hostname = r.config.hostname.clone().unwrap_or_default();
            self.network.rename(&r.id, &r.name, &hostname).await;
            self.network_changed(&r.id);
        }
        self.events.publish(
            self.event(&r, "rename")
                .attribute("oldName", format!("/{old}")),
        );
        Ok(())
    }

    /// `POST /containers/{id}/update`: the new host config is stored and, for a running
    /// container, its resources are applied to the cgroup at once.
    pub async fn update_config(
        self: &Arc<Self>,
        name: &str,
        upd: bollard_stubs::models::ContainerUpdateBody,
    ) -> Result<Vec<String>, ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        let mut h = c.record().host_config;
        super::inspect::apply_update(&mut h, &upd).map_err(|e| {
            ContainerError::new(
                e.kind(),
                format!("Cannot update container {}: {}", c.id, e.message()),
            )
        })?;
        let mut check = h.clone();
        verify_host_config(&mut check, self.cfg.ncpu, &self.cfg.default_log)?;
        super::create::check_cpuset(&h, self.runtime.cgroups())?;
        let warnings = check_blkio(&mut h, self.runtime.cgroups())?;
        let r = c.record();
        if r.state.status.is_running() {
            let mut rec = r.clone();
            rec.host_config = h.clone();
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.apply_resources(&rec))
                .await
                .map_err(|e| ContainerError::internal(format!("update task: {e}")))??;
        }
        let r = self.update(&c, |r| r.host_config = h)?;
        self.publish(&r, "update");
        Ok(warnings)
    }

    pub(super) fn apply_resources(&self, r: &Record) -> Result<(), ContainerError> {
        // Only the resources are used: the namespaces do not matter here.
        let inputs = self.spec_inputs(r);
        let opts = inputs.options(r, [0; 4].map(|_| spec::Namespace::Host), None);
        Ok(self.runtime.update_resources(&opts)?)
    }

    /// `GET /containers/{id}/top`: `ps` on the host, limited to the container's processes.
    pub async fn top(
        &self,
        name: &str,
        ps_args: Option<String>,
    ) -> Result<(Vec<String>, Vec<Vec<String>>), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        if !r.state.status.is_running() {
            return Err(ContainerError::conflict(format!(
                "Container {} is not running",
                r.id
            )));
        }
        let pids = self.runtime.pids(&self.cgroup_path(&r));
        let args = ps_args
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "-ef".to_string());
        let out = tokio::process::Command::new("ps")
            .args(args.split_whitespace())
            .output()
            .await
            .map_err(|e| ContainerError::internal(format!("run ps: {e}")))?;
        if !out.status.success() {
            // moby: the first line of ps's stderr says why (the rest is its usage text).
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().next().unwrap_or("").trim();
            return Err(ContainerError::internal(if first.is_empty() {
                format!("ps: {}", out.status)
            } else {
                first.to_string()
            }));
        }
        let procs = super::inspect::parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)?;
        self.publish(&r, "top");
        Ok(procs)
    }
}
