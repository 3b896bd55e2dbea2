//! [`ContainerBackend`] over the [`ContainerManager`]: what the container router calls.
//!
//! State-changing operations run [`detached`], which needs an owned handle: the impl is on the
//! `Arc` the daemon holds.

use std::sync::Arc;
use std::time::Instant;

use super::archive::{PathStat, PutOptions};
use super::attach::{AttachOptions, AttachSession};
use super::exec::ExecSession;
use super::list::ListOptions;
use super::logs::LogsOptions;
use super::manager::WaitCondition;
use super::{ContainerError, ContainerManager};
use crate::api::{ContainerBackend, WaitFuture};
use crate::filters::Filters;
use crate::util::io::{BodyReceiver, ByteReceiver};

#[async_trait::async_trait]
impl ContainerBackend for Arc<ContainerManager> {
    async fn container_create(
        &self,
        name: Option<String>,
        platform: Option<String>,
        body: bollard_stubs::models::ContainerCreateBody,
        container_mac: Option<String>,
    ) -> Result<bollard_stubs::models::ContainerCreateResponse, ContainerError> {
        let t = Instant::now();
        let (id, warnings) = self.create(name, platform, body, container_mac).await?;
        self.observe("create", t);
        Ok(bollard_stubs::models::ContainerCreateResponse { id, warnings })
    }

    fn container_list_json(&self, opts: ListOptions) -> Result<Vec<u8>, ContainerError> {
        self.list_json(&opts)
    }

    async fn container_inspect(
        &self,
        name: String,
        size: bool,
    ) -> Result<serde_json::Value, ContainerError> {
        self.inspect(&name, size).await
    }

    async fn container_start(&self, name: String) -> Result<bool, ContainerError> {
        let m = self.clone();
        detached(async move {
            let t = Instant::now();
            let started = m.start(&name).await;
            if started.is_ok() {
                m.observe("start", t);
            }
            started
        })
        .await
    }

