//! The blocking policy. Plugs into the proxy engine's two phases:
//!
//! - request: on the public listener ask Kratos for unencoded bodies and keep a copy of small
//!   request bodies (the login identifier); on the admin listener refuse to extend a listed
//!   identity's session.
//! - response (public listener): find every credential and every session the response
//!   carries or vouches for, attribute each to an identity, and withhold the response if any
//!   identity is listed. The decision looks only at the response, never at how the client
//!   spelled the path.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use uuid::Uuid;

use crate::blocklist::{parse_uuid, unix_now, Blocklist, Entry, Mode};
use crate::body::{self, CollectError, Start};
use crate::headers::{self, IDENTITY_ID_HEADER};
use crate::inspection::{self, DecodeError, Findings, Shape};
use crate::kratos::{Credential, KratosClient, LookupError, Owner, WhoamiAnswer};
use crate::metrics::{KindLabels, Listener, Metrics};
use crate::paths;
use crate::proxy::{Exchange, Policy};
use crate::reload::BlocklistStore;
use crate::respond::{self, full_body, Body, GatewayError};
use crate::revocation::{Revoker, Target};

pub struct Enforcer {
    pub blocklist: Arc<BlocklistStore>,
    pub kratos: KratosClient,
    pub revoker: Revoker,
    pub metrics: Arc<Metrics>,
    pub session_cookie: String,
    pub body_limit: usize,
    pub login_body_limit: usize,
    /// Longest wait for a body that must be read before the response can be judged
    /// (`upstream.response_timeout`).
    pub body_timeout: std::time::Duration,
    pub email_traits: Vec<String>,
    pub message: String,
    pub browser_redirect: Option<Uri>,
    /// `blocklist.mode: report`: every match is a dry run.
    pub report_only: bool,
}

/// An identity a response was attributed to: its id when known, and its addresses.
#[derive(Debug, Clone, Default)]
struct Suspect {
    id: Option<Uuid>,
    addresses: Vec<String>,
}

impl From<Owner> for Suspect {
    fn from(o: Owner) -> Self {
        Suspect {
            id: Some(o.id),
            addresses: o.addresses,
        }
    }
}

/// A listed identity found in a response, and what on the list matched it.
struct Hit {
    identity: Option<Uuid>,
    matched: String,
    entry: Entry,
}

/// The matches of one decision, split by whether they are enforced.
struct Verdict {
    enforced: Vec<Hit>,
    reported: Vec<Hit>,
}

impl Verdict {
    /// Nobody listed: the response passes, nothing to log (the common case, kept cheap).
    fn is_empty(&self) -> bool {
        self.enforced.is_empty() && self.reported.is_empty()
    }
}

impl Policy for Enforcer {
    async fn on_request(
        &self,
        exchange: &mut Exchange,
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        match exchange.listener {
            Listener::Public => self.public_request(exchange, request).await,
            Listener::Admin => self.admin_request(exchange, request).await,
        }
    }

