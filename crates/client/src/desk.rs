//! The security desk on the network (issue 10): the device asks its server
//! which desk the organisation names (see [`crate::engine::desk`] for what
//! it believes of the answer), and the desk's own devices read the reports
//! they received.

use crate::client::Client;
use crate::error::Result;
use crate::home::desk::{DeskReport, DeskState};
use reqwest::Method;
use valise_proto::UserId;
use valise_proto::api::SecurityDesk;

impl Client {
    /// Asks the server which desk it names now (during housekeeping: once
    /// per [`crate::sync::HOUSEKEEPING_EVERY`] in a long-running client).
    pub(crate) async fn check_security_desk(&mut self) -> Result<()> {
        let answer: SecurityDesk = self
            .call::<(), _>(Method::GET, "/v1/security-desk", None)
            .await?;
        self.engine.learn_desk(answer.security_desk.as_ref())
    }

    /// What this device knows of its security desk.
    pub fn security_desk(&self) -> Result<DeskState> {
        self.engine.security_desk()
    }

    /// Accepts the desk the server names now, after `security_desk_changed`.
    pub fn accept_desk(&self) -> Result<Option<UserId>> {
        self.engine.accept_desk()
    }

    /// Alert reports received (on the desk's devices) with a local id
    /// above `after`, oldest first.
    pub fn desk_reports(&self, after: i64) -> Result<Vec<DeskReport>> {
        self.engine.home.reports_after(after)
    }

    /// The last report a follower wrote out (`alerts --desk --follow`).
    pub fn printed_report(&self) -> Result<i64> {
        self.engine.home.printed_report()
    }

    /// Notes that report `id` was written out and flushed: a follower
    /// restarted resumes after it.
    pub fn set_printed_report(&self, id: i64) -> Result<()> {
        self.engine.home.set_printed_report(id)
    }
}
