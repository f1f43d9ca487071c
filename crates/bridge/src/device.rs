//! The device the bridge serves: the home's client engine, shared by every
//! IMAP and SMTP session, and a sync loop that tells sessions when letters
//! arrive (IDLE pushes them as EXISTS).
//!
//! The home is shared with `valise` commands: the bridge holds the home's
//! lock only while a session or the sync loop uses the engine
//! ([`Device::client`]), and releases it when that step ends. A command on
//! the same home therefore waits at most one step of the bridge, and the
//! bridge at most one command. When the bridge takes the home back after a
//! command wrote to it, the engine reads its groups afresh (no ratchet
//! generation is used twice) and sessions are told, so IDLE shows the
//! letters a `valise sync` fetched.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard, watch};
use valise_client::{Client, Retake};

/// How often the bridge asks its server for news: a letter bob sends
/// reaches an IDLE session within about this long.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);
/// The wait after a failed sync (server down, network gone).
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The shared device.
pub struct Device {
    client: Mutex<Client>,
    /// Counts syncs that stored letters; sessions watch it.
    news: watch::Sender<u64>,
}

/// The engine for one step, with the home's lock; released when dropped.
pub struct Step<'a> {
    client: MutexGuard<'a, Client>,
}

impl Deref for Step<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Step<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.client.release_home() {
            // Still held: `valise` commands wait, nothing is unsafe.
            tracing::warn!(code = e.code(), "cannot release the home: {e}");
        }
    }
}

impl Device {
    /// Serves `client`, whose home is released until a step needs it.
    pub fn new(mut client: Client) -> valise_client::Result<Arc<Self>> {
        client.release_home()?;
        Ok(Arc::new(Self {
            client: Mutex::new(client),
            news: watch::Sender::new(0),
        }))
    }

    /// The engine, for one step of a session (held briefly): waits for
    /// the other steps, and for a `valise` command using the home.
    pub async fn client(&self) -> Step<'_> {
        let mut client = self.client.lock().await;
        loop {
            match client.retake_home().await {
                Ok(Retake::Changed) => {
                    // A command may have fetched letters: sessions look.
                    self.tell();
                    break;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(code = e.code(), "cannot take the home back: {e}");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
        Step { client }
    }

    /// A receiver that changes whenever letters were stored.
    pub fn news(&self) -> watch::Receiver<u64> {
        self.news.subscribe()
    }

    /// Letters were stored (a sync, a letter sent through SMTP, or a
    /// `valise` command beside the bridge).
    pub fn tell(&self) {
        self.news.send_modify(|n| *n += 1);
    }

    /// Syncs forever: the inbox, the outbox, and the device's upkeep.
    pub async fn sync_loop(self: Arc<Self>) {
        loop {
            let result = self.client().await.sync().await;
            match result {
                Ok(report) => {
                    if report.new_letters > 0 || report.delivered > 0 {
                        self.tell();
                    }
                    tokio::time::sleep(SYNC_EVERY).await;
                }
                Err(e) => {
                    // Codes and kinds only: errors never quote letters.
                    tracing::warn!(code = e.code(), "sync failed: {e}");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }
}
