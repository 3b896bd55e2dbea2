//! Watching a running container: the supervisor's events, the exit handling that records it,
//! wakes waiters and applies the restart policy or auto-remove, and `wait`.

use std::sync::Arc;
use std::time::Duration;

use super::manager::{lock, Container, ContainerManager, WaitCondition};
use super::record::Status;
use super::restart;
use super::ContainerError;
use crate::runtime::{Event, ExitStatus, Watch};

impl ContainerManager {
    pub(super) fn spawn_watcher(
        self: &Arc<Self>,
        c: Arc<Container>,
        mut w: Watch,
        generation: u64,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let status = loop {
                match w.next().await {
                    // The exit status that follows carries OOMKilled.
                    Some(Event::Oom) => {}
                    Some(Event::ExecExited { exec_id, exit_code }) => {
                        this.exec_finished(&exec_id, exit_code as i64)
                    }
                    Some(Event::Exited(s)) => break Some(s),
                    None => break None,
                }
            };
            drop(w);
            let status = match status {
                Some(s) => s,
                None => {
                    let why = "the container's supervisor exited unexpectedly";
                    this.runtime.exit_of_gone(&c.id, why).await
                }
            };
            if *lock(&c.generation) != generation {
                return;
            }
            // Boxed: the task waits above for as long as the container runs, and tokio keeps
            // a task in one block of its future's largest size. Inline, the exit's handling
            // (the restart policy's whole start path) would make every running container's
            // watcher that large.
            Box::pin(this.on_exit(&c, status)).await;
        });
    }

    /// The container's process ended: record it, clean up, tell waiters, apply the policy.
    pub(super) async fn on_exit(self: &Arc<Self>, c: &Arc<Container>, status: ExitStatus) {
        let id = c.id.clone();
        self.health_stop(c);
        self.finish_execs(&id);
        let ran_for = lock(&c.started).map(|t| t.elapsed()).unwrap_or_default();
        let (policy, max) = c.record().restart_policy();
        let rec = c.record();
        let will_restart = restart::should_restart(
            &policy,
            max,
            rec.restart_count,
            status.exit_code as i64,
            rec.state.manually_stopped,
        ) && rec.state.status != Status::Removing;
        // The run's networks go while the record still says it runs: a `docker start` that
        // comes right after the exit is recorded must not find the old endpoints, nor have
        // its new ones torn down by this exit.
        self.network_down(&id).await;
        // An auto-removed container's exit is written without an fsync (`docker run --rm`
        // waits on it): the removal right after makes it moot, and a record lost to a power
        // failure still says the container runs, which restore finds without its supervisor,
        // records as exited and removes all the same.
        let auto_removed = !will_restart && rec.host_config.auto_remove == Some(true);
        let r = self.update_written(
            c,
            |r| {
                r.state.status = if will_restart {
                    Status::Restarting
                } else {
                    Status::Exited
                };
                r.state.exit_code = status.exit_code as i64;
                r.state.finished_at.clone_from(&status.finished_at);
                r.state.oom_killed = status.oom_killed;
                r.state.pid = 0;
                r.state.error.clone_from(&status.error);
                r.state.restart_pending = will_restart;
            },
            !auto_removed,
        );
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("record exit of {id}: {e}");
                c.record()
            }
        };
        // Only now that the exit is recorded may the runtime drop what recorded it.
        {
            let this = self.clone();
            let id = id.clone();
            let rec = r.clone();
            let _ = tokio::task::spawn_blocking(move || {
                this.unmount_volumes(&rec);
                this.unmount_rootfs(&id);
                this.runtime.cleanup(&id);
            })
            .await;
        }
        if status.oom_killed {
            self.publish(&r, "oom");
        }
        self.events.publish(
            self.event(&r, "die")
                .attribute("exitCode", status.exit_code.to_string())
                .attribute("execDuration", ran_for.as_secs().to_string()),
        );
        c.snapshot.send_modify(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = status.exit_code as i64;
            s.error = status.error.clone();
        });
        if will_restart {
            let delay = {
                let mut b = lock(&c.backoff);
                let d = restart::next_delay(*b, ran_for);
                *b = Some(d);
                d
            };
            let this = self.clone();
            let c = c.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = c.op.lock().await;
                let r = c.record();
                if r.state.status != Status::Restarting || r.state.manually_stopped {
                    return;
                }
                let _ = this.update(&c, |r| r.restart_count += 1);
                // Boxed: the task may sleep through a long back-off (see `spawn_watcher`).
                if let Err(e) = Box::pin(this.start_locked(&c)).await {
                    tracing::warn!("restart {}: {e}", c.id);
                }
            });
        } else if r.host_config.auto_remove == Some(true) {
            self.spawn_auto_remove(c.clone());
        }
    }

    pub(super) fn spawn_auto_remove(self: &Arc<Self>, c: Arc<Container>) {
        let this = self.clone();
        tokio::spawn(async move {
            let _op = c.op.lock().await;
            if let Err(e) = this.remove_locked(&c, false, true).await {
                tracing::warn!("auto-remove {}: {e}", c.id);
            }
        });
    }

    /// Wait until the container is not running, at most `timeout`.
    pub(super) async fn wait_stopped(c: &Container, timeout: Option<Duration>) -> bool {
        let mut rx = c.subscribe();
        let done = async {
            loop {
                if !rx.borrow_and_update().running {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, done).await.is_ok(),
            None => {
                done.await;
                true
            }
        }
    }

    /// `POST /containers/{id}/wait`: resolves to `(exit code, error)` when the condition holds.
    pub fn wait(
        self: &Arc<Self>,
        name: &str,
        condition: WaitCondition,
    ) -> Result<impl std::future::Future<Output = (i64, String)> + Send + 'static, ContainerError>
    {
        let c = self.get(name)?;
        let mut rx = c.subscribe();
        let start = rx.borrow().clone();
        Ok(async move {
            loop {
                let s = rx.borrow_and_update().clone();
                let done = match condition {
                    WaitCondition::NotRunning => !s.running,
                    WaitCondition::NextExit => s.exits > start.exits,
                    WaitCondition::Removed => s.removed,
                };
                if done {
                    return (s.exit_code, s.error);
                }
                if rx.changed().await.is_err() {
                    let s = rx.borrow().clone();
                    return (s.exit_code, s.error);
                }
            }
        })
    }
}
