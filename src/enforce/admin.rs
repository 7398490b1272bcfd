//! The admin listener's policy: `PATCH /admin/sessions/{id}/extend` (and every spelling a
//! lax router reads as it) is checked before it goes through, because Kratos extends
//! sessions of disabled identities and can revive expired ones. Everything else, both ways,
//! passes untouched.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Enforcer;
use crate::body::Body;
use crate::decision::Suspect;
use crate::error::GatewayError;
use crate::paths;
use crate::proxy::{Exchange, Policy};
use crate::respond;
use crate::revocation::Target;

pub struct AdminPolicy {
    enforcer: Arc<Enforcer>,
}

impl AdminPolicy {
    pub fn new(enforcer: Arc<Enforcer>) -> Self {
        AdminPolicy { enforcer }
    }
}

impl Policy for AdminPolicy {
    /// Nothing is kept between the phases.
    type Ctx = ();

    async fn on_request(
        &self,
        exchange: &Exchange,
        _ctx: &mut (),
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        self.refuse_listed_extend(exchange, request).await
    }

    async fn on_response(
        &self,
        _exchange: &Exchange,
        _ctx: (),
        response: Response<Incoming>,
    ) -> Response<Body> {
        response.map(|b| b.map_err(Into::into).boxed())
    }
}

impl AdminPolicy {
    /// An extend of a listed identity's session: 403 `identity_disabled`, not forwarded, the
    /// session revoked. An id Kratos's parser would refuse gets Kratos's 400 here, so the two
    /// never disagree about which session is meant.
    async fn refuse_listed_extend(
        &self,
        exchange: &Exchange,
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        let Some(raw_id) = paths::extend_session_id(request.uri().path()) else {
            return Ok(request);
        };
        let Some(session_id) = paths::parse_uuid_as_kratos_does(&raw_id) else {
            return Err(respond::malformed_uuid(&raw_id));
        };
        let e = &self.enforcer;
        let owner = match e.kratos.session_owner(session_id).await {
            Ok(o) => {
                e.metrics
                    .lookup("admin", if o.is_some() { "found" } else { "not_found" });
                o
            }
            Err(err) => {
                e.metrics.lookup("admin", "error");
                return Err(e.fail_closed(
                    exchange,
                    GatewayError::AttributionUnavailable(err.to_string()),
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
        let verdict = e.decide(&[suspect]);
        if verdict.is_empty() {
            return Ok(request);
        }
        e.audit(
            exchange,
            "extend",
            &verdict,
            Some(session_id),
            StatusCode::FORBIDDEN,
        );
        if !verdict.blocks() {
            return Ok(request);
        }
        e.revoker.revoke(Target::Session(session_id));
        Err(respond::identity_disabled(
            &e.message,
            Some(exchange.request_id.as_str()),
        ))
    }
}
