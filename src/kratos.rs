//! The gateway's own calls to Kratos: who owns a credential (whoami, admin session and
//! identity lookups) and revocations. Every call goes through one helper
//! (`KratosClient::call`): send, read the answer (bounded) if its status is one the call
//! expects, else fail with the status; then read it into the call's result. reqwest with a
//! rustls `ClientConfig` built on the ring provider (no process-wide provider needed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::config::{Config, UpstreamUrl};
use crate::headers::{IDENTITY_ID_HEADER, X_SESSION_TOKEN};
use crate::util::parse_uuid;

/// A credential found in a response, to ask Kratos who owns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// `ory_st_…` from a JSON body.
    Token(String),
    /// `name=value` of a session `Set-Cookie`.
    Cookie(String),
}

/// An identity a credential belongs to, with its e-mail addresses (lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: Uuid,
    pub addresses: Vec<String>,
}

/// Kratos's answer to whoami for a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhoamiAnswer {
    /// 200: the credential is a session of this identity.
    Identity { id: Uuid, session_id: Option<Uuid> },
    /// 401: not a valid session; the credential grants nothing.
    NoSession,
    /// 403 with Kratos's JSON error `session_aal2_required`: valid, but its owner is not
    /// revealed until a second factor is done.
    Aal2Required,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{what}: {source}")]
    Transport {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("{what}: Kratos answered {status}")]
    Status {
        what: &'static str,
        status: StatusCode,
    },
    #[error("{what}: unexpected response body: {detail}")]
    Body { what: &'static str, detail: String },
    /// The runtime the call ran on stopped before it completed (shutting down).
    #[error("{what}: the call did not complete: {detail}")]
    Interrupted { what: &'static str, detail: String },
}

#[derive(Clone)]
pub struct KratosClient {
    http: reqwest::Client,
    public: UpstreamUrl,
    admin: UpstreamUrl,
    admin_token: Option<Arc<str>>,
    email_traits: Arc<[String]>,
    addresses: Arc<AddressCache>,
    /// Times each lookup sent to Kratos (`kratos_gate_kratos_lookup_duration_seconds`);
    /// answers from the address cache are not lookups.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The runtime every call runs on (the control runtime of the per-core layout), whatever
    /// runtime asks: its connections then never belong to a worker runtime that stops first.
    runtime: Option<tokio::runtime::Handle>,
}

/// Recently fetched identity addresses, so that a burst of whoami calls for one identity
/// costs one admin lookup. Bounded: when full it is emptied (entries live seconds anyway).
struct AddressCache {
    ttl: Duration,
    max: usize,
    map: DashMap<Uuid, (Instant, Arc<[String]>)>,
}

/// An identity object as Kratos serialises it, read for its id and addresses.
fn owner_of(identity: &Value, email_traits: &[String]) -> Option<Owner> {
    let id = identity
        .get("id")
        .and_then(Value::as_str)
        .and_then(parse_uuid)?;
    Some(Owner {
        id,
        addresses: crate::inspection::identity_addresses(identity, email_traits),
    })
}

impl KratosClient {
    pub fn new(
        config: &Config,
        admin_token: Option<String>,
        tls: rustls::ClientConfig,
    ) -> Result<Self, reqwest::Error> {
        let timeout: Duration = config.upstream.lookup_timeout.get();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(timeout)
            .connect_timeout(config.upstream.connect_timeout.get())
            .pool_idle_timeout(config.upstream.pool_idle_timeout.get())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("kratos-gate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(KratosClient {
            http,
            public: config.upstream.public.clone(),
            admin: config.upstream.admin.clone(),
            admin_token: admin_token.map(Arc::from),
            email_traits: config.blocklist.email_traits.clone().into(),
            addresses: Arc::new(AddressCache {
                ttl: config.blocklist.address_cache_ttl.get(),
                max: config.blocklist.address_cache_size.max(1),
                map: DashMap::new(),
            }),
            metrics: None,
            runtime: None,
        })
    }

    /// Runs every call on `runtime`.
    pub fn on_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Records the duration of every lookup sent to Kratos in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, self.admin.join(path));
        match &self.admin_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// One call to Kratos, the way every call goes: send, read the answer (bounded) when
    /// `call.expects` its status, else fail with the status; then `read` it. Transport
    /// trouble is [`LookupError::Transport`]. Timed into the lookup histogram when
    /// `call.timed_as` names a source.
    async fn call<T>(
        &self,
        call: Call,
        request: reqwest::RequestBuilder,
        read: impl FnOnce(Reply) -> Result<T, LookupError>,
    ) -> Result<T, LookupError> {
        let started = Instant::now();
        let what = call.what;
        let expects = call.expects;
        let fetch = async move {
            let resp = request
                .send()
                .await
                .map_err(|source| LookupError::Transport { what, source })?;
            let status = resp.status();
            if !expects(status) {
                return Err(LookupError::Status { what, status });
            }
            Reply::read(resp, what).await
        };
        let reply = match &self.runtime {
            Some(runtime) => match runtime.spawn(fetch).await {
                Ok(r) => r,
                Err(e) => Err(LookupError::Interrupted {
                    what,
                    detail: e.to_string(),
                }),
            },
            None => fetch.await,
        };
        let answer = reply.and_then(read);
        if let (Some(source), Some(m)) = (call.timed_as, &self.metrics) {
            m.observe_lookup(source, started.elapsed());
        }
        answer
    }

    /// Asks Kratos's public whoami who owns `credential`.
    pub async fn whoami(&self, credential: &Credential) -> Result<WhoamiAnswer, LookupError> {
        let rb = self.http.get(self.public.join("/sessions/whoami"));
        let rb = match credential {
            Credential::Token(t) => rb.header(&X_SESSION_TOKEN, t),
            Credential::Cookie(c) => rb.header(reqwest::header::COOKIE, c),
        };
        let call = Call {
            what: "whoami",
            timed_as: Some("whoami"),
            expects: |s| {
                matches!(
                    s,
                    StatusCode::OK | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                )
            },
        };
        self.call(call, rb, |reply| match reply.status {
            StatusCode::OK => {
                let header_id = reply
                    .headers
                    .get(&IDENTITY_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_uuid);
                let body = reply.json()?;
                let body_id = body
                    .get("identity")
                    .and_then(|i| i.get("id"))
                    .and_then(Value::as_str)
                    .and_then(parse_uuid);
                let session_id = body.get("id").and_then(Value::as_str).and_then(parse_uuid);
                match header_id.or(body_id) {
                    Some(id) => Ok(WhoamiAnswer::Identity { id, session_id }),
                    None => Err(reply.malformed("session without identity")),
                }
            }
            StatusCode::UNAUTHORIZED => Ok(WhoamiAnswer::NoSession),
            // Only Kratos's own error says "second factor pending"; a 403 from an edge or a
            // WAF in between says nothing about the credential (CONTRACT.md §14).
            _ => {
                let aal2 = serde_json::from_slice::<Value>(&reply.body)
                    .ok()
                    .is_some_and(|b| {
                        b.get("error")
                            .and_then(|e| e.get("id"))
                            .and_then(Value::as_str)
                            == Some("session_aal2_required")
                    });
                if aal2 {
                    Ok(WhoamiAnswer::Aal2Required)
                } else {
                    Err(reply.malformed("403 that is not Kratos's session_aal2_required"))
                }
            }
        })
        .await
    }

    /// The owner of a session, from the admin API; `None` if Kratos does not know the session.
    pub async fn session_owner(&self, session_id: Uuid) -> Result<Option<Owner>, LookupError> {
        let rb = self.admin_request(
            reqwest::Method::GET,
            &format!("/admin/sessions/{session_id}?expand=identity"),
        );
        let call = Call {
            what: "admin session lookup",
            timed_as: Some("admin"),
            expects: ok_or_not_found,
        };
        self.call(call, rb, |reply| {
            if reply.status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            match reply
                .json()?
                .get("identity")
                .and_then(|i| owner_of(i, &self.email_traits))
            {
                Some(o) => Ok(Some(o)),
                None => Err(reply.malformed("session without identity despite expand=identity")),
            }
        })
        .await
    }

    /// An identity's addresses (admin `GET /admin/identities/{id}`), reused for
    /// `blocklist.address_cache_ttl`. An unknown identity has none.
    pub async fn identity_addresses(&self, id: Uuid) -> Result<Arc<[String]>, LookupError> {
        if let Some(hit) = self.addresses.map.get(&id) {
            if hit.0.elapsed() < self.addresses.ttl {
                return Ok(Arc::clone(&hit.1));
            }
        }
        let rb = self.admin_request(reqwest::Method::GET, &format!("/admin/identities/{id}"));
        let call = Call {
            what: "admin identity lookup",
            timed_as: Some("admin_identity"),
            expects: ok_or_not_found,
        };
        let addresses: Arc<[String]> = self
            .call(call, rb, |reply| {
                if reply.status == StatusCode::NOT_FOUND {
                    return Ok(Arc::from(Vec::new()));
                }
                Ok(
                    crate::inspection::identity_addresses(&reply.json()?, &self.email_traits)
                        .into(),
                )
            })
            .await?;
        if self.addresses.map.len() >= self.addresses.max {
            self.addresses.map.clear();
        }
        self.addresses
            .map
            .insert(id, (Instant::now(), Arc::clone(&addresses)));
        Ok(addresses)
    }

    /// Identities whose login identifier is `identifier` (admin `credentials_identifier`).
    pub async fn identities_by_identifier(
        &self,
        identifier: &str,
    ) -> Result<Vec<Owner>, LookupError> {
        let rb = self
            .admin_request(reqwest::Method::GET, "/admin/identities")
            .query(&[("credentials_identifier", identifier)]);
        let call = Call {
            what: "admin identity search",
            timed_as: Some("identifier"),
            expects: |s| s == StatusCode::OK,
        };
        self.call(call, rb, |reply| {
            let Value::Array(items) = reply.json()? else {
                return Err(reply.malformed("not a list of identities"));
            };
            Ok(items
                .iter()
                .filter_map(|i| owner_of(i, &self.email_traits))
                .collect())
        })
        .await
    }

    /// `DELETE /admin/sessions/{id}`; 404 (already gone) counts as done.
    pub async fn revoke_session(&self, session_id: Uuid) -> Result<(), LookupError> {
        self.delete(&format!("/admin/sessions/{session_id}"), "revoke session")
            .await
    }

    /// `DELETE /admin/identities/{id}/sessions`; 404 (no sessions left) counts as done.
    pub async fn revoke_identity_sessions(&self, identity_id: Uuid) -> Result<(), LookupError> {
        self.delete(
            &format!("/admin/identities/{identity_id}/sessions"),
            "revoke identity sessions",
        )
        .await
    }

    /// A revocation: timed by the revocation queue, not as a lookup.
    async fn delete(&self, path: &str, what: &'static str) -> Result<(), LookupError> {
        let call = Call {
            what,
            timed_as: None,
            expects: |s| s.is_success() || s == StatusCode::NOT_FOUND,
        };
        self.call(
            call,
            self.admin_request(reqwest::Method::DELETE, path),
            |_| Ok(()),
        )
        .await
    }
}

