//! This device's key packages on its server: enough one-time ones for
//! others to add it, a last-resort one for when they run out, and both
//! replaced before they expire (an expired package is refused by everyone).

use crate::alert::AlertKind;
use crate::client::Client;
use crate::error::Result;
use crate::mls;
use reqwest::Method;
use valise_proto::api::{KeyPackageStock, KeyPackageUpload};

/// Packages are replaced this long before they expire (two weeks of an
/// 84-day lifetime): a device that syncs at least that often never leaves
/// an expired one on the server.
const ROTATE_BEFORE_S: u64 = 14 * 24 * 60 * 60;

impl Client {
    /// Keeps enough one-time key packages on the server, and replaces them
    /// and the last-resort one before they expire.
    pub(crate) async fn restock_key_packages(&mut self) -> Result<()> {
        let now = self.engine.clock.now_s();
        let (one_time_until, last_resort_until) = self.engine.home.key_packages_until()?;
        let rotate = one_time_until.saturating_sub(ROTATE_BEFORE_S) <= now;
        let rotate_last_resort = last_resort_until.saturating_sub(ROTATE_BEFORE_S) <= now;
        if !rotate && !rotate_last_resort {
            let empty = KeyPackageUpload {
                one_time: Vec::new(),
                last_resort: None,
                replace: false,
            };
            let stock: KeyPackageStock = self
                .call(Method::PUT, "/v1/devices/self/key-packages", Some(&empty))
                .await?;
            if stock.one_time >= mls::KEY_PACKAGE_LOW_WATER {
                return Ok(());
            }
            if stock.one_time == 0 {
                self.engine.raise(
                    AlertKind::KeyPackagesExhausted,
                    None,
                    "no one-time key packages were left on the server: anyone adding this \
                     device meanwhile used its last-resort package (restocking now)",
                    None,
                )?;
            }
        }
        let (batch, last_resort) = self.engine.key_packages(rotate_last_resort)?;
        let upload = KeyPackageUpload {
            one_time: batch.packages,
            last_resort,
            replace: rotate,
        };
        let _: KeyPackageStock = self
            .call(Method::PUT, "/v1/devices/self/key-packages", Some(&upload))
            .await?;
        if rotate || rotate_last_resort {
            let one_time = if rotate { batch.until } else { one_time_until };
            self.engine
                .home
                .set_key_packages_until(one_time, rotate_last_resort.then_some(batch.until))?;
        }
        Ok(())
    }
}
