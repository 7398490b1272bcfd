//! The gateway's own calls to Kratos: who owns a credential (whoami, admin session and
//! identity lookups) and revocations. reqwest with a rustls `ClientConfig` built on the ring
//! provider (no process-wide provider needed).

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Instant;
use uuid::Uuid;

use crate::config::{Config, UpstreamUrl};
use crate::headers::{IDENTITY_ID_HEADER, X_SESSION_TOKEN};

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
}

impl LookupError {
    /// Worth trying again later (network trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            LookupError::Transport { .. } => true,
            LookupError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            LookupError::Body { .. } => false,
        }
    }
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
        .and_then(crate::util::parse_uuid)?;
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
        })
    }

    /// Records the duration of every lookup sent to Kratos in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn observe(&self, source: &'static str, started: Instant) {
        if let Some(m) = &self.metrics {
            m.observe_lookup(source, started.elapsed());
        }
    }

    fn admin_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, self.admin.join(path));
        match &self.admin_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Asks Kratos's public whoami who owns `credential`.
    pub async fn whoami(&self, credential: &Credential) -> Result<WhoamiAnswer, LookupError> {
        let started = Instant::now();
        let answer = self.ask_whoami(credential).await;
        self.observe("whoami", started);
        answer
    }

    async fn ask_whoami(&self, credential: &Credential) -> Result<WhoamiAnswer, LookupError> {
        const WHAT: &str = "whoami";
        let rb = self.http.get(self.public.join("/sessions/whoami"));
        let rb = match credential {
            Credential::Token(t) => rb.header(&X_SESSION_TOKEN, t),
            Credential::Cookie(c) => rb.header(reqwest::header::COOKIE, c),
        };
        let resp = rb
            .send()
            .await
            .map_err(|source| LookupError::Transport { what: WHAT, source })?;
        match resp.status() {
            StatusCode::OK => {
                let header_id = resp
                    .headers()
                    .get(&IDENTITY_ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::util::parse_uuid);
                let body = self.json(resp, WHAT).await?;
                let body_id = body
                    .get("identity")
                    .and_then(|i| i.get("id"))
                    .and_then(Value::as_str)
                    .and_then(crate::util::parse_uuid);
                let session_id = body
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(crate::util::parse_uuid);
                match header_id.or(body_id) {
                    Some(id) => Ok(WhoamiAnswer::Identity { id, session_id }),
                    None => Err(LookupError::Body {
                        what: WHAT,
                        detail: "session without identity".to_owned(),
                    }),
                }
            }
            StatusCode::UNAUTHORIZED => Ok(WhoamiAnswer::NoSession),
            // Only Kratos's own error says "second factor pending"; a 403 from an edge or a
            // WAF in between says nothing about the credential (CONTRACT.md §14).
            StatusCode::FORBIDDEN => {
                let body = self.json(resp, WHAT).await?;
                if body
                    .get("error")
                    .and_then(|e| e.get("id"))
                    .and_then(Value::as_str)
                    == Some("session_aal2_required")
                {
                    Ok(WhoamiAnswer::Aal2Required)
                } else {
                    Err(LookupError::Body {
                        what: WHAT,
                        detail: "403 that is not Kratos's session_aal2_required".to_owned(),
                    })
                }
            }
            status => Err(LookupError::Status { what: WHAT, status }),
        }
    }

    /// The owner of a session, from the admin API; `None` if Kratos does not know the session.
    pub async fn session_owner(&self, session_id: Uuid) -> Result<Option<Owner>, LookupError> {
        let started = Instant::now();
        let answer = self.ask_session_owner(session_id).await;
        self.observe("admin", started);
        answer
    }

    async fn ask_session_owner(&self, session_id: Uuid) -> Result<Option<Owner>, LookupError> {
        const WHAT: &str = "admin session lookup";
        let resp = self
            .admin_request(
                reqwest::Method::GET,
                &format!("/admin/sessions/{session_id}?expand=identity"),
            )
            .send()
            .await
            .map_err(|source| LookupError::Transport { what: WHAT, source })?;
        match resp.status() {
            StatusCode::OK => {
                let body = self.json(resp, WHAT).await?;
                match body
                    .get("identity")
                    .and_then(|i| owner_of(i, &self.email_traits))
                {
                    Some(o) => Ok(Some(o)),
                    None => Err(LookupError::Body {
                        what: WHAT,
                        detail: "session without identity despite expand=identity".to_owned(),
                    }),
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(LookupError::Status { what: WHAT, status }),
        }
    }

    /// An identity's addresses (admin `GET /admin/identities/{id}`), reused for
    /// `blocklist.address_cache_ttl`. An unknown identity has none.
    pub async fn identity_addresses(&self, id: Uuid) -> Result<Arc<[String]>, LookupError> {
        if let Some(hit) = self.addresses.map.get(&id) {
            if hit.0.elapsed() < self.addresses.ttl {
                return Ok(Arc::clone(&hit.1));
            }
        }
        let started = Instant::now();
        let fetched = self.fetch_addresses(id).await;
        self.observe("admin_identity", started);
        let addresses = fetched?;
        if self.addresses.map.len() >= self.addresses.max {
            self.addresses.map.clear();
        }
        self.addresses
            .map
            .insert(id, (Instant::now(), Arc::clone(&addresses)));
        Ok(addresses)
    }

    async fn fetch_addresses(&self, id: Uuid) -> Result<Arc<[String]>, LookupError> {
        const WHAT: &str = "admin identity lookup";
        let resp = self
            .admin_request(reqwest::Method::GET, &format!("/admin/identities/{id}"))
            .send()
            .await
            .map_err(|source| LookupError::Transport { what: WHAT, source })?;
        let addresses: Arc<[String]> = match resp.status() {
            StatusCode::OK => {
                let body = self.json(resp, WHAT).await?;
                crate::inspection::identity_addresses(&body, &self.email_traits).into()
            }
            StatusCode::NOT_FOUND => Arc::from(Vec::new()),
            status => return Err(LookupError::Status { what: WHAT, status }),
        };
        Ok(addresses)
    }

    /// Identities whose login identifier is `identifier` (admin `credentials_identifier`).
    pub async fn identities_by_identifier(
        &self,
        identifier: &str,
    ) -> Result<Vec<Owner>, LookupError> {
        let started = Instant::now();
        let answer = self.search_identifier(identifier).await;
        self.observe("identifier", started);
        answer
    }

    async fn search_identifier(&self, identifier: &str) -> Result<Vec<Owner>, LookupError> {
        const WHAT: &str = "admin identity search";
        let resp = self
            .admin_request(reqwest::Method::GET, "/admin/identities")
            .query(&[("credentials_identifier", identifier)])
            .send()
            .await
            .map_err(|source| LookupError::Transport { what: WHAT, source })?;
        match resp.status() {
            StatusCode::OK => {
                let body = self.json(resp, WHAT).await?;
                let Value::Array(items) = body else {
                    return Err(LookupError::Body {
                        what: WHAT,
                        detail: "not a list of identities".to_owned(),
                    });
                };
                Ok(items
                    .iter()
                    .filter_map(|i| owner_of(i, &self.email_traits))
                    .collect())
            }
            status => Err(LookupError::Status { what: WHAT, status }),
        }
    }

    async fn json(
        &self,
        mut resp: reqwest::Response,
        what: &'static str,
    ) -> Result<Value, LookupError> {
        // Bounded: an answer about one identity or session is kilobytes.
        const MAX_ANSWER: usize = 8 * 1024 * 1024;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|source| LookupError::Transport { what, source })?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(LookupError::Body {
                    what,
                    detail: format!("answer larger than {MAX_ANSWER} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| LookupError::Body {
            what,
            detail: e.to_string(),
        })
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

    async fn delete(&self, path: &str, what: &'static str) -> Result<(), LookupError> {
        let resp = self
            .admin_request(reqwest::Method::DELETE, path)
            .send()
            .await
            .map_err(|source| LookupError::Transport { what, source })?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(LookupError::Status { what, status })
        }
    }
}
