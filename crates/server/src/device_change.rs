//! Approvals and revocations that a user's device asks the server to
//! publish, checked with exactly the rule clients apply
//! ([`valise_directory::identity::devices`]): the server builds the user's
//! list as it would publish it with the change in place, and stores the
//! change only if the signature makes the target come out approved (or
//! revoked) by the caller. It never signs or invents one itself.
//!
//! ```text
//! caller  approved device of the same user          else forbidden
//! target  a device of that user                     else not_found
//! approve target pending, `number` its number       else already_exists / bad_request
//!         signature: Approved { by: caller }        else bad_request
//! revoke  target not revoked                        else already_exists
//!         `at` the list's next number               else bad_request
//!         signature: Revoked { by: caller }         else bad_request
//! ```

use crate::directory::device_list;
use crate::store::{NewApproval, NewRevocation, Status, UserRecord};
use valise_directory::identity::{DeviceStatus, devices};
use valise_directory::{
    Approval, DeviceEntry, DeviceList, DirectoryError, Revocation, SignatureKey,
};
use valise_proto::{DeviceAddress, DeviceId};

/// Why a change to a user's devices is refused.
#[derive(Debug, thiserror::Error)]
pub enum DeviceChangeError {
    #[error("{0} is not a device of this user")]
    UnknownDevice(DeviceId),
    #[error("only an approved device may approve or revoke devices (this one is {0})")]
    CallerNotApproved(&'static str),
    #[error("device {device} is {} already", status.as_str())]
    Already { device: DeviceId, status: Status },
    #[error("device {0} is revoked: it can never be approved")]
    Revoked(DeviceId),
    #[error("device {device} enrolled as number {number}, not {signed}")]
    WrongNumber {
        device: DeviceId,
        number: u64,
        signed: u64,
    },
    #[error("a revocation now is at {next} (the next device number), not {signed}")]
    WrongAt { next: u64, signed: u64 },
    #[error("the signature does not verify for this change: {0}")]
    BadSignature(String),
    /// The user's stored list cannot be published (a server fault).
    #[error("the user's device list: {0}")]
    Unpublishable(DirectoryError),
}

/// Checks `caller`'s approval of its user's pending device `target`
/// (enrolled as `number`); returns what to store.
pub fn check_approval(
    user: &UserRecord,
    caller: &DeviceId,
    target: &DeviceId,
    number: u64,
    signature: Vec<u8>,
    now_ms: i64,
) -> Result<NewApproval, DeviceChangeError> {
    let entry = target_of(user, caller, target)?;
    match entry.status {
        Status::Pending => {}
        Status::Approved => return Err(already(target, Status::Approved)),
        Status::Revoked => return Err(DeviceChangeError::Revoked(*target)),
    }
    if entry.number != number {
        return Err(DeviceChangeError::WrongNumber {
            device: *target,
            number: entry.number,
            signed: number,
        });
    }
    let approval = Approval {
        by: *caller,
        signature: SignatureKey(signature.clone()),
    };
    let list = device_list(user).map_err(DeviceChangeError::Unpublishable)?;
    let status = status_with(user, &list, target, |e| e.approval = Some(approval))?;
    if status != Some(DeviceStatus::Approved { by: Some(*caller) }) {
        return Err(refused(status));
    }
    Ok(NewApproval {
        device: DeviceAddress::new(user.user.clone(), *target),
        number,
        by: *caller,
        signature,
        now_ms,
    })
}

/// Checks `caller`'s revocation of its user's device `target` (itself
/// allowed) at `at`; returns what to store.
pub fn check_revocation(
    user: &UserRecord,
    caller: &DeviceId,
    target: &DeviceId,
    at: u64,
    signature: Vec<u8>,
    now_ms: i64,
) -> Result<NewRevocation, DeviceChangeError> {
    let entry = target_of(user, caller, target)?;
    if entry.status == Status::Revoked {
        return Err(already(target, Status::Revoked));
    }
    let list = device_list(user).map_err(DeviceChangeError::Unpublishable)?;
    if at != list.next_number() {
        return Err(DeviceChangeError::WrongAt {
            next: list.next_number(),
            signed: at,
        });
    }
    let revocation = Revocation {
        at,
        by: Some(*caller),
        signature: Some(SignatureKey(signature.clone())),
    };
    let status = status_with(user, &list, target, |e| e.revocation = Some(revocation))?;
    if status != Some(DeviceStatus::Revoked { by: Some(*caller) }) {
        return Err(refused(status));
    }
    Ok(NewRevocation {
        device: DeviceAddress::new(user.user.clone(), *target),
        at: Some(at),
        by: Some((*caller, signature)),
        now_ms,
    })
}

/// The target's record, once the caller is known to be an approved device
/// of the same user.
fn target_of<'a>(
    user: &'a UserRecord,
    caller: &DeviceId,
    target: &DeviceId,
) -> Result<&'a crate::store::DeviceRecord, DeviceChangeError> {
    let caller = user
        .device(caller)
        .ok_or(DeviceChangeError::UnknownDevice(*caller))?;
    if caller.status != Status::Approved {
        return Err(DeviceChangeError::CallerNotApproved(caller.status.as_str()));
    }
    user.device(target)
        .ok_or(DeviceChangeError::UnknownDevice(*target))
}

fn already(device: &DeviceId, status: Status) -> DeviceChangeError {
    DeviceChangeError::Already {
        device: *device,
        status,
    }
}

fn refused(status: Option<DeviceStatus>) -> DeviceChangeError {
    DeviceChangeError::BadSignature(format!(
        "with it the device would be {}",
        status.map_or("unlisted", DeviceStatus::as_str)
    ))
}

/// The status the clients' rule gives `target` in `list` with `change`
/// applied to its entry. A change that makes the list unpublishable (an
/// empty or oversized signature) is the caller's fault.
fn status_with(
    user: &UserRecord,
    list: &DeviceList,
    target: &DeviceId,
    change: impl FnOnce(&mut DeviceEntry),
) -> Result<Option<DeviceStatus>, DeviceChangeError> {
    let mut entries = list.devices().to_vec();
    if let Some(entry) = entries.iter_mut().find(|e| e.device == *target) {
        change(entry);
    }
    let candidate = DeviceList::new(list.identity().clone(), entries)
        .map_err(|e| DeviceChangeError::BadSignature(e.to_string()))?;
    Ok(devices(&user.user, &candidate).status(target))
}
