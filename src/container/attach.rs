//! Attaching to a container's streams, its TTY size and detach events.

use std::sync::Arc;

use tokio::net::UnixStream;

use super::manager::{lock, ContainerManager};
use super::ContainerError;

impl ContainerManager {
    /// A client detached with the detach keys.
    pub fn detached(&self, name: &str) {
        if let Ok(c) = self.get(name) {
            self.publish(&c.record(), "detach");
        }
    }

    /// `POST /containers/{id}/resize`: the TTY's new size.
    pub async fn resize(&self, name: &str, height: u16, width: u16) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        if !c.status().is_running() {
            return Err(ContainerError::not_running(&c.id));
        }
        self.runtime.resize(&c.id, height, width, None).await?;
        self.events.publish(
            self.event(&c.record(), "resize")
                .attribute("height", height.to_string())
                .attribute("width", width.to_string()),
        );
        Ok(())
    }

    // ----- attach & logs -----

    /// The supervisor stream of an attach: at once for a running container, at start for a
    /// created one. Resolves to `None` if the container ends or goes first.
    pub async fn attach(
        self: &Arc<Self>,
        name: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(bool, tokio::sync::oneshot::Receiver<Option<UnixStream>>), ContainerError> {
        let c = self.get(name)?;
        let r = c.record();
        let tty = r.config.tty.unwrap_or(false);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Register under the op lock so that a concurrent start either sees us or has
        // already made the supervisor reachable.
        {
            let _op = c.op.lock().await;
            self.publish(&r, "attach");
            if !c.status().is_running() {
                lock(&c.pending_attach).push((stdin, stdout, stderr, tx));
                return Ok((tty, rx));
            }
        }
        // Running: connect outside the lock (a supervisor that went meanwhile just ends
        // the stream).
        let s = self.runtime.attach(&c.id, stdin, stdout, stderr).await.ok();
        let _ = tx.send(s);
        Ok((tty, rx))
    }
}
