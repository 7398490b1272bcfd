//! The blocking policy. Plugs into the proxy engine's two phases:
//!
//! - request: on the public listener ask Kratos for unencoded bodies and read small
//!   self-service submissions (the login identifier, the address a recovery code goes to),
//!   under a deadline; on the admin listener refuse to extend a listed identity's session.
//! - response (public listener): find every credential the response carries, learn whose it
//!   is from Kratos's own word (a Kratos-authored position of the body, the admin API for a
//!   session id at such a position, or whoami with the credential itself), and withhold the
//!   response if the decision (`decision.rs`) says so. Bytes the client wrote (echoed
//!   `transient_payload`, `ui` values) are never evidence. The decision looks only at the
//!   response, never at how the client spelled the path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use uuid::Uuid;

use crate::util::{parse_uuid, unix_now};
use crate::body::{self, CollectError, Start};
use crate::decision::{self, AuditContext, Suspect, Verdict};
use crate::headers::{self, IDENTITY_ID_HEADER};
use crate::inspection::{self, DecodeError, Findings, Shape, Submitted};
use crate::kratos::{Credential, KratosClient, LookupError, WhoamiAnswer};
use crate::metrics::{Listener, Metrics};
use crate::paths;
use crate::proxy::{Exchange, Policy};
use crate::reload::BlocklistStore;
use crate::respond::{self, full_body, Body, GatewayError};
use crate::revocation::{Revoker, Target};

/// Kratos never hands out more than one credential in an answer (a token, repeated in
/// `continue_with`, or a cookie); a response with more distinct ones than this is refused
/// without asking Kratos about any of them.
pub const MAX_CREDENTIALS: usize = 2;
/// Session ids at Kratos-authored positions looked up at the admin API, and identifiers
/// resolved, per response; more fails closed.
pub const MAX_LOOKUPS: usize = 2;
/// Distinct identities whose addresses are fetched per response.
pub const MAX_OWNERS: usize = 4;
/// Revocations one answer may queue; beyond it the identity-wide revocation covers the rest.
pub const MAX_REVOCATIONS: usize = 4;
/// Addresses remembered per recovery flow; a flow that was sent codes to more is ambiguous.
const MAX_RECOVERY_ADDRESSES: usize = 2;

pub struct Enforcer {
    pub blocklist: Arc<BlocklistStore>,
    pub kratos: KratosClient,
    pub revoker: Revoker,
    pub metrics: Arc<Metrics>,
    pub session_cookie: String,
    /// The `Set-Cookie` that clears the session cookie with Kratos's attributes
    /// (`respond::clearing_cookie`), sent when a browser session is refused.
    pub clear_session_cookie: HeaderValue,
    pub body_limit: usize,
    pub login_body_limit: usize,
    /// Longest wait for a body that must be read before the response can be judged
    /// (`upstream.response_timeout`).
    pub body_timeout: Duration,
    /// Longest wait for a request body the gateway reads (`server.body_read_timeout`).
    pub body_read_timeout: Duration,
    /// Longest time spent attributing one response (`inspection.attribution_timeout`).
    pub attribution_timeout: Duration,
    pub message: String,
    pub browser_redirect: Option<Uri>,
    /// `blocklist.mode: report`: every match is a dry run.
    pub report_only: bool,
    pub recovery_addresses: RecoveryAddresses,
}

/// What the policy keeps about one exchange between request and response.
#[derive(Debug, Default)]
pub struct ExchangeState {
    submission: Submission,
    /// `?flow=` of a recovery submission.
    recovery_flow: Option<Uuid>,
    /// The request presented the session cookie (a browser, not a token client): a refusal
    /// of its session also clears the cookie.
    session_cookie_sent: bool,
}

/// What the client submitted in a body the gateway read.
#[derive(Debug, Default)]
enum Submission {
    /// No body was read (not a JSON or form submission).
    #[default]
    NotRead,
    Read(Submitted),
    /// Too large to copy, or not readable the way Kratos reads it: whose account it is
    /// about is unknown.
    Unreadable,
}

/// The addresses recovery codes were requested for, per recovery flow, as the client
/// submitted them through this gateway. Recovery of an identity with a second factor hands
/// out a session that whoami will not attribute (403 `session_aal2_required`); the address
/// the code went to names its owner. Bounded in entries and age; when full, new flows are not
/// remembered (SECURITY.md says what that leaves open).
pub struct RecoveryAddresses {
    map: DashMap<Uuid, RecoveryFlow>,
    capacity: usize,
    ttl: Duration,
}