    async fn on_response(
        &self,
        exchange: &Exchange,
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
                let answer = match self.public_response(exchange, response).await {
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
        exchange: &mut Exchange,
        mut request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
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
            ct.contains("json") || ct.starts_with("application/x-www-form-urlencoded")
        });
        if !is_form_or_json {
            return Ok(request);
        }
        let (parts, body) = request.into_parts();
        match body::copy_if_small(body, self.login_body_limit).await {
            Ok((copy, replay)) => {
                match copy {
                    Some(copy) => {
                        exchange.login_identifier =
                            inspection::login_identifier(content_type.as_deref(), &copy)
                    }
                    None => exchange.login_body_too_large = true,
                }
                Ok(Request::from_parts(parts, replay.boxed()))
            }
            Err(e) => {
                tracing::debug!(request_id = %exchange.request_id, error = %e, "client request body broke off");
                Err(
                    GatewayError::BadRequest("The request body could not be read.")
                        .into_response(Some(exchange.request_id.as_str())),
                )
            }
        }
    }

    /// `PATCH /admin/sessions/{id}/extend`: Kratos extends sessions of disabled identities
    /// and can revive expired ones, so the owner is checked before the call goes through.
    async fn admin_request(
        &self,
        exchange: &mut Exchange,
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        let Some(raw_id) = paths::extend_session_id(request.uri().path()) else {
            return Ok(request);
        };
        let Some(session_id) = parse_uuid(&raw_id) else {
            return Ok(request); // Kratos answers 400 for a malformed id.
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
        let verdict = self.judge(&[Suspect::from(owner)]);
        self.report(
            exchange,
            "extend",
            &verdict.reported,
            Some(session_id),
            StatusCode::FORBIDDEN,
        );
        if verdict.enforced.is_empty() {
            return Ok(request);
        }
        self.record_block(
            exchange,
            "extend",
            &verdict.enforced,
            Some(session_id),
            StatusCode::FORBIDDEN,
        );
        self.revoker.revoke(Target::Session(session_id));
        Err(respond::identity_disabled(
            &self.message,
            Some(exchange.request_id.as_str()),
        ))
    }

    async fn public_response(
        &self,
        exchange: &Exchange,
        response: Response<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, incoming) = response.into_parts();
        let cookies = headers::session_cookies(&parts.headers, &self.session_cookie);

        // whoami names the identity in a header: decide on it without reading the body.
        let header_identity = parts
            .headers
            .get(&IDENTITY_ID_HEADER)
            .map(|v| v.to_str().ok().and_then(parse_uuid));
        if let Some(Some(identity)) = header_identity {
            self.metrics.lookup("header", "found");
            let suspect = self.with_addresses(identity).await?;
            let verdict = self.judge(&[suspect]);
            if verdict.is_empty() {
                return Ok(Response::from_parts(
                    parts,
                    incoming.map_err(Into::into).boxed(),
                ));
            }
            let kind = kind_of(exchange, "whoami");
            self.report(
                exchange,
                kind,
                &verdict.reported,
                None,
                StatusCode::UNAUTHORIZED,
            );
            if verdict.enforced.is_empty() {
                return Ok(Response::from_parts(
                    parts,
                    incoming.map_err(Into::into).boxed(),
                ));
            }
            self.record_block(
                exchange,
                kind,
                &verdict.enforced,
                None,
                StatusCode::UNAUTHORIZED,
            );
            self.revoke(&verdict.enforced, &[]);
            return Ok(respond::signed_out(respond::WHOAMI_401));
        }

        // Find credentials and sessions in the body, reading it only if it may hold them.
        let (findings, body) = self.read_findings(&parts.headers, incoming).await?;
        if !findings.vouches() && cookies.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }

        let suspects = if findings.identities.is_empty() && findings.addresses.is_empty() {
            self.attribute(exchange, &findings, &cookies).await?
        } else {
            self.metrics.lookup("body", "found");
            body_suspects(&findings)
        };

        let verdict = self.judge(&suspects);
        if verdict.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }
        let session_ids: Vec<Uuid> = findings.sessions.iter().filter_map(|s| s.id).collect();
        let (kind, status) = match findings.shape {
            Shape::Session => (kind_of(exchange, "whoami"), StatusCode::UNAUTHORIZED),
            Shape::SessionList => ("sessions", StatusCode::UNAUTHORIZED),
            Shape::Other if parts.status.is_redirection() && self.browser_redirect.is_some() => {
                (kind_of(exchange, "other"), StatusCode::SEE_OTHER)
            }
            Shape::Other => (kind_of(exchange, "other"), StatusCode::FORBIDDEN),
        };
        self.report(
            exchange,
            kind,
            &verdict.reported,
            session_ids.first().copied(),
            status,
        );
        if verdict.enforced.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }
        let answer = match findings.shape {
            Shape::Session => respond::signed_out(respond::WHOAMI_401),
            Shape::SessionList => respond::signed_out(respond::SESSIONS_401),
            Shape::Other if parts.status.is_redirection() => {
                let mut r = respond::identity_disabled_browser(
                    &self.message,
                    self.browser_redirect.as_ref(),
                );
                keep_other_cookies(&parts.headers, r.headers_mut(), &self.session_cookie);
                r
            }
            Shape::Other => {
                let mut r =
                    respond::identity_disabled(&self.message, Some(exchange.request_id.as_str()));
                keep_other_cookies(&parts.headers, r.headers_mut(), &self.session_cookie);
                r
            }
        };
        self.record_block(
            exchange,
            kind,
            &verdict.enforced,
            session_ids.first().copied(),
            answer.status(),
        );
        self.revoke(&verdict.enforced, &session_ids);
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
                Some(b) if inspection::may_be_json(b) => self.inspect(&decoded)?,
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
                let findings = self.inspect(&bytes)?;
                Ok((findings, full_body(bytes)))
            }
            Start::TooMuchWhitespace => Err(GatewayError::ResponseTooLarge { limit }),
            Start::Byte(_) | Start::Empty => Ok((Findings::default(), replay.boxed())),
        }
    }

    fn inspect(&self, bytes: &[u8]) -> Result<Findings, GatewayError> {
        inspection::inspect_json(bytes, &self.email_traits).map_err(|_| {
            GatewayError::UnreadableResponse(
                "malformed JSON that mentions a session token".to_owned(),
            )
        })
    }

    /// The identity behind a whoami header, with its addresses when the list has address
    /// entries (one admin lookup, cached briefly).
    async fn with_addresses(&self, id: Uuid) -> Result<Suspect, GatewayError> {
        if !self.blocklist.snapshot().has_address_entries() {
            return Ok(Suspect {
                id: Some(id),
                addresses: Vec::new(),
            });
        }
        match self.kratos.identity_addresses(id).await {
            Ok(addresses) => {
                self.metrics.lookup("admin_identity", "found");
                Ok(Suspect {
                    id: Some(id),
                    addresses: addresses.to_vec(),
                })
            }
            Err(e) => {
                self.metrics.lookup("admin_identity", "error");
                Err(GatewayError::AttributionUnavailable(e.to_string()))
            }
        }
    }

    /// Finds the owner of a credential whose response does not name it.
    async fn attribute(
        &self,
        exchange: &Exchange,
        findings: &Findings,
        cookies: &[String],
    ) -> Result<Vec<Suspect>, GatewayError> {
        let mut owners: Vec<Suspect> = Vec::new();
        let unavailable = |e: LookupError| GatewayError::AttributionUnavailable(e.to_string());

        // 1. A session id in the body: the admin API knows its identity.
        for session_id in findings.sessions.iter().filter_map(|s| s.id) {
            match self.kratos.session_owner(session_id).await {
                Ok(Some(owner)) => {
                    self.metrics.lookup("admin", "found");
                    owners.push(owner.into());
                }
                Ok(None) => self.metrics.lookup("admin", "not_found"),
                Err(e) => {
                    self.metrics.lookup("admin", "error");
                    return Err(unavailable(e));
                }
            }
        }
        if !owners.is_empty() {
            return Ok(owners);
        }

        // 2. Ask whoami with the credential itself.
        let credentials = findings
            .tokens
            .iter()
            .cloned()
            .map(Credential::Token)
            .chain(cookies.iter().cloned().map(Credential::Cookie));
        let mut aal2_pending = false;
        for credential in credentials {
            match self.kratos.whoami(&credential).await {
                Ok(WhoamiAnswer::Identity(owner)) => {
                    self.metrics.lookup("whoami", "found");
                    let owner = if owner.addresses.is_empty() {
                        self.with_addresses(owner.id).await?
                    } else {
                        owner.into()
                    };
                    owners.push(owner);
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
        if !owners.is_empty() || !aal2_pending {
            return Ok(owners);
        }

        // 3. A first-factor session whose owner whoami will not reveal: resolve the
        //    identifier the client logged in with.
        if let Some(identifier) = &exchange.login_identifier {
            match self.kratos.identities_by_identifier(identifier).await {
                Ok(found) => {
                    self.metrics.lookup(
                        "identifier",
                        if found.is_empty() {
                            "not_found"
                        } else {
                            "found"
                        },
                    );
                    owners.extend(found.into_iter().map(Suspect::from));
                }
                Err(e) => {
                    self.metrics.lookup("identifier", "error");
                    return Err(unavailable(e));
                }
            }
        } else if exchange.login_body_too_large {
            // Kratos read an identifier from a body the gateway could not copy: the owner
            // stays unknown, so the credential does not leave.
            self.metrics.lookup("identifier", "body_too_large");
            return Err(GatewayError::BadRequest(
                "The login request is too large to be checked.",
            ));
        }
        Ok(owners)
    }

    /// Matches suspects against the list in force: by id, then by each address.
    fn judge(&self, suspects: &[Suspect]) -> Verdict {
        let snapshot = self.blocklist.snapshot();
        let now = unix_now();
        let mut verdict = Verdict {
            enforced: Vec::new(),
            reported: Vec::new(),
        };
        for s in suspects {
            if let Some(hit) = match_suspect(&snapshot, s, now) {
                if hit.entry.mode == Mode::Report || self.report_only {
                    verdict.reported.push(hit);
                } else {
                    verdict.enforced.push(hit);
                }
            }
        }
        verdict
    }

    fn revoke(&self, hits: &[Hit], session_ids: &[Uuid]) {
        if session_ids.is_empty() {
            for id in hits.iter().filter_map(|h| h.identity) {
                self.revoker.revoke(Target::IdentitySessions(id));
            }
        } else {
            for id in session_ids {
                self.revoker.revoke(Target::Session(*id));
            }
        }
    }

    fn record_block(
        &self,
        exchange: &Exchange,
        kind: &'static str,
        hits: &[Hit],
        session_id: Option<Uuid>,
        status: StatusCode,
    ) {
        self.audit(exchange, kind, hits, session_id, status, "enforce");
    }

    /// Dry-run matches: the decision that would have been made, logged and counted only.
    fn report(
        &self,
        exchange: &Exchange,
        kind: &'static str,
        hits: &[Hit],
        session_id: Option<Uuid>,
        would_answer: StatusCode,
    ) {
        self.audit(exchange, kind, hits, session_id, would_answer, "report");
    }

    fn audit(
        &self,
        exchange: &Exchange,
        kind: &'static str,
        hits: &[Hit],
        session_id: Option<Uuid>,
        status: StatusCode,
        mode: &'static str,
    ) {
        for hit in hits {
            self.metrics
                .blocked
                .get_or_create(&KindLabels { kind, mode })
                .inc();
            tracing::warn!(
                target: "kratos_gate::audit",
                event = if mode == "report" { "would_block" } else { "blocked" },
                mode,
                kind,
                identity_id = hit.identity.map(|s| s.to_string()).unwrap_or_default(),
                matched = %hit.matched,
                session_id = session_id.map(|s| s.to_string()).unwrap_or_default(),
                reason = hit.entry.reason.as_deref().unwrap_or(""),
                client_ip = %exchange.peer.ip,
                request_id = %exchange.request_id,
                method = %exchange.method,
                path = %exchange.path(),
                outcome = status.as_u16(),
                "session of a listed identity"
            );
        }
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

/// The identities a body names: one suspect per identity id, carrying all the body's
/// addresses (a credential-bearing Kratos response describes one identity).
fn body_suspects(findings: &Findings) -> Vec<Suspect> {
    if findings.identities.is_empty() {
        return vec![Suspect {
            id: None,
            addresses: findings.addresses.clone(),
        }];
    }
    findings
        .identities
        .iter()
        .map(|id| Suspect {
            id: Some(*id),
            addresses: findings.addresses.clone(),
        })
        .collect()
}

fn match_suspect(list: &Blocklist, s: &Suspect, now: i64) -> Option<Hit> {
    if let Some(entry) = s.id.as_ref().and_then(|id| list.lookup_at(id, now)) {
        return Some(Hit {
            identity: s.id,
            matched: "identity".to_owned(),
            entry,
        });
    }
    s.addresses.iter().find_map(|a| {
        list.lookup_address(a, now).map(|(m, entry)| Hit {
            identity: s.id,
            matched: m.to_string(),
            entry,
        })
    })
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
