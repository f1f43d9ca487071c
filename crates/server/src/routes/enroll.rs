use super::blocking;
use super::key_packages::check_upload;
use crate::audit::Event;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::json::Json;
use crate::state::AppState;
use crate::store::{Enrollment, NewKeyPackage, Status};
use axum::extract::State;
use valise_proto::DeviceAddress;
use valise_proto::api::{AuditKeyInfo, EnrollRequest, EnrollResponse};
use valise_proto::audit::{Action, Actor};
use valise_proto::limits::MAX_KEY_PACKAGES_PER_UPLOAD;

/// # POST /v1/enroll
///
/// Enrols a device with a one-time invite. The invite is checked first, so
/// that nobody without one makes the server verify key packages (X-Wing
/// keys are costly), then the key packages, before the invite is spent, so
/// a client bug does not burn the code. The invite is consumed in the same
/// transaction that creates the device and queues the user for the key
/// directory: the device founds the user's identity if there is none yet
/// (or the invite is a reset one), and is pending otherwise, until another
/// device of the user approves it. The answer waits for the directory epoch
/// that publishes the user's new device list, and carries its signed root
/// and the directory key for the device to pin, the audit key (with
/// which it checks the administrator's actions on its account) and the
/// security desk (issue 10), which the device pins too.
pub async fn enroll(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    Json(req): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let n = req.key_packages.len();
    if n == 0 || n > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::bad_request(format!(
            "between 1 and {MAX_KEY_PACKAGES_PER_UPLOAD} one-time key packages are required"
        )));
    }
    let device = DeviceAddress::new(req.user.clone(), req.device);
    let st = state.clone();
    let who = device.clone();
    let found = blocking(move || {
        let code_hash = crate::invite::hash(&req.code);
        st.store
            .check_invite(&code_hash, &device.user, crate::now_ms())?;
        let key = req.signature_key.as_slice();
        let checked = |bytes: Vec<u8>, last_resort| {
            let not_after = check_upload(&st, &bytes, &device, key, last_resort)?;
            Ok::<_, ApiError>(NewKeyPackage { bytes, not_after })
        };
        let key_packages = req
            .key_packages
            .into_iter()
            .map(|kp| checked(kp.into_vec(), false))
            .collect::<Result<_, _>>()?;
        let last_resort = checked(req.last_resort.into_vec(), true)?;
        let enrolled = st.store.enroll(&Enrollment {
            code_hash,
            device: device.clone(),
            signature_key: req.signature_key.into_vec(),
            key_packages,
            last_resort,
            now_ms: crate::now_ms(),
        })?;
        tracing::info!(
            device = %device, number = enrolled.number, generation = enrolled.generation,
            status = enrolled.status.as_str(), "device enrolled"
        );
        if enrolled.generation > 1 && enrolled.status == Status::Approved {
            // A reset: the user's older devices are refused from now on.
            st.standing.refresh(st.store.as_ref())?;
        }
        // After the invite was taken: it is queued or logged by now.
        let audit_from = st.store.audit_position()?;
        Ok((
            enrolled,
            st.store.security_desk()?,
            st.store.accreditation_authority()?,
            audit_from,
        ))
    })
    .await;
    let (enrolled, security_desk, accreditation_authority, audit_from) = match found {
        Ok(found) => found,
        Err(e) => {
            state.evidence.emit(
                Event::new(Actor::Anonymous, Action::AuthFailed)
                    .on_device(&who)
                    .from(client)
                    .text("stage", "enrol")
                    .refused(&e),
            );
            return Err(e);
        }
    };
    let reset = enrolled.generation > 1 && enrolled.status == Status::Approved;
    state.evidence.emit(
        Event::by(
            &who,
            if reset {
                Action::IdentityReset
            } else {
                Action::Enrolment
            },
        )
        .on_user(&who.user)
        .from(client)
        .text("status", enrolled.status.as_str())
        .count("generation", u64::from(enrolled.generation))
        .count("number", enrolled.number),
    );
    let root = state.directory.wait_published(enrolled.seq).await?;
    Ok(Json(EnrollResponse {
        user: req.user,
        device: req.device,
        domain: state.domain.to_string(),
        directory_key: state.directory.directory_key().0.to_vec().into(),
        root: root.to_bytes().into(),
        audit: Some(AuditKeyInfo {
            origin: state.audit_key.name().to_owned(),
            key: state.audit_key.hex(),
        }),
        audit_from,
        security_desk,
        accreditation_authority,
    }))
}