#[derive(Debug, Clone)]
struct RecoveryFlow {
    at: Instant,
    addresses: Vec<String>,
    /// Codes were requested for more addresses than are kept.
    ambiguous: bool,
}

impl RecoveryAddresses {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        RecoveryAddresses {
            map: DashMap::new(),
            capacity,
            ttl,
        }
    }

    fn remember(&self, flow: Uuid, address: &str) {
        let address = address.trim().to_lowercase();
        if !self.map.contains_key(&flow) && self.map.len() >= self.capacity {
            let ttl = self.ttl;
            self.map.retain(|_, f| f.at.elapsed() < ttl);
            if self.map.len() >= self.capacity {
                tracing::warn!(
                    capacity = self.capacity,
                    "recovery flows remembered at capacity; a new flow's address is not kept"
                );
                return;
            }
        }
        let mut entry = self.map.entry(flow).or_insert_with(|| RecoveryFlow {
            at: Instant::now(),
            addresses: Vec::new(),
            ambiguous: false,
        });
        if entry.addresses.contains(&address) {
            return;
        }
        if entry.addresses.len() >= MAX_RECOVERY_ADDRESSES {
            entry.ambiguous = true;
        } else {
            entry.addresses.push(address);
        }
    }

    fn get(&self, flow: &Uuid) -> Option<RecoveryFlow> {
        self.map
            .get(flow)
            .filter(|f| f.at.elapsed() < self.ttl)
            .map(|f| f.clone())
    }
}

/// Whose credentials a response carries, and which sessions Kratos named in it.
#[derive(Debug, Default)]
struct Attribution {
    suspects: Vec<Suspect>,
    /// Sessions at Kratos-authored positions: what to revoke.
    sessions: Vec<Uuid>,
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

impl Policy for Enforcer {
    type Ctx = ExchangeState;

    async fn on_request(
        &self,
        exchange: &Exchange,
        state: &mut ExchangeState,
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        match exchange.listener {
            Listener::Public => self.public_request(exchange, state, request).await,
            Listener::Admin => self.admin_request(exchange, request).await,
        }
    }

