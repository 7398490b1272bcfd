//! The public listener's policy.
//!
//! Request phase, in order (each step may answer the client itself, and Kratos is not asked):
//! refuse the admin API, note whether the session cookie was presented, ask Kratos for
//! unencoded bodies, read a small JSON or form submission as Kratos reads it (the login
//! identifier, the address a recovery code goes to) under `server.body_read_timeout`.
//!
//! Response phase: judge the answer (a session cookie, whoami's identity header, credentials
//! in a body that may hold them; owners from Kratos's word, `attribution.rs`; the decision),
//! then drop session cookies sent in trailers.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use uuid::Uuid;

use super::attribution::{self, Submission};
use super::read::read_findings;
use super::recovery::{flow_id, RecoveryAddresses};
use super::Enforcer;
use crate::body::{self, Body};
use crate::config::Config;
use crate::decision::Suspect;
use crate::error::GatewayError;
use crate::headers::{self, IDENTITY_ID_HEADER};
use crate::inspection::Shape;
use crate::paths;
use crate::proxy::{Exchange, Policy};
use crate::respond;
use crate::throttle::gate::{Gate, Ticket};
use crate::util::parse_uuid;

pub struct PublicPolicy {
    enforcer: Arc<Enforcer>,
    session_cookie: String,
    /// The `Set-Cookie` that clears the session cookie with Kratos's attributes
    /// (`respond::clearing_cookie`), sent when a browser session is refused.
    clear_session_cookie: HeaderValue,
    /// `inspection.body_limit_bytes`: the most of a response body read to judge it.
    body_limit: usize,
    /// `inspection.login_body_limit_bytes`: the most of a submission copied to read it.
    login_body_limit: usize,
    /// Longest wait for a body that must be read before the response can be judged
    /// (`upstream.response_timeout`).
    body_timeout: Duration,
    /// Longest wait for a request body the gateway reads (`server.body_read_timeout`).
    body_read_timeout: Duration,
    /// Longest time spent attributing one response (`inspection.attribution_timeout`).
    attribution_timeout: Duration,
    /// `enforcement.browser_redirect`.
    browser_redirect: Option<Uri>,
    pub(super) recovery_addresses: RecoveryAddresses,
    /// `throttle:` (src/throttle/gate.rs), when enabled.
    throttle: Option<Gate>,
}

/// What the public policy keeps about one exchange between request and response.
#[derive(Debug, Default)]
pub struct PublicCtx {
    pub(super) submission: Submission,
    /// `?flow=` of a recovery submission.
    pub(super) recovery_flow: Option<Uuid>,
    /// The request presented the session cookie (a browser, not a token client): a refusal
    /// of its session also clears the cookie.
    pub(super) session_cookie_sent: bool,
    /// A submission the throttle let through, settled on Kratos's answer.
    pub(super) throttle: Option<Ticket>,
    /// [`paths::request_kind`] of a submission's path, from the canonical path the admin
    /// check used (`""` for other methods, which read no submission).
    pub(super) submission_kind: &'static str,
}

impl PublicPolicy {
    pub fn new(config: &Config, enforcer: Arc<Enforcer>) -> Self {
        PublicPolicy {
            enforcer,
            session_cookie: config.inspection.session_cookie.clone(),
            clear_session_cookie: respond::clearing_cookie(&config.inspection),
            body_limit: config.inspection.body_limit_bytes,
            login_body_limit: config.inspection.login_body_limit_bytes,
            body_timeout: config.upstream.response_timeout.get(),
            body_read_timeout: config.server.body_read_timeout.get(),
            attribution_timeout: config.inspection.attribution_timeout.get(),
            browser_redirect: config.enforcement.browser_redirect.clone(),
            // Kratos's default recovery flow lifespan is an hour.
            recovery_addresses: RecoveryAddresses::new(100_000, Duration::from_secs(3600)),
            throttle: None,
        }
    }

    /// Throttles self-service submissions with `gate` (`throttle:`).
    pub fn with_throttle(mut self, gate: Option<Gate>) -> Self {
        self.throttle = gate;
        self
    }
}

impl Policy for PublicPolicy {
    type Ctx = PublicCtx;

