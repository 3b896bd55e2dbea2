//! [`BuildBackend`] over the [`Builder`]: what the build router calls.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::build::{BuildMessage, BuildOptions, Builder};
use super::cache::{PruneOptions, PruneReport};
use super::BuilderError;
use crate::api::BuildBackend;
use crate::util::io::BodyReceiver;

#[async_trait::async_trait]
impl BuildBackend for Arc<Builder> {
    async fn build(
        &self,
        context: BodyReceiver,
        opts: BuildOptions,
    ) -> Result<mpsc::Receiver<BuildMessage>, BuilderError> {
        Builder::build(self, context, opts).await
    }

    async fn build_prune(&self, opts: PruneOptions) -> Result<PruneReport, BuilderError> {
        self.prune(opts).await
    }
}
