//! Whose credentials a response carries, from Kratos's own word only. For each distinct
//! credential the owner is, in this order: the identity at a Kratos-authored position of the
//! body (when the credential sits at one, or is the answer's own session cookie); for a
//! session id there whose identity is not expanded, the admin API; otherwise whoami with the
//! credential itself; and for a first-factor session (whoami 403 `session_aal2_required`),
//! the identifier submitted to that login or the address the recovery flow's code went to,
//! resolved through the admin API. Bounded: at most [`MAX_CREDENTIALS`] credentials,
//! [`MAX_LOOKUPS`] admin lookups per kind, [`MAX_OWNERS`] address fetches.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderValue;
use uuid::Uuid;

use super::recovery::RecoveryAddresses;
use super::Enforcer;
use crate::decision::Suspect;
use crate::error::GatewayError;
use crate::inspection::{self, Findings, Submitted};
use crate::kratos::{Credential, LookupError, WhoamiAnswer};

/// Kratos never hands out more than one credential in an answer (a token, repeated in
/// `continue_with`, or a cookie); a response with more distinct ones than this is refused
/// without asking Kratos about any of them.
pub const MAX_CREDENTIALS: usize = 2;
/// Session ids at Kratos-authored positions looked up at the admin API, and identifiers
/// resolved, per response; more fails closed.
pub const MAX_LOOKUPS: usize = 2;
/// Distinct identities whose addresses are fetched per response.
pub const MAX_OWNERS: usize = 4;

/// What the client submitted in a body the gateway read.
#[derive(Debug, Default, Clone)]
pub enum Submission {
    /// No body was read (not a JSON or form submission).
    #[default]
    NotRead,
    /// Copied (the forwarded body's own bytes, shared) but not read yet: most answers never
    /// need it, and [`Submission::read`] reads it when one does.
    Copied {
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    Read(Submitted),
    /// Too large to copy, or not readable the way Kratos reads it: whose account it is
    /// about is unknown.
    Unreadable,
}

impl Submission {
    /// The submission, read the way Kratos reads it if it was only copied.
    pub fn read(&self) -> Cow<'_, Submission> {
        match self {
            Submission::Copied { content_type, body } => Cow::Owned(
                match inspection::submitted(
                    content_type.as_ref().and_then(|v| v.to_str().ok()),
                    body,
                ) {
                    Ok(fields) => Submission::Read(fields),
                    Err(_) => Submission::Unreadable,
                },
            ),
            read => Cow::Borrowed(read),
        }
    }

    /// Reads a copied submission now, in place.
    pub fn read_now(&mut self) {
        if let Cow::Owned(read) = self.read() {
            *self = read;
        }
    }
}

/// What the client's request named, for a session whoami will not attribute.
pub(super) struct Request<'a> {
    pub submission: &'a Submission,
    /// `?flow=` of a recovery submission.
    pub recovery_flow: Option<Uuid>,
    pub recovery_addresses: &'a RecoveryAddresses,
}

/// Whose credentials a response carries, and which sessions Kratos named in it.
#[derive(Debug, Default)]
pub(super) struct Attribution {
    pub suspects: Vec<Suspect>,
    /// Sessions at Kratos-authored positions: what to revoke.
    pub sessions: Vec<Uuid>,
}

impl Attribution {
    fn add_owner(&mut self, id: Uuid, addresses: Option<Arc<[String]>>) {
        match self.suspects.iter_mut().find(|s| s.id == Some(id)) {
            Some(s) => {
                if addresses.is_some() {
                    s.addresses = addresses;
                }
            }
            None => self.suspects.push(Suspect {
                id: Some(id),
                addresses,
            }),
        }
    }

    fn add_session(&mut self, id: Uuid) {
        if !self.sessions.contains(&id) {
            self.sessions.push(id);
        }
    }
}

fn unavailable(e: LookupError) -> GatewayError {
    GatewayError::AttributionUnavailable(e.to_string())
}

/// The distinct credentials of an answer, each with whether Kratos authored its position
/// (a cookie Kratos sets on an answer is that answer's session). More than
/// [`MAX_CREDENTIALS`] (or more tokens than the reader keeps) is refused before any call.
pub(super) fn credentials(
    findings: &Findings,
    cookies: &[String],
) -> Result<Vec<(Credential, bool)>, GatewayError> {
    let mut credentials: Vec<(Credential, bool)> = Vec::new();
    for t in &findings.tokens {
        credentials.push((Credential::Token(t.value.clone()), t.authored));
    }
    for c in cookies {
        let c = Credential::Cookie(c.clone());
        if !credentials.iter().any(|(known, _)| *known == c) {
            credentials.push((c, true));
        }
    }
    if findings.too_many_tokens || credentials.len() > MAX_CREDENTIALS {
        return Err(GatewayError::TooManyCredentials(
            credentials.len().max(MAX_CREDENTIALS + 1),
        ));
    }
    Ok(credentials)
}