/// What one call to Kratos is, for [`KratosClient::call`].
struct Call {
    /// Names the call in errors.
    what: &'static str,
    /// The `source` of `kratos_gate_kratos_lookup_duration_seconds`; `None`: not a lookup.
    timed_as: Option<&'static str>,
    /// The statuses that are answers; any other is [`LookupError::Status`].
    expects: fn(StatusCode) -> bool,
}

fn ok_or_not_found(status: StatusCode) -> bool {
    status == StatusCode::OK || status == StatusCode::NOT_FOUND
}

/// An answer Kratos gave to a call, its body read.
struct Reply {
    what: &'static str,
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    /// Bounded: an answer about one identity or session is kilobytes.
    const MAX_BODY: usize = 8 * 1024 * 1024;

    async fn read(mut resp: reqwest::Response, what: &'static str) -> Result<Reply, LookupError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|source| LookupError::Transport { what, source })?
        {
            if body.len() + chunk.len() > Self::MAX_BODY {
                return Err(LookupError::Body {
                    what,
                    detail: format!("answer larger than {} bytes", Self::MAX_BODY),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            what,
            status: resp.status(),
            headers: std::mem::take(resp.headers_mut()),
            body,
        })
    }

    fn json(&self) -> Result<Value, LookupError> {
        serde_json::from_slice(&self.body).map_err(|e| self.malformed(&e.to_string()))
    }

    fn malformed(&self, detail: &str) -> LookupError {
        LookupError::Body {
            what: self.what,
            detail: detail.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
