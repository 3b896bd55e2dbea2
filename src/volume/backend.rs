//! [`VolumeBackend`] over the [`VolumeService`]: what the volume router calls.
//!
//! Creating, removing and pruning write (and fsync) under the data root or unmount: they run on
//! the blocking pool here, so that handlers stay thin and the service stays synchronous.

use std::sync::Arc;

use async_trait::async_trait;
use bollard_stubs::models::{Volume, VolumePruneResponse};

use super::{CreateOptions, VolumeError, VolumeService};
use crate::api::VolumeBackend;
use crate::filters::Filters;

async fn blocking<T, F>(what: &str, op: F) -> Result<T, VolumeError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, VolumeError> + Send + 'static,
{
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| VolumeError::internal(format!("{what} task: {e}")))?
}

#[async_trait]
impl VolumeBackend for Arc<VolumeService> {
    fn volume_list(&self, filters: Filters) -> Result<Vec<Volume>, VolumeError> {
        self.list(&filters)
    }

    fn volume_inspect(&self, name: &str) -> Result<Volume, VolumeError> {
        self.get(name)
    }

    async fn volume_create(&self, opts: CreateOptions) -> Result<Volume, VolumeError> {
        let s = self.clone();
        blocking("volume create", move || s.create(opts)).await
    }

    async fn volume_remove(&self, name: String, force: bool) -> Result<(), VolumeError> {
        let s = self.clone();
        blocking("volume remove", move || s.remove(&name, force)).await
    }

    async fn volume_prune(
        &self,
        filters: Filters,
        all_by_default: bool,
    ) -> Result<VolumePruneResponse, VolumeError> {
        let s = self.clone();
        blocking("volume prune", move || s.prune(&filters, all_by_default)).await
    }
}
