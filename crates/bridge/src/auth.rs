//! Who may use the bridge: the home's own user, with the bridge password.

use crate::device::Device;
use crate::password;
use tokio::sync::Semaphore;

/// Password checks run at once. Each Argon2 run holds 19 MiB, and any user
/// of this machine may open connections and guess: unbounded, a few
/// hundred at once (tokio's blocking threads) would take gigabytes. The
/// rest wait their turn.
static CHECKS: Semaphore = Semaphore::const_new(2);

/// True if `user` is this home's user and `pass` the bridge password. The
/// hash is read at every login, so a reset takes effect at once.
pub async fn check(device: &Device, user: &str, pass: &[u8]) -> bool {
    let (me, phc) = {
        let client = device.client().await;
        (
            client.me().user.to_string(),
            client.home().bridge_password_hash(),
        )
    };
    let Ok(Some(phc)) = phc else {
        return false;
    };
    let pass = zeroize::Zeroizing::new(pass.to_vec());
    let Ok(_turn) = CHECKS.acquire().await else {
        return false;
    };
    // Argon2 costs tens of milliseconds: off the session threads. Both
    // checks run whatever the address, so timing tells nothing of it.
    let right_password = tokio::task::spawn_blocking(move || password::verify(&phc, &pass))
        .await
        .unwrap_or(false);
    right_password & me.eq_ignore_ascii_case(user.trim())
}