    async fn on_response(
        &self,
        exchange: &Exchange,
        state: ExchangeState,
        response: Response<Incoming>,
    ) -> Response<Body> {
        match exchange.listener {
            Listener::Admin => response.map(|b| b.map_err(Into::into).boxed()),
            Listener::Public => {
                // Kratos is spoken to in HTTP/1.1, where only a chunked body has trailers; a
                // body of known length has none to filter.
                let may_have_trailers = http_body::Body::size_hint(response.body())
                    .exact()
                    .is_none();
                let answer = match self.public_response(exchange, &state, response).await {
                    Ok(r) => r,
                    Err(e) => self.fail_closed(exchange, e),
                };
                if may_have_trailers {
                    self.without_trailer_cookies(exchange, answer)
                } else {
                    answer
                }
            }
        }
    }
}

impl Enforcer {
    async fn public_request(
        &self,
        exchange: &Exchange,
        state: &mut ExchangeState,
        mut request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        state.session_cookie_sent =
            respond::presents_session_cookie(request.headers(), &self.session_cookie);
        // The admin API never belongs on the public side: Kratos would answer with a redirect
        // that reveals the admin URL, and where both share one origin (Ory Network) an
        // extend sent here would bypass the admin listener's check.
        if paths::is_admin_path(request.uri().path()) {
            tracing::info!(request_id = %exchange.request_id.as_str(), path = %exchange.path(), "admin path refused on the public listener");
            return Err(GatewayError::NotFound.into_response(Some(exchange.request_id.as_str())));
        }
        // Bodies the gateway may have to read must arrive readable (CONTRACT.md §10).
        request.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if !matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH
        ) {
            return Ok(request);
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_form_or_json = content_type.as_deref().is_some_and(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.contains("json") || ct.contains("application/x-www-form-urlencoded")
        });
        if !is_form_or_json {
            return Ok(request);
        }
        let (parts, body) = request.into_parts();
        let copied = tokio::time::timeout(
            self.body_read_timeout,
            body::copy_if_small(body, self.login_body_limit),
        )
        .await;
        let (copy, replay) = match copied {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(request_id = %exchange.request_id, error = %e, "client request body broke off");
                return Err(
                    GatewayError::BadRequest("The request body could not be read.")
                        .into_response(Some(exchange.request_id.as_str())),
                );
            }
            Err(_) => {
                let e = GatewayError::RequestBodyTimeout(self.body_read_timeout);
                self.metrics.fail_closed(e.label());
                tracing::info!(request_id = %exchange.request_id, client_ip = %exchange.peer.ip, path = %exchange.path(), error = %e, "request body too slow");
                return Err(e.into_response(Some(exchange.request_id.as_str())));
            }
        };
        state.submission = match copy.map(|c| inspection::submitted(content_type.as_deref(), &c)) {
            Some(Ok(fields)) => Submission::Read(fields),
            Some(Err(_)) | None => Submission::Unreadable,
        };
        if paths::request_kind(exchange.path()) == "recovery" {
            state.recovery_flow = flow_id(&parts.uri);
            if let (Some(flow), Submission::Read(fields)) = (state.recovery_flow, &state.submission)
            {
                if let (Some(email), false) = (&fields.email, fields.has_code) {
                    self.recovery_addresses.remember(flow, email);
                }
            }
        }
        Ok(Request::from_parts(parts, replay.boxed()))
    }

    /// `PATCH /admin/sessions/{id}/extend`: Kratos extends sessions of disabled identities
    /// and can revive expired ones, so the owner is checked before the call goes through.
    async fn admin_request(
        &self,
        exchange: &Exchange,
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        let Some(raw_id) = paths::extend_session_id(request.uri().path()) else {
            return Ok(request);
        };
        // Every spelling Kratos's UUID parser accepts names the same session; anything it
        // would refuse is refused here, so the two never disagree.
        let Some(session_id) = paths::parse_uuid_as_kratos_does(&raw_id) else {
            return Err(respond::malformed_uuid(&raw_id));
        };
        let owner = match self.kratos.session_owner(session_id).await {
            Ok(o) => {
                self.metrics
                    .lookup("admin", if o.is_some() { "found" } else { "not_found" });
                o
            }
            Err(e) => {
                self.metrics.lookup("admin", "error");
                return Err(self.fail_closed(
                    exchange,
                    GatewayError::AttributionUnavailable(e.to_string()),
                ));
            }
        };
        let Some(owner) = owner else {
            return Ok(request); // Unknown session: Kratos answers 404 itself.
        };
        let suspect = Suspect {
            id: Some(owner.id),
            addresses: Some(owner.addresses.into()),
        };
        let verdict = self.decide(&[suspect]);
        if verdict.is_empty() {
            return Ok(request);
        }
        self.audit(
            exchange,
            "extend",
            &verdict,
            Some(session_id),
            StatusCode::FORBIDDEN,
        );
        if !verdict.blocks() {
            return Ok(request);
        }
        self.revoker.revoke(Target::Session(session_id));
        Err(respond::identity_disabled(
            &self.message,
            Some(exchange.request_id.as_str()),
        ))
    }

    async fn public_response(
        &self,
        exchange: &Exchange,
        state: &ExchangeState,
        response: Response<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, incoming) = response.into_parts();
        if parts
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|v| headers::hides_session_cookie(v, &self.session_cookie))
        {
            return Err(GatewayError::UnreadableResponse(
                "a session cookie folded into another Set-Cookie line".to_owned(),
            ));
        }
        let cookies = headers::session_cookies(&parts.headers, &self.session_cookie);

        // whoami names the identity in a header: decide on it without reading the body.
        let header_identity = parts
            .headers
            .get(&IDENTITY_ID_HEADER)
            .map(|v| v.to_str().ok().and_then(parse_uuid));
        if let Some(Some(identity)) = header_identity {
            self.metrics.lookup("header", "found");
            let mut suspects = [Suspect {
                id: Some(identity),
                addresses: None,
            }];
            self.with_addresses(&mut suspects).await?;
            let verdict = self.decide(&suspects);
            if verdict.is_empty() {
                return Ok(Response::from_parts(
                    parts,
                    incoming.map_err(Into::into).boxed(),
                ));
            }
            let kind = kind_of(exchange, "whoami");
            self.audit(exchange, kind, &verdict, None, StatusCode::UNAUTHORIZED);
            if !verdict.blocks() {
                return Ok(Response::from_parts(
                    parts,
                    incoming.map_err(Into::into).boxed(),
                ));
            }
            self.revoke(&verdict, &[]);
            return Ok(respond::signed_out(
                respond::WHOAMI_401,
                self.clearing_cookie(state),
            ));
        }

        // Find credentials and sessions in the body, reading it only if it may hold them.
        let (findings, body) = self.read_findings(&parts.headers, incoming).await?;
        if !findings.vouches() && cookies.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }

        let attribution = tokio::time::timeout(
            self.attribution_timeout,
            self.attribute(state, &findings, &cookies),
        )
        .await
        .map_err(|_| {
            GatewayError::AttributionUnavailable(format!(
                "attribution took longer than {:?}",
                self.attribution_timeout
            ))
        })??;

        let verdict = self.decide(&attribution.suspects);
        if verdict.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }
        let (kind, status) = match findings.shape {
            Shape::Session => (kind_of(exchange, "whoami"), StatusCode::UNAUTHORIZED),
            Shape::SessionList => ("sessions", StatusCode::UNAUTHORIZED),
            Shape::Other if parts.status.is_redirection() && self.browser_redirect.is_some() => {
                (kind_of(exchange, "other"), StatusCode::SEE_OTHER)
            }
            Shape::Other => (kind_of(exchange, "other"), StatusCode::FORBIDDEN),
        };
        let session_id = attribution.sessions.first().copied();
        if !verdict.blocks() {
            self.audit(exchange, kind, &verdict, session_id, status);
            return Ok(Response::from_parts(parts, body));
        }
        let answer = match findings.shape {
            Shape::Session => respond::signed_out(respond::WHOAMI_401, self.clearing_cookie(state)),
            Shape::SessionList => {
                respond::signed_out(respond::SESSIONS_401, self.clearing_cookie(state))
            }
            Shape::Other if parts.status.is_redirection() => {
                let mut r = respond::identity_disabled_browser(
                    &self.message,
                    self.browser_redirect.as_ref(),
                );
                keep_other_cookies(&parts.headers, r.headers_mut(), &self.session_cookie);
                self.clear_settings_session(exchange, state, r.headers_mut());
                r
            }
            Shape::Other => {
                let mut r =
                    respond::identity_disabled(&self.message, Some(exchange.request_id.as_str()));
                keep_other_cookies(&parts.headers, r.headers_mut(), &self.session_cookie);
                self.clear_settings_session(exchange, state, r.headers_mut());
                r
            }
        };
        self.audit(exchange, kind, &verdict, session_id, answer.status());
        self.revoke(&verdict, &attribution.sessions);
        Ok(answer)
    }

    /// Reads the body if it may carry a credential; otherwise leaves it streaming. Reading
    /// is bounded in time: a Kratos that stalls mid-body gets a 504, not a request (and an
    /// upstream connection) held for as long as Kratos keeps it open.
    async fn read_findings(
        &self,
        headers: &http::HeaderMap,
        incoming: Incoming,
    ) -> Result<(Findings, Body), GatewayError> {
        tokio::time::timeout(
            self.body_timeout,
            self.read_body_findings(headers, incoming),
        )
        .await
        .map_err(|_| GatewayError::UpstreamTimeout(self.body_timeout))?
    }

    async fn read_body_findings(
        &self,
        headers: &http::HeaderMap,
        incoming: Incoming,
    ) -> Result<(Findings, Body), GatewayError> {
        let limit = self.body_limit;
        // Every field line counts: codings listed over several lines apply in order, like
        // one comma-separated list (RFC 9110 5.3, 8.4).
        let encoding = headers
            .contains_key(header::CONTENT_ENCODING)
            .then(|| {
                headers
                    .get_all(header::CONTENT_ENCODING)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("\u{fffd}").trim())
                    .filter(|e| !e.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));

        if let Some(encoding) = encoding {
            // An encoded body cannot be sniffed; read (bounded), decode (bounded), inspect,
            // and pass the original bytes on.
            let raw = collect(incoming, limit).await?;
            let decoded = inspection::decode(&encoding, &raw, limit).map_err(|e| match e {
                DecodeError::TooLarge => GatewayError::ResponseTooLarge { limit },
                DecodeError::Unsupported(c) => {
                    GatewayError::UnreadableResponse(format!("Content-Encoding {c}"))
                }
                DecodeError::Corrupt(m) => {
                    GatewayError::UnreadableResponse(format!("Content-Encoding {encoding}: {m}"))
                }
            })?;
            let findings = match inspection::first_significant_byte(&decoded) {
                Some(b) if inspection::may_be_json(b) => inspect(&decoded)?,
                _ => Findings::default(),
            };
            return Ok((findings, full_body(raw)));
        }

        let (start, replay) = body::sniff(incoming, limit)
            .await
            .map_err(|e| GatewayError::UpstreamBroken(e.to_string()))?;
        match start {
            Start::Byte(b) if inspection::may_be_json(b) => {
                let bytes = collect(replay, limit).await?;
                let findings = inspect(&bytes)?;
                Ok((findings, full_body(bytes)))
            }
            Start::TooMuchWhitespace => Err(GatewayError::ResponseTooLarge { limit }),
            Start::Byte(_) | Start::Empty => Ok((Findings::default(), replay.boxed())),
        }
    }

    /// Fetches the addresses of every attributed identity that has none yet, when the list
    /// has address entries (one admin lookup each, cached briefly).
    async fn with_addresses(&self, suspects: &mut [Suspect]) -> Result<(), GatewayError> {
        if !self.blocklist.snapshot().has_address_entries() {
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
            match self.kratos.identity_addresses(id).await {
                Ok(addresses) => {
                    self.metrics.lookup("admin_identity", "found");
                    s.addresses = Some(addresses);
                }
                Err(e) => {
                    self.metrics.lookup("admin_identity", "error");
                    return Err(GatewayError::AttributionUnavailable(e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Learns whose credentials (and Kratos-named sessions) a response carries, from
    /// Kratos's own word only. Bounded: at most [`MAX_CREDENTIALS`] credentials and
    /// [`MAX_LOOKUPS`] admin lookups per kind, each distinct one asked about once.
    async fn attribute(
        &self,
        state: &ExchangeState,
        findings: &Findings,
        cookies: &[String],
    ) -> Result<Attribution, GatewayError> {
        let unavailable = |e: LookupError| GatewayError::AttributionUnavailable(e.to_string());
        let mut credentials: Vec<(Credential, bool)> = Vec::new();
        for t in &findings.tokens {
            credentials.push((Credential::Token(t.value.clone()), t.authored));
        }
        for c in cookies {
            let c = Credential::Cookie(c.clone());
            if !credentials.iter().any(|(known, _)| *known == c) {
                // A cookie set by Kratos on an answer is that answer's session.
                credentials.push((c, true));
            }
        }
        if findings.too_many_tokens || credentials.len() > MAX_CREDENTIALS {
            return Err(GatewayError::TooManyCredentials(
                credentials.len().max(MAX_CREDENTIALS + 1),
            ));
        }

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
            match self.kratos.session_owner(session_id).await {
                Ok(Some(owner)) => {
                    self.metrics.lookup("admin", "found");
                    attribution.add_owner(owner.id, Some(owner.addresses.into()));
                }
                Ok(None) => self.metrics.lookup("admin", "not_found"),
                Err(e) => {
                    self.metrics.lookup("admin", "error");
                    return Err(unavailable(e));
                }
            }
        }
        for s in findings.sessions.iter().filter_map(|s| s.id) {
            attribution.add_session(s);
        }
        if !attribution.suspects.is_empty() {
            self.metrics.lookup("body", "found");
        }
        let body_speaks = !attribution.suspects.is_empty();

        // 2. Every credential the body does not speak for: whoami with the credential.
        let mut aal2_pending = false;
        for (credential, authored) in credentials {
            if authored && body_speaks {
                continue;
            }
            match self.kratos.whoami(&credential).await {
                // whoami's session is revoked with all of its identity's (no session named).
                Ok(WhoamiAnswer::Identity { id, .. }) => {
                    self.metrics.lookup("whoami", "found");
                    attribution.add_owner(id, None);
                }
                Ok(WhoamiAnswer::NoSession) => self.metrics.lookup("whoami", "no_session"),
                Ok(WhoamiAnswer::Aal2Required) => {
                    self.metrics.lookup("whoami", "aal2_required");
                    aal2_pending = true;
                }
                Err(e) => {
                    self.metrics.lookup("whoami", "error");
                    return Err(unavailable(e));
                }
            }
        }

        // 3. A first-factor session whose owner whoami will not reveal: the identifier the
        //    client logged in with, or the address its recovery code was sent to, resolved
        //    through the admin API. Kratos granted the session for exactly that account.
        if aal2_pending {
            self.resolve_submitted(state, &mut attribution).await?;
        }
        self.with_addresses(&mut attribution.suspects).await?;
        Ok(attribution)
    }

    async fn resolve_submitted(
        &self,
        state: &ExchangeState,
        attribution: &mut Attribution,
    ) -> Result<(), GatewayError> {
        let mut names: Vec<String> = Vec::new();
        match &state.submission {
            Submission::Read(fields) => names.extend(fields.identifier.iter().cloned()),
            Submission::Unreadable => {
                // Kratos read an account from a body the gateway could not: the owner stays
                // unknown, so the credential does not leave.
                self.metrics.lookup("identifier", "unreadable");
                return Err(GatewayError::BadRequest(
                    "The request could not be checked.",
                ));
            }
            Submission::NotRead => {}
        }
        if let Some(flow) = state
            .recovery_flow
            .and_then(|f| self.recovery_addresses.get(&f))
        {
            if flow.ambiguous {
                self.metrics.lookup("identifier", "ambiguous");
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
            match self.kratos.identities_by_identifier(&name).await {
                Ok(found) => {
                    self.metrics.lookup(
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
                    self.metrics.lookup("identifier", "error");
                    return Err(GatewayError::AttributionUnavailable(e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// The clearing `Set-Cookie`, when the refused request presented the session cookie.
    fn clearing_cookie(&self, state: &ExchangeState) -> Option<&HeaderValue> {
        state
            .session_cookie_sent
            .then_some(&self.clear_session_cookie)
    }

    /// A refused settings answer signs the browser out: its session is the one refused.
    fn clear_settings_session(
        &self,
        exchange: &Exchange,
        state: &ExchangeState,
        headers: &mut http::HeaderMap,
    ) {
        if paths::request_kind(exchange.path()) == "settings" {
            if let Some(c) = self.clearing_cookie(state) {
                headers.append(header::SET_COOKIE, c.clone());
            }
        }
    }

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
        let targets: Vec<Target> = if session_ids.is_empty() || session_ids.len() > MAX_REVOCATIONS
        {
            verdict
                .enforced
                .iter()
                .filter_map(|h| h.identity)
                .map(Target::IdentitySessions)
                .collect()
        } else {
            session_ids.iter().copied().map(Target::Session).collect()
        };
        for t in targets.into_iter().take(MAX_REVOCATIONS) {
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

    /// Removes session `Set-Cookie` fields from a streamed body's trailers. Trailers arrive
    /// after the head has gone out, when the response can no longer be withheld, so a
    /// credential in them is never attributed: it is dropped for everyone (HTTP/2 clients
    /// would otherwise receive it; hyper never writes it to HTTP/1.1 clients).
    fn without_trailer_cookies(
        &self,
        exchange: &Exchange,
        answer: Response<Body>,
    ) -> Response<Body> {
        let session_cookie = self.session_cookie.clone();
        let metrics = Arc::clone(&self.metrics);
        let request_id = exchange.request_id.as_str().to_owned();
        let method = exchange.method.clone();
        let path = exchange.path().to_owned();
        let client_ip = exchange.peer.ip;
        answer.map(|body| {
            body.map_frame(move |frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    let dropped =
                        headers::strip_session_set_cookies(&mut trailers, &session_cookie);
                    if dropped > 0 {
                        metrics.fail_closed("trailer_cookie");
                        tracing::warn!(
                            target: "kratos_gate::audit",
                            event = "trailer_cookie_dropped",
                            dropped,
                            client_ip = %client_ip,
                            request_id = %request_id,
                            method = %method,
                            path = %path,
                            "dropped a session cookie sent in response trailers"
                        );
                    }
                    http_body::Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
            .boxed()
        })
    }

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

fn inspect(bytes: &[u8]) -> Result<Findings, GatewayError> {
    inspection::inspect_json(bytes).map_err(|_| {
        GatewayError::UnreadableResponse("malformed JSON that mentions a session token".to_owned())
    })
}

/// The `flow` query parameter, when it is a UUID.
fn flow_id(uri: &http::Uri) -> Option<Uuid> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "flow")
        .and_then(|(_, v)| paths::parse_uuid_as_kratos_does(&v))
}

/// The audit kind: from the request path when it names one, else `fallback`.
fn kind_of(exchange: &Exchange, fallback: &'static str) -> &'static str {
    match paths::request_kind(exchange.path()) {
        "other" => fallback,
        k => k,
    }
}

async fn collect<B>(body: B, limit: usize) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<respond::BoxError>,
{
    body::collect_limited(body, limit)
        .await
        .map_err(|e| match e {
            CollectError::TooLarge => GatewayError::ResponseTooLarge { limit },
            CollectError::Body(e) => GatewayError::UpstreamBroken(e.to_string()),
        })
}

/// Copies the upstream's non-session `Set-Cookie`s (CSRF) onto the gateway's answer.
fn keep_other_cookies(from: &http::HeaderMap, to: &mut http::HeaderMap, session_cookie: &str) {
    for v in from.get_all(header::SET_COOKIE) {
        if !headers::is_session_cookie_name(headers::set_cookie_name(v.as_bytes()), session_cookie)
        {
            to.append(header::SET_COOKIE, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn recovery_addresses_are_kept_per_flow_normalised_and_deduplicated() {
        let r = RecoveryAddresses::new(10, Duration::from_secs(60));
        r.remember(flow(1), " Listed@Example.COM ");
        r.remember(flow(1), "listed@example.com");
        r.remember(flow(2), "other@example.com");
        let f = r.get(&flow(1)).expect("remembered");
        assert_eq!(f.addresses, vec!["listed@example.com"]);
        assert!(!f.ambiguous);
        assert_eq!(
            r.get(&flow(2)).expect("r").addresses,
            vec!["other@example.com"]
        );
        assert!(r.get(&flow(3)).is_none());
    }

    /// A flow sent codes to more addresses than are kept cannot say whose the session is.
    #[test]
    fn a_flow_with_too_many_addresses_is_ambiguous() {
        let r = RecoveryAddresses::new(10, Duration::from_secs(60));
        for a in ["a@x.example", "b@x.example", "c@x.example"] {
            r.remember(flow(1), a);
        }
        let f = r.get(&flow(1)).expect("remembered");
        assert!(f.ambiguous);
        assert_eq!(f.addresses.len(), MAX_RECOVERY_ADDRESSES);
    }

    /// When full, old flows are kept and new ones are not: flooding cannot make the gateway
    /// forget a flow it already knows.
    #[test]
    fn when_full_new_flows_are_not_remembered_and_known_ones_stay() {
        let r = RecoveryAddresses::new(2, Duration::from_secs(60));
        r.remember(flow(1), "a@x.example");
        r.remember(flow(2), "b@x.example");
        r.remember(flow(3), "c@x.example");
        assert!(r.get(&flow(3)).is_none());
        assert!(r.get(&flow(1)).is_some());
        // A known flow still takes a second address.
        r.remember(flow(1), "d@x.example");
        assert_eq!(r.get(&flow(1)).expect("r").addresses.len(), 2);
    }

    #[test]
    fn expired_flows_are_forgotten_and_make_room() {
        let r = RecoveryAddresses::new(1, Duration::ZERO);
        r.remember(flow(1), "a@x.example");
        assert!(r.get(&flow(1)).is_none());
        r.remember(flow(2), "b@x.example");
        assert_eq!(r.map.len(), 1);
    }

    #[test]
    fn the_flow_id_comes_from_the_query_in_any_uuid_spelling() {
        let uri: Uri = "/self-service/recovery?x=1&flow=5FF66179C2404703B0D8494592CEFFF5"
            .parse()
            .expect("uri");
        assert_eq!(
            flow_id(&uri).map(|u| u.to_string()).as_deref(),
            Some("5ff66179-c240-4703-b0d8-494592cefff5")
        );
        let none: Uri = "/self-service/recovery?flow=nope".parse().expect("uri");
        assert_eq!(flow_id(&none), None);
    }
}
