//! [`ImageBackend`] over the [`ImageService`]: what the image router calls.
//!
//! Blocking store writes (tag, delete, prune fsync `repositories.json`) run on the blocking pool
//! here, so that handlers stay thin and the service stays synchronous. Nothing imports this file:
//! the daemon hands an `Arc<ImageService>` to the API as an `Arc<dyn ImageBackend>`.

use async_trait::async_trait;
use bollard_stubs::models::{
    DistributionInspect, ImageDeleteResponseItem, ImageHistoryResponseItem, ImagePruneResponse,
    ImageSearchResponseItem, ImageSummary,
};

use super::archive::SaveItem;
use super::service::{ImportOptions, InspectData, ListOptions};
use super::{ImageError, ImageService};
use crate::api::ImageBackend;
use crate::filters::Filters;
use crate::registry::client::AuthConfig;
use crate::registry::RegistryError;
use crate::util::io::{BodyReceiver, ChannelWriter};
use crate::util::progress::Progress;

/// Run a blocking store operation off the async threads. `what` names it in a join error.
async fn blocking<T, F>(what: &str, op: F) -> Result<T, ImageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ImageError> + Send + 'static,
{
    tokio::task::spawn_blocking(op)
        .await
        .map_err(|e| ImageError::internal(format!("{what} task: {e}")))?
}

/// The service is shared with the container manager, so the router gets it behind the `Arc`
/// the daemon holds: the blocking calls need an owned handle.
#[async_trait]
impl ImageBackend for std::sync::Arc<ImageService> {
    fn image_list(&self, opts: ListOptions) -> Result<Vec<ImageSummary>, ImageError> {
        self.list(&opts)
    }

    fn image_inspect(&self, name: &str) -> Result<InspectData, ImageError> {
        self.inspect(name)
    }

    fn image_history(&self, name: &str) -> Result<Vec<ImageHistoryResponseItem>, ImageError> {
        self.history(name)
    }

    async fn image_tag(
        &self,
        name: String,
        repo: String,
        tag: Option<String>,
    ) -> Result<(), ImageError> {
        // Writes repositories.json with fsync: off the async threads.
        let images = self.clone();
        blocking("tag", move || {
            images.tag(&name, &repo, tag.as_deref()).map(|_| ())
        })
        .await
    }

    async fn image_delete(
        &self,
        name: String,
        force: bool,
        noprune: bool,
    ) -> Result<Vec<ImageDeleteResponseItem>, ImageError> {
        let images = self.clone();
        blocking("delete", move || images.delete(&name, force, noprune)).await
    }

    async fn image_prune(&self, filters: Filters) -> Result<ImagePruneResponse, ImageError> {
        let images = self.clone();
        blocking("prune", move || images.prune(&filters)).await
    }

    async fn image_import(
        &self,
        body: BodyReceiver,
        opts: ImportOptions,
        progress: Progress,
    ) -> Result<(), ImageError> {
        self.import(body, opts, progress).await.map(|_| ())
    }

    async fn image_import_url(
        &self,
        opts: ImportOptions,
        progress: Progress,
    ) -> Result<(), ImageError> {
        self.import_url(opts, progress).await.map(|_| ())
    }

    async fn image_load(
        &self,
        body: BodyReceiver,
        quiet: bool,
        progress: Progress,
    ) -> Result<(), ImageError> {
        self.load(body, quiet, progress).await
    }

    fn image_save_plan(&self, names: &[String]) -> Result<Vec<SaveItem>, ImageError> {
        self.plan_save(names)
    }

    fn image_save_write(
        &self,
        items: &[SaveItem],
        out: &mut ChannelWriter,
    ) -> Result<(), ImageError> {
        self.write_save(items, out)
    }

    async fn image_pull(
        &self,
        image: String,
        tag: Option<String>,
        platform: Option<String>,
        auth: AuthConfig,
        progress: Progress,
    ) -> Result<(), ImageError> {
        self.pull_request(&image, tag.as_deref(), platform.as_deref(), &auth, progress)
            .await
    }

    async fn image_push(
        &self,
        name: String,
        tag: Option<String>,
        auth: AuthConfig,
        progress: Progress,
    ) -> Result<(), ImageError> {
        self.push(&name, tag.as_deref(), &auth, progress).await
    }

    async fn registry_login(&self, auth: AuthConfig) -> Result<String, RegistryError> {
        self.login(&auth).await
    }

    async fn distribution_inspect(
        &self,
        name: String,
        auth: AuthConfig,
    ) -> Result<DistributionInspect, ImageError> {
        ImageService::distribution_inspect(self, &name, &auth).await
    }

    async fn image_search(
        &self,
        term: String,
        limit: Option<i64>,
        auth: AuthConfig,
    ) -> Result<Vec<ImageSearchResponseItem>, RegistryError> {
        self.search(&term, limit, &auth).await
    }
}
