//! The server's background tasks (the directory publisher, the refresh of
//! revoked devices, housekeeping) and the signal that stops them.
//!
//! They stop last, once the connections are closed: a request still in
//! flight may be waiting for the publisher. Each task ends at its next
//! pause when told to; one that does not end by the deadline is aborted,
//! which is safe because each of them recovers from a crash at any point
//! (what it left half done is redone at start).

use std::future::Future;
use std::sync::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a background task selects on to learn that the server stops.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once the server stops (at once if it already has).
    pub async fn stopped(&mut self) {
        // An error means the sender is gone: the server is stopping too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// The running background tasks, by name.
#[derive(Debug)]
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: Mutex::default(),
        }
    }
}

impl Background {
    /// The signal to hand to a task before [`Background::spawn`]ing it.
    pub fn signal(&self) -> StopSignal {
        StopSignal(self.stop.subscribe())
    }

    /// Runs `task` on the current runtime until it ends or is stopped.
    pub fn spawn(&self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, handle));
    }

    /// Tells every task to stop and waits for them until `deadline`;
    /// aborts those still running then.
    pub async fn stop(&self, deadline: Instant) {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for (task, mut handle) in tasks {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => tracing::info!(task, "background task stopped"),
                Ok(Err(e)) => tracing::warn!(task, error = %e, "background task failed"),
                Err(_) => {
                    handle.abort();
                    tracing::warn!(task, "background task did not stop in time: aborted");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stops_tasks_that_listen_and_aborts_those_that_do_not() {
        let background = Background::default();
        let mut signal = background.signal();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        background.spawn("listens", async move {
            signal.stopped().await;
            let _ = done_tx.send(());
        });
        let (_deaf_tx, deaf_rx) = tokio::sync::oneshot::channel::<()>();
        background.spawn("deaf", async move {
            let _ = deaf_rx.await;
        });
        let started = Instant::now();
        background.stop(started + Duration::from_millis(200)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        // The listening task ran to its end; the deaf one was aborted.
        assert!(done_rx.await.is_ok());
        assert!(background.tasks.lock().unwrap().is_empty());
        // A signal taken after the stop fires at once.
        tokio::time::timeout(Duration::from_secs(1), background.signal().stopped())
            .await
            .unwrap();
    }
}