    async fn on_request(
        &self,
        exchange: &Exchange,
        ctx: &mut PublicCtx,
        mut request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        let path = paths::Canonical::of(request.uri().path());
        if let Some(refusal) = self.refuse_admin_path(exchange, &path) {
            return Err(refusal);
        }
        if is_submission_method(request.method()) {
            ctx.submission_kind = path.kind();
        }
        if let Some(refusal) = super::network::check(&self.enforcer, exchange, request.headers()) {
            return Err(refusal);
        }
        ctx.session_cookie_sent =
            respond::presents_session_cookie(request.headers(), &self.session_cookie);
        // Bodies the gateway may have to read must arrive readable (CONTRACT.md §10).
        request.headers_mut().insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        // The submission's and the throttle's futures are boxed: most requests need neither,
        // and a future this one holds inline would be copied whole each time it is moved.
        let request = if is_submission_method(request.method()) {
            Box::pin(self.read_submission(exchange, ctx, request)).await?
        } else {
            request
        };
        // Checks that need the submission (`ctx.submission`) follow here.
        if let Some(gate) = &self.throttle {
            let fields = match &ctx.submission {
                Submission::Read(fields) => Some(fields),
                _ => None,
            };
            let unreadable = matches!(ctx.submission, Submission::Unreadable);
            ctx.throttle = Box::pin(gate.check(
                exchange,
                request.headers(),
                request.uri(),
                fields,
                unreadable,
            ))
            .await?;
        }
        Ok(request)
    }

    async fn on_response(
        &self,
        exchange: &Exchange,
        mut ctx: PublicCtx,
        response: Response<Incoming>,
    ) -> Response<Body> {
        let ticket = ctx.throttle.take();
        // Kratos is spoken to in HTTP/1.1, where only a chunked body has trailers; a body of
        // known length has none to filter.
        let may_have_trailers = http_body::Body::size_hint(response.body())
            .exact()
            .is_none();
        let answer = match self.judge(exchange, &ctx, response).await {
            Ok(r) => r,
            Err(e) => self.enforcer.fail_closed(exchange, e),
        };
        let answer = match (&self.throttle, ticket) {
            (Some(gate), Some(ticket)) => Box::pin(gate.settle(exchange, ticket, answer)).await,
            _ => answer,
        };
        if may_have_trailers {
            self.without_trailer_cookies(exchange, answer)
        } else {
            answer
        }
    }
}

impl PublicPolicy {
    /// The admin API never belongs on the public side: Kratos would answer with a redirect
    /// that reveals the admin URL, and where both share one origin (Ory Network) an extend
    /// sent here would bypass the admin listener's check. `Some`: the refusal.
    fn refuse_admin_path(
        &self,
        exchange: &Exchange,
        path: &paths::Canonical<'_>,
    ) -> Option<Response<Body>> {
        if !path.is_admin() {
            return None;
        }
        tracing::info!(request_id = %exchange.request_id.as_str(), path = %exchange.path(), "admin path refused on the public listener");
        Some(GatewayError::NotFound.into_response(Some(exchange.request_id.as_str())))
    }

