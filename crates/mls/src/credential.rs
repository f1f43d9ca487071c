//! The credential that names a device: a basic credential whose identity
//! is the device's address, so every leaf says which device it is.

use crate::Refusal;
use openmls::prelude::{BasicCredential, Credential, CredentialWithKey};
use valise_proto::DeviceAddress;

/// The credential of `device` with its signature key.
pub fn credential(device: &DeviceAddress, signature_public_key: &[u8]) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(device.credential_identity()).into(),
        signature_key: signature_public_key.into(),
    }
}

/// The device a credential names; anything else is refused.
pub fn device_of(credential: &Credential) -> Result<DeviceAddress, Refusal> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| Refusal::new("credential is not a basic credential"))?;
    DeviceAddress::from_credential_identity(basic.identity())
        .map_err(|e| Refusal(format!("credential identity: {e}")))
}

/// The credential must name exactly `device`.
pub(crate) fn check_names(credential: &Credential, device: &DeviceAddress) -> Result<(), Refusal> {
    let named = device_of(credential)?;
    if named != *device {
        return Err(Refusal(format!("credential names {named}, not {device}")));
    }
    Ok(())
}