/// Learns whose credentials (and Kratos-named sessions) a response carries, from Kratos's
/// own word only. Each distinct credential is asked about once.
pub(super) async fn attribute(
    enforcer: &Enforcer,
    request: &Request<'_>,
    findings: &Findings,
    cookies: &[String],
) -> Result<Attribution, GatewayError> {
    let credentials = credentials(findings, cookies)?;
    let (kratos, metrics) = (&enforcer.kratos, &enforcer.metrics);

    // 1. What the body says at Kratos-authored positions.
    let mut attribution = Attribution::default();
    for id in &findings.identities {
        attribution.add_owner(*id, None);
    }
    let unowned: Vec<Uuid> = findings
        .sessions
        .iter()
        .filter(|s| s.identity_id.is_none())
        .filter_map(|s| s.id)
        .collect();
    if unowned.len() > MAX_LOOKUPS {
        return Err(GatewayError::TooManyCredentials(unowned.len()));
    }
    // A session whose identity is not expanded (a native login still needing a second
    // factor): the admin API knows its owner.
    for session_id in unowned {
        match kratos.session_owner(session_id).await {
            Ok(Some(owner)) => {
                metrics.lookup("admin", "found");
                attribution.add_owner(owner.id, Some(owner.addresses.into()));
            }
            Ok(None) => metrics.lookup("admin", "not_found"),
            Err(e) => {
                metrics.lookup("admin", "error");
                return Err(unavailable(e));
            }
        }
    }
    for s in findings.sessions.iter().filter_map(|s| s.id) {
        attribution.add_session(s);
    }
    let body_speaks = !attribution.suspects.is_empty();
    if body_speaks {
        metrics.lookup("body", "found");
    }

    // 2. Every credential the body does not speak for: whoami with the credential.
    let mut aal2_pending = false;
    for (credential, authored) in credentials {
        if authored && body_speaks {
            continue;
        }
        match kratos.whoami(&credential).await {
            // whoami's session is revoked with all of its identity's (no session named).
            Ok(WhoamiAnswer::Identity { id, .. }) => {
                metrics.lookup("whoami", "found");
                attribution.add_owner(id, None);
            }
            Ok(WhoamiAnswer::NoSession) => metrics.lookup("whoami", "no_session"),
            Ok(WhoamiAnswer::Aal2Required) => {
                metrics.lookup("whoami", "aal2_required");
                aal2_pending = true;
            }
            Err(e) => {
                metrics.lookup("whoami", "error");
                return Err(unavailable(e));
            }
        }
    }

    // 3. A first-factor session whose owner whoami will not reveal: the identifier the
    //    client logged in with, or the address its recovery code was sent to, resolved
    //    through the admin API. Kratos granted the session for exactly that account.
    if aal2_pending {
        resolve_submitted(enforcer, request, &mut attribution).await?;
    }
    with_addresses(enforcer, &mut attribution.suspects).await?;
    Ok(attribution)
}

async fn resolve_submitted(
    enforcer: &Enforcer,
    request: &Request<'_>,
    attribution: &mut Attribution,
) -> Result<(), GatewayError> {
    let metrics = &enforcer.metrics;
    let mut names: Vec<String> = Vec::new();
    match &*request.submission.read() {
        Submission::Read(fields) => names.extend(fields.identifier.iter().cloned()),
        Submission::Unreadable => {
            // Kratos read an account from a body the gateway could not: the owner stays
            // unknown, so the credential does not leave.
            metrics.lookup("identifier", "unreadable");
            return Err(GatewayError::BadRequest(
                "The request could not be checked.",
            ));
        }
        Submission::NotRead | Submission::Copied { .. } => {}
    }
    if let Some(flow) = request
        .recovery_flow
        .and_then(|f| request.recovery_addresses.get(&f))
    {
        if flow.ambiguous {
            metrics.lookup("identifier", "ambiguous");
            return Err(GatewayError::BadRequest(
                "The recovery flow could not be checked.",
            ));
        }
        for a in flow.addresses {
            if !names.contains(&a) {
                names.push(a);
            }
        }
    }
    if names.len() > MAX_LOOKUPS {
        return Err(GatewayError::TooManyCredentials(names.len()));
    }
    for name in names {
        match enforcer.kratos.identities_by_identifier(&name).await {
            Ok(found) => {
                metrics.lookup(
                    "identifier",
                    if found.is_empty() {
                        "not_found"
                    } else {
                        "found"
                    },
                );
                for owner in found.into_iter().take(MAX_OWNERS) {
                    attribution.add_owner(owner.id, Some(owner.addresses.into()));
                }
            }
            Err(e) => {
                metrics.lookup("identifier", "error");
                return Err(unavailable(e));
            }
        }
    }
    Ok(())
}

/// Fetches the addresses of every attributed identity that has none yet, when the list has
/// address entries (one admin lookup each, cached briefly).
pub(super) async fn with_addresses(
    enforcer: &Enforcer,
    suspects: &mut [Suspect],
) -> Result<(), GatewayError> {
    if !enforcer.blocklist.snapshot().has_address_entries() {
        return Ok(());
    }
    let missing = suspects
        .iter()
        .filter(|s| s.addresses.is_none() && s.id.is_some())
        .count();
    if missing > MAX_OWNERS {
        return Err(GatewayError::TooManyCredentials(missing));
    }
    for s in suspects.iter_mut().filter(|s| s.addresses.is_none()) {
        let Some(id) = s.id else { continue };
        match enforcer.kratos.identity_addresses(id).await {
            Ok(addresses) => {
                enforcer.metrics.lookup("admin_identity", "found");
                s.addresses = Some(addresses);
            }
            Err(e) => {
                enforcer.metrics.lookup("admin_identity", "error");
                return Err(unavailable(e));
            }
        }
    }
    Ok(())
}
