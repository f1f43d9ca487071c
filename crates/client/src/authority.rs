//! The accreditation authority on the network (issue 11): the device asks
//! which key the server names (see [`crate::engine::accreditation`] for
//! what it believes of the answer: only the key it pinned).

use crate::client::Client;
use crate::error::Result;
use reqwest::Method;
use valise_proto::api::AccreditationAuthority;

impl Client {
    /// Asks the server which authority key it names now (housekeeping).
    pub(crate) async fn check_authority(&mut self) -> Result<()> {
        let answer: AccreditationAuthority = self
            .call::<(), _>(Method::GET, "/v1/accreditation-authority", None)
            .await?;
        self.engine
            .learn_authority(answer.accreditation_authority.as_deref())
    }
}
