//! Who may use the bridge: the home's own user, with the bridge password.

use crate::device::Device;
use crate::password;
use tokio::sync::Semaphore;
use valise_client::Client;

/// Password checks run at once. Each Argon2 run holds 19 MiB, and any user
/// of this machine may open connections and guess: unbounded, a few
/// hundred at once (tokio's blocking threads) would take gigabytes. The
/// rest wait their turn.
static CHECKS: Semaphore = Semaphore::const_new(2);

/// A session's login: the password hash it was checked against. A reset
/// (`valise-bridge password --reset`, from another process while the
/// bridge runs) makes a new hash, and a session logged in under the old
/// one is no longer served: whoever learnt the old password keeps no
/// session open past the reset.
pub struct Login(String);

impl Login {
    /// Whether the bridge password is still the one this session gave
    /// (read in the step that serves the session's command).
    pub fn current(&self, client: &Client) -> bool {
        matches!(client.home().bridge_password_hash(), Ok(Some(phc)) if phc == self.0)
    }
}

/// The login, if `user` is this home's user and `pass` the bridge
/// password. The hash is read at every login, so a reset takes effect at
/// once (and [`Login::current`] ends the sessions from before it).
pub async fn check(device: &Device, user: &str, pass: &[u8]) -> Option<Login> {
    let (me, phc) = {
        let client = device.client().await;
        (
            client.me().user.to_string(),
            client.home().bridge_password_hash(),
        )
    };
    let Ok(Some(phc)) = phc else {
        return None;
    };
    let pass = zeroize::Zeroizing::new(pass.to_vec());
    let Ok(_turn) = CHECKS.acquire().await else {
        return None;
    };
    // Argon2 costs tens of milliseconds: off the session threads. Both
    // checks run whatever the address, so timing tells nothing of it.
    let hash = phc.clone();
    let right_password = tokio::task::spawn_blocking(move || password::verify(&hash, &pass))
        .await
        .unwrap_or(false);
    (right_password & me.eq_ignore_ascii_case(user.trim())).then_some(Login(phc))
}
