//! What a modified client does and Valise never does, so that tests can
//! play a malicious member for real (issue 11): change a conversation's
//! ceiling by commit (skipping checks is `VALISE_FAILPOINT=
//! skip_marking_check`, see `crate::failpoint`). Built only with the `failpoints` feature, which test
//! builds enable and release builds never have.

use crate::client::Client;
use crate::engine::ceiling::new_policy;
use crate::error::{ClientError, Result};
use crate::mls;
use openmls::prelude::*;
use reqwest::Method;
use valise_proto::api::ConversationState;
use valise_proto::{ConversationId, ConversationMeta, Label, Payload};

impl Client {
    /// Commits a new policy hash for `conv` (a GroupContextExtensions
    /// proposal) and sends the members its record, as a member who wants
    /// the ceiling raised would.
    pub async fn rogue_set_ceiling(&mut self, conv: &ConversationId, ceiling: Label) -> Result<()> {
        self.pull(0).await?;
        let record = new_policy(ceiling);
        let hash = record
            .hash()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let extensions = mls::group_extensions(Some(hash))?;
        let engine = &self.engine;
        let submit = engine.transaction(|| {
            let submit = engine.with_group(conv, |group, p| {
                let epoch = group.epoch().as_u64();
                let bundle = group
                    .commit_builder()
                    .propose_group_context_extensions(extensions)
                    .map_err(ClientError::mls)?
                    .load_psks(p.storage())
                    .map_err(ClientError::mls)?
                    .create_group_info(true)
                    .build(p.rand(), p.crypto(), &engine.signer, |_| true)
                    .map_err(ClientError::mls)?
                    .stage_commit(p)
                    .map_err(ClientError::mls)?;
                Ok(mls::StagedCommit::from_bundle(bundle)?.submit(epoch))
            })?;
            engine.home.mark_pending_commit(conv, true)?;
            Ok(submit)
        })?;
        let path = format!("/v1/conversations/{conv}/commits");
        let _: ConversationState = self.call(Method::POST, &path, Some(&submit)).await?;
        self.pull(0).await?;
        let mut meta: ConversationMeta = self.engine.meta(conv)?;
        meta.policy = Some(record);
        let id = self.engine.write_payload(conv, &Payload::Meta(meta))?;
        self.deliver(id).await
    }

    /// Asks the server to keep blobs as if a letter of this device named
    /// them, whoever uploaded them; returns those it refused.
    pub async fn rogue_link_blobs(
        &mut self,
        ids: &[valise_proto::BlobId],
    ) -> Result<Vec<valise_proto::BlobId>> {
        self.link_blobs(ids).await
    }
}
