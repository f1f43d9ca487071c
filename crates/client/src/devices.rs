//! This user's devices, as the key directory proves them: listing them,
//! approving a new one by the link code it shows, revoking one. Only a
//! device that counts for its user (it founded the identity or was
//! approved) may approve or revoke; the server only publishes what it signs.

use crate::client::Client;
use crate::error::{ClientError, Result};
use openmls_traits::signatures::Signer;
use reqwest::Method;
use serde::Serialize;
use valise_directory::DeviceStatus;
use valise_directory::identity::{approval_message, code_digits, link_code, revocation_message};
use valise_proto::DeviceId;
use valise_proto::api::{ApproveDevice, DirectoryRoot, RevokeDevice};

/// A device of this user as `devices` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub device: String,
    /// `approved`, `pending` or `revoked`, from the user's signatures.
    pub status: String,
    /// The device that approved (or revoked) it; none for the device that
    /// founded the identity, or a revocation by the administrator.
    pub by: Option<String>,
    /// This device's link code, for `devices approve` on another device.
    /// Only shown on the device itself: the person must read it from the
    /// new device's screen, not copy it from the list of the device that
    /// approves (which the server fills).
    pub link_code: Option<String>,
    pub this_device: bool,
}

impl Client {
    /// This user's devices with their status, from a verified lookup.
    pub async fn own_devices(&mut self) -> Result<Vec<DeviceView>> {
        let me = self.engine.me.clone();
        let proven = self.prove_user(&me.user).await?;
        Ok(proven
            .devices
            .devices
            .iter()
            .map(|(id, (entry, status))| {
                let by = match status {
                    DeviceStatus::Approved { by } | DeviceStatus::Revoked { by } => *by,
                    DeviceStatus::Pending => None,
                };
                DeviceView {
                    device: id.to_string(),
                    status: status.as_str().to_owned(),
                    by: by.map(|d| d.to_string()),
                    link_code: (*id == me.device)
                        .then(|| link_code(&me.user, id, entry.signature_key.as_bytes())),
                    this_device: *id == me.device,
                }
            })
            .collect())
    }

    /// This device's link code: what a person reads to another device of
    /// theirs to approve this one.
    pub fn link_code(&self) -> String {
        let me = &self.engine.me;
        link_code(&me.user, &me.device, self.engine.signer.public())
    }

    /// Approves the pending device whose link code is `code`: signs its
    /// approval, has it published, and adds it to this device's
    /// conversations. Any other code is refused.
    pub async fn approve_device(&mut self, code: &str) -> Result<DeviceId> {
        let me = self.engine.me.clone();
        let proven = self.prove_user(&me.user).await?;
        self.require_approved(&proven.devices.status(&me.device))?;
        let wanted = code_digits(code);
        let matches: Vec<_> = proven
            .devices
            .devices
            .iter()
            .filter(|(id, (e, _))| {
                code_digits(&link_code(&me.user, id, e.signature_key.as_bytes())) == wanted
            })
            .collect();
        let [(device, (entry, status))] = matches.as_slice() else {
            return Err(ClientError::Invalid(format!(
                "no device of {} shows the link code {code}: check the code on the new device \
                 (`valise devices` there shows it too)",
                me.user
            )));
        };
        if *status != DeviceStatus::Pending {
            return Err(ClientError::Invalid(format!(
                "device {device} is already {}",
                status.as_str()
            )));
        }
        let message = approval_message(
            &me.user,
            &proven.devices.identity,
            device,
            entry.signature_key.as_bytes(),
            entry.number,
        );
        let signature = self
            .engine
            .signer
            .sign(&message)
            .map_err(ClientError::mls)?;
        let body = ApproveDevice {
            number: entry.number,
            signature: signature.into(),
        };
        let device = **device;
        let path = format!("/v1/devices/{device}/approval");
        let published: DirectoryRoot = self.call(Method::POST, &path, Some(&body)).await?;
        self.accept_root(published.root.as_slice()).await?;
        // Within this sync: the new device joins this device's conversations.
        self.last_housekeeping = None;
        self.sync().await?;
        Ok(device)
    }

    /// Revokes one of this user's devices (this one included): signs the
    /// revocation and has it published; the server refuses the device at
    /// once, and members remove it from their conversations.
    pub async fn revoke_device(&mut self, device: &DeviceId) -> Result<()> {
        let me = self.engine.me.clone();
        let proven = self.prove_user(&me.user).await?;
        self.require_approved(&proven.devices.status(&me.device))?;
        let Some((entry, status)) = proven.devices.devices.get(device) else {
            return Err(ClientError::NotFound {
                kind: "device",
                id: device.to_string(),
            });
        };
        if matches!(status, DeviceStatus::Revoked { .. }) {
            return Err(ClientError::Invalid(format!(
                "device {device} is already revoked"
            )));
        }
        let at = proven
            .devices
            .devices
            .values()
            .map(|(e, _)| e.number + 1)
            .max()
            .unwrap_or(0);
        let message = revocation_message(
            &me.user,
            &proven.devices.identity,
            device,
            entry.signature_key.as_bytes(),
            at,
        );
        let signature = self
            .engine
            .signer
            .sign(&message)
            .map_err(ClientError::mls)?;
        let path = format!("/v1/devices/{device}/revocation");
        let body = RevokeDevice {
            at,
            signature: signature.into(),
        };
        let published: DirectoryRoot = self.call(Method::POST, &path, Some(&body)).await?;
        if device == &me.device {
            return Ok(());
        }
        self.accept_root(published.root.as_slice()).await?;
        // This device removes it from its conversations at once.
        self.last_housekeeping = None;
        self.sync().await?;
        Ok(())
    }

    fn require_approved(&self, status: &Option<DeviceStatus>) -> Result<()> {
        match status {
            Some(s) if s.is_approved() => Ok(()),
            _ => Err(ClientError::DevicePending),
        }
    }

    /// The other devices of this user's identity when this device enrolled
    /// into it as pending (empty if it founded the identity).
    pub async fn enrolled_into(&mut self) -> Result<Vec<DeviceView>> {
        let all = self.own_devices().await?;
        let mine = all.iter().find(|d| d.this_device).map(|d| d.status.clone());
        Ok(if mine.as_deref() == Some("pending") {
            all.into_iter().filter(|d| !d.this_device).collect()
        } else {
            Vec::new()
        })
    }
}
