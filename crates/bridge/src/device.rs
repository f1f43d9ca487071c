//! The device the bridge serves: the home's client engine, shared by every
//! IMAP and SMTP session, and a sync loop that tells sessions when letters
//! arrive (IDLE pushes them as EXISTS).
//!
//! The engine holds the home's lock for the bridge's whole life (two
//! processes sealing with one MLS state would reuse ratchet generations),
//! so `valise` commands on the same home wait until the bridge stops.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard, watch};
use valise_client::Client;

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

impl Device {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Self {
            client: Mutex::new(client),
            news: watch::Sender::new(0),
        })
    }

    /// The engine, for one step of a session (held briefly).
    pub async fn client(&self) -> MutexGuard<'_, Client> {
        self.client.lock().await
    }

    /// A receiver that changes whenever letters were stored.
    pub fn news(&self) -> watch::Receiver<u64> {
        self.news.subscribe()
    }

    /// Letters were stored (a sync, or a letter sent through SMTP).
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
