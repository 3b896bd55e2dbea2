//! `pause` and `unpause` (the cgroup freezer, through the supervisor).

use std::sync::Arc;

use super::manager::ContainerManager;
use super::record::Status;
use super::ContainerError;

impl ContainerManager {
    pub async fn pause(self: &Arc<Self>, name: &str, pause: bool) -> Result<(), ContainerError> {
        let c = self.get(name)?;
        let _op = c.op.lock().await;
        let r = c.record();
        match (pause, r.state.status) {
            // moby's unpause asks only whether it is paused, a stopped container included.
            (false, s) if s != Status::Paused => {
                return Err(ContainerError::conflict(format!(
                    "Container {} is not paused",
                    r.id
                )))
            }
            (_, s) if !s.is_running() => return Err(ContainerError::not_running(&r.id)),
            (true, Status::Paused) => {
                return Err(ContainerError::conflict(format!(
                    "Container {} is already paused",
                    r.id
                )))
            }
            (false, Status::Running) => {
                return Err(ContainerError::conflict(format!(
                    "Container {} is not paused",
                    r.id
                )))
            }
            _ => {}
        }
        if pause {
            self.runtime.pause(&c.id).await?;
        } else {
            self.runtime.resume(&c.id).await?;
        }
        let r = self.update(&c, |r| {
            r.state.status = if pause {
                Status::Paused
            } else {
                Status::Running
            };
        })?;
        self.health_sync(&c);
        self.publish(&r, if pause { "pause" } else { "unpause" });
        Ok(())
    }
}