    async fn container_stop(
        &self,
        name: String,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<bool, ContainerError> {
        let m = self.clone();
        detached(async move { m.stop(&name, signal, timeout).await }).await
    }

    async fn container_restart(
        &self,
        name: String,
        signal: Option<String>,
        timeout: Option<i64>,
    ) -> Result<(), ContainerError> {
        let m = self.clone();
        detached(async move { m.restart(&name, signal, timeout).await }).await
    }

    async fn container_kill(
        &self,
        name: String,
        signal: Option<String>,
    ) -> Result<(), ContainerError> {
        let m = self.clone();
        detached(async move { m.kill(&name, signal).await }).await
    }

    fn container_wait(
        &self,
        name: String,
        condition: WaitCondition,
    ) -> Result<WaitFuture, ContainerError> {
        Ok(Box::pin(self.wait(&name, condition)?))
    }

    async fn container_remove(
        &self,
        name: String,
        force: bool,
        volumes: bool,
    ) -> Result<(), ContainerError> {
        let m = self.clone();
        detached(async move {
            let t = Instant::now();
            m.remove(&name, force, volumes).await?;
            m.observe("delete", t);
            Ok(())
        })
        .await
    }

    async fn container_remove_link(&self, name: String) -> Result<(), ContainerError> {
        let m = self.clone();
        detached(async move { m.remove_link(&name).await }).await
    }

    async fn container_pause(&self, name: String, pause: bool) -> Result<(), ContainerError> {
        let m = self.clone();
        detached(async move { m.pause(&name, pause).await }).await
    }

    async fn container_rename(&self, name: String, new_name: String) -> Result<(), ContainerError> {
        let m = self.clone();
        detached(async move { m.rename(&name, &new_name).await }).await
    }

    async fn container_update(
        &self,
        name: String,
        body: bollard_stubs::models::ContainerUpdateBody,
    ) -> Result<Vec<String>, ContainerError> {
        let m = self.clone();
        detached(async move { m.update_config(&name, body).await }).await
    }

    async fn container_top(
        &self,
        name: String,
        ps_args: Option<String>,
    ) -> Result<bollard_stubs::models::ContainerTopResponse, ContainerError> {
        let (titles, processes) = self.top(&name, ps_args).await?;
        Ok(bollard_stubs::models::ContainerTopResponse {
            titles: Some(titles),
            processes: Some(processes),
        })
    }

    async fn container_logs(
        &self,
        name: String,
        opts: LogsOptions,
    ) -> Result<(bool, ByteReceiver), ContainerError> {
        self.logs(&name, opts).await
    }

    async fn container_stats(
        &self,
        name: String,
        opts: super::stats::StatsOptions,
    ) -> Result<ByteReceiver, ContainerError> {
        self.stats(&name, opts).await
    }

    async fn container_commit(
        &self,
        name: String,
        opts: super::commit::CommitOptions,
    ) -> Result<String, ContainerError> {
        let m = self.clone();
        detached(async move {
            let t = Instant::now();
            let id = m.commit(&name, opts).await?;
            m.observe("commit", t);
            Ok(id)
        })
        .await
    }

    async fn container_changes(
        &self,
        name: String,
    ) -> Result<Vec<bollard_stubs::models::FilesystemChange>, ContainerError> {
        let t = Instant::now();
        let changes = self.changes(&name).await?;
        self.observe("changes", t);
        Ok(changes)
    }

    async fn container_export(&self, name: String) -> Result<ByteReceiver, ContainerError> {
        self.export(&name).await
    }

    async fn container_stat_path(
        &self,
        name: String,
        path: String,
    ) -> Result<PathStat, ContainerError> {
        self.archive_stat(&name, &path).await
    }

    async fn container_archive(
        &self,
        name: String,
        path: String,
    ) -> Result<(PathStat, ByteReceiver), ContainerError> {
        self.archive_get(&name, &path).await
    }

    async fn container_extract(
        &self,
        name: String,
        path: String,
        opts: PutOptions,
        body: BodyReceiver,
    ) -> Result<(), ContainerError> {
        let m = self.clone();
        detached(async move { m.archive_put(&name, &path, opts, body).await }).await
    }

    async fn container_attach(
        &self,
        name: String,
        opts: AttachOptions,
    ) -> Result<AttachSession, ContainerError> {
        self.attach(&name, opts).await
    }

    async fn container_prune(
        &self,
        filters: Filters,
    ) -> Result<bollard_stubs::models::ContainerPruneResponse, ContainerError> {
        self.prune(&filters).await
    }

    async fn container_resize(
        &self,
        name: String,
        height: u16,
        width: u16,
    ) -> Result<(), ContainerError> {
        self.resize(&name, height, width).await
    }

    fn exec_create(
        &self,
        name: String,
        config: bollard_stubs::models::ExecConfig,
    ) -> Result<String, ContainerError> {
        ContainerManager::exec_create(self, &name, config)
    }

    async fn exec_start(
        &self,
        id: String,
        tty: Option<bool>,
        console_size: Option<[u16; 2]>,
    ) -> Result<(), ContainerError> {
        let m = self.clone();
        // dockerd: no console size without the start request's `Tty`.
        let console_size = console_size.filter(|_| tty == Some(true));
        detached(async move { ContainerManager::exec_start(&m, &id, true, console_size).await })
            .await
            .map(drop)
    }

    fn exec_attach(
        &self,
        id: String,
        tty: Option<bool>,
        console_size: Option<[u16; 2]>,
    ) -> Result<ExecSession, ContainerError> {
        self.exec_session(&id, tty, console_size)
    }

    fn exec_inspect(
        &self,
        id: String,
    ) -> Result<bollard_stubs::models::ExecInspectResponse, ContainerError> {
        ContainerManager::exec_inspect(self, &id)
    }

    async fn exec_resize(&self, id: String, height: u16, width: u16) -> Result<(), ContainerError> {
        ContainerManager::exec_resize(self, &id, height, width).await
    }
}

/// Run a state-changing operation to its end even if the client goes away meanwhile (hyper
/// drops a handler's future when its connection closes): a half-done start or remove would
/// leave a container between states.
async fn detached<T, F>(op: F) -> Result<T, ContainerError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, ContainerError>> + Send + 'static,
{
    tokio::spawn(op)
        .await
        .map_err(|e| ContainerError::internal(format!("operation task: {e}")))?
}
