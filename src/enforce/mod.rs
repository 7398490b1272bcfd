//! The blocking policies, one per listener, on the decision shared with the web hook
//! (`decision.rs`):
//!
//! - [`PublicPolicy`] (`public.rs`): request phase: ask Kratos for unencoded bodies and read
//!   small self-service submissions (the login identifier, the address a recovery code goes
//!   to) under a deadline; response phase: find every credential the response carries, learn
//!   whose it is from Kratos's own word (`attribution.rs`), and withhold the response if the
//!   decision says so. Bytes the client wrote (echoed `transient_payload`, `ui` values) are
//!   never evidence; the decision looks only at the response, never at how the client
//!   spelled the path.
//! - [`AdminPolicy`] (`admin.rs`): refuse to extend a listed identity's session.
//! - `network.rs`: the public listener's request-phase refusal of listed networks.
//!
//! Both act through one [`Enforcer`]: the list in force, the Kratos client, the revocation
//! queue, the audit.

mod admin;
mod attribution;
mod network;
mod public;
mod read;
mod recovery;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::{Response, StatusCode};
use ipnet::IpNet;
use uuid::Uuid;

use crate::blocklist::store::BlocklistStore;
use crate::body::Body;
use crate::config::{Config, GlobalMode};
use crate::decision::{self, AuditContext, Suspect, Verdict};
use crate::error::GatewayError;
use crate::kratos::KratosClient;
use crate::metrics::Metrics;
use crate::paths;
use crate::proxy::Exchange;
use crate::revocation::{Revoker, Target};
use crate::util::unix_now;

pub use admin::AdminPolicy;
pub use attribution::{MAX_CREDENTIALS, MAX_LOOKUPS, MAX_OWNERS};
pub use public::{PublicCtx, PublicPolicy};
pub use recovery::RecoveryAddresses;

/// Revocations one answer may queue; beyond it the identity-wide revocation covers the rest.
pub const MAX_REVOCATIONS: usize = 4;

/// What both policies decide with and act through.
pub struct Enforcer {
    pub blocklist: Arc<BlocklistStore>,
    pub kratos: KratosClient,
    pub revoker: Revoker,
    pub metrics: Arc<Metrics>,
    /// `enforcement.message`: the `message` of a refusal.
    pub message: String,
    /// `blocklist.mode: report`: every match is a dry run.
    pub report_only: bool,
    /// `forwarding.trusted_proxies`: whose `X-Forwarded-For` names the client address that
    /// `networks:` entries are matched against.
    pub trusted_proxies: Arc<[IpNet]>,
}

impl Enforcer {
    pub fn new(
        config: &Config,
        blocklist: Arc<BlocklistStore>,
        kratos: KratosClient,
        revoker: Revoker,
        metrics: Arc<Metrics>,
    ) -> Self {
        Enforcer {
            blocklist,
            kratos,
            revoker,
            metrics,
            message: config.enforcement.message.clone(),
            report_only: config.blocklist.mode == GlobalMode::Report,
            trusted_proxies: config.forwarding.trusted_proxies.clone().into(),
        }
    }

    /// The decision on `suspects` against the list in force now.
    fn decide(&self, suspects: &[Suspect]) -> Verdict {
        decision::decide(
            &self.blocklist.snapshot(),
            suspects,
            unix_now(),
            self.report_only,
        )
    }

    /// Revokes what Kratos named for the enforced hits: the sessions, or (none named, or
    /// too many) every session of each listed identity. At most [`MAX_REVOCATIONS`].
    fn revoke(&self, verdict: &Verdict, session_ids: &[Uuid]) {
        for t in revocations(verdict, session_ids) {
            self.revoker.revoke(t);
        }
    }

    fn audit(
        &self,
        exchange: &Exchange,
        kind: &'static str,
        verdict: &Verdict,
        session_id: Option<Uuid>,
        status: StatusCode,
    ) {
        decision::audit(
            &self.metrics,
            verdict,
            &AuditContext {
                kind,
                client_ip: Some(exchange.peer.ip),
                request_id: exchange.request_id.as_str(),
                method: exchange.method.as_str(),
                path: exchange.path(),
                session_id,
                outcome: status.as_u16(),
            },
        );
    }

    /// The answer for a response (or request) that cannot be judged: withheld, logged as a
    /// fail-closed audit event.
    fn fail_closed(&self, exchange: &Exchange, error: GatewayError) -> Response<Body> {
        self.metrics.fail_closed(error.label());
        tracing::error!(
            target: "kratos_gate::audit",
            event = "fail_closed",
            kind = paths::request_kind(exchange.path()),
            client_ip = %exchange.peer.ip,
            request_id = %exchange.request_id,
            method = %exchange.method,
            path = %exchange.path(),
            error = %error,
            outcome = error.status().as_u16(),
            "withheld a response that may carry a credential"
        );
        error.into_response(Some(exchange.request_id.as_str()))
    }
}

/// What to revoke for a verdict: the sessions Kratos named, or (none named, or more than
/// [`MAX_REVOCATIONS`]) every session of each enforced identity; at most
/// [`MAX_REVOCATIONS`] either way.
fn revocations(verdict: &Verdict, session_ids: &[Uuid]) -> Vec<Target> {
    let targets: Vec<Target> = if session_ids.is_empty() || session_ids.len() > MAX_REVOCATIONS {
        verdict
            .enforced
            .iter()
            .filter_map(|h| h.identity)
            .map(Target::IdentitySessions)
            .collect()
    } else {
        session_ids.iter().copied().map(Target::Session).collect()
    };
    targets.into_iter().take(MAX_REVOCATIONS).collect()
}