    /// Copies a small JSON or form submission (bounded in size and time), read as Kratos
    /// reads it when something needs its fields; the body is forwarded unchanged either way.
    /// A recovery submission's address is remembered for its flow.
    async fn read_submission(
        &self,
        exchange: &Exchange,
        ctx: &mut PublicCtx,
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        if !is_submission_method(request.method()) {
            return Ok(request);
        }
        let content_type = request.headers().get(header::CONTENT_TYPE);
        let is_form_or_json = content_type
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                contains_ignoring_case(ct, "json")
                    || contains_ignoring_case(ct, "application/x-www-form-urlencoded")
            });
        if !is_form_or_json {
            return Ok(request);
        }
        let content_type = content_type.cloned();
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
                self.enforcer.metrics.fail_closed(e.label());
                tracing::info!(request_id = %exchange.request_id, client_ip = %exchange.peer.ip, path = %exchange.path(), error = %e, "request body too slow");
                return Err(e.into_response(Some(exchange.request_id.as_str())));
            }
        };
        ctx.submission = match copy {
            Some(body) => Submission::Copied { content_type, body },
            None => Submission::Unreadable,
        };
        // Read now where the request phase needs the fields (the throttle, a recovery
        // address); otherwise only an answer that needs them reads them (attribution.rs).
        let recovery = ctx.submission_kind == "recovery";
        if self.throttle.is_some() || recovery {
            ctx.submission.read_now();
        }
        if recovery {
            ctx.recovery_flow = flow_id(&parts.uri);
            if let (Some(flow), Submission::Read(fields)) = (ctx.recovery_flow, &ctx.submission) {
                if let (Some(email), false) = (&fields.email, fields.has_code) {
                    self.recovery_addresses.remember(flow, email);
                }
            }
        }
        Ok(Request::from_parts(parts, replay.boxed()))
    }

    /// Kratos's answer as the client gets it: unchanged, or withheld when it hands a listed
    /// identity a credential or a session. `Err`: it cannot be judged, and is withheld.
    async fn judge(
        &self,
        exchange: &Exchange,
        ctx: &PublicCtx,
        response: Response<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        let e = &*self.enforcer;
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
            e.metrics.lookup("header", "found");
            let mut suspects = [Suspect {
                id: Some(identity),
                addresses: None,
            }];
            // Boxed, like attribution below: rare, and large.
            Box::pin(attribution::with_addresses(e, &mut suspects)).await?;
            let verdict = e.decide(&suspects);
            if verdict.is_empty() {
                return Ok(Response::from_parts(
                    parts,
                    incoming.map_err(Into::into).boxed(),
                ));
            }
            let kind = kind_of(exchange, "whoami");
            e.audit(exchange, kind, &verdict, None, StatusCode::UNAUTHORIZED);
            if !verdict.blocks() {
                return Ok(Response::from_parts(
                    parts,
                    incoming.map_err(Into::into).boxed(),
                ));
            }
            e.revoke(&verdict, &[]);
            return Ok(respond::signed_out(
                respond::WHOAMI_401,
                self.clearing_cookie(ctx),
            ));
        }

        // Find credentials and sessions in the body, reading it only if it may hold them.
        let (findings, body) =
            read_findings(&parts.headers, incoming, self.body_limit, self.body_timeout).await?;
        if !findings.vouches() && cookies.is_empty() {
            return Ok(Response::from_parts(parts, body));
        }

        let request = attribution::Request {
            submission: &ctx.submission,
            recovery_flow: ctx.recovery_flow,
            recovery_addresses: &self.recovery_addresses,
        };
        // Boxed: only answers that vouch for someone are attributed, and the lookups'
        // future would otherwise make every response's future larger.
        let attribution = Box::pin(tokio::time::timeout(
            self.attribution_timeout,
            attribution::attribute(e, &request, &findings, &cookies),
        ))
        .await
        .map_err(|_| {
            GatewayError::AttributionUnavailable(format!(
                "attribution took longer than {:?}",
                self.attribution_timeout
            ))
        })??;

        let verdict = e.decide(&attribution.suspects);
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
            e.audit(exchange, kind, &verdict, session_id, status);
            return Ok(Response::from_parts(parts, body));
        }
        let answer = match findings.shape {
            Shape::Session => respond::signed_out(respond::WHOAMI_401, self.clearing_cookie(ctx)),
            Shape::SessionList => {
                respond::signed_out(respond::SESSIONS_401, self.clearing_cookie(ctx))
            }
            Shape::Other if parts.status.is_redirection() => {
                let mut r =
                    respond::identity_disabled_browser(&e.message, self.browser_redirect.as_ref());
                keep_other_cookies(&parts.headers, r.headers_mut(), &self.session_cookie);
                self.clear_settings_session(exchange, ctx, r.headers_mut());
                r
            }
            Shape::Other => {
                let mut r =
                    respond::identity_disabled(&e.message, Some(exchange.request_id.as_str()));
                keep_other_cookies(&parts.headers, r.headers_mut(), &self.session_cookie);
                self.clear_settings_session(exchange, ctx, r.headers_mut());
                r
            }
        };
        e.audit(exchange, kind, &verdict, session_id, answer.status());
        e.revoke(&verdict, &attribution.sessions);
        Ok(answer)
    }

    /// The clearing `Set-Cookie`, when the refused request presented the session cookie.
    fn clearing_cookie(&self, ctx: &PublicCtx) -> Option<&HeaderValue> {
        ctx.session_cookie_sent
            .then_some(&self.clear_session_cookie)
    }

    /// A refused settings answer signs the browser out: its session is the one refused.
    fn clear_settings_session(
        &self,
        exchange: &Exchange,
        ctx: &PublicCtx,
        headers: &mut http::HeaderMap,
    ) {
        if paths::request_kind(exchange.path()) == "settings" {
            if let Some(c) = self.clearing_cookie(ctx) {
                headers.append(header::SET_COOKIE, c.clone());
            }
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
        let metrics = Arc::clone(&self.enforcer.metrics);
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
}

/// The methods whose body may be a submission the gateway reads.
fn is_submission_method(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// `needle` (lower-case ASCII) occurs in `hay`, in any case.
fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The audit kind: from the request path when it names one, else `fallback`.
fn kind_of(exchange: &Exchange, fallback: &'static str) -> &'static str {
    match paths::request_kind(exchange.path()) {
        "other" => fallback,
        k => k,
    }
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
