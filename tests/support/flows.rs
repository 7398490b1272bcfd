//! Self-service flow answers that echo the client's input the way Kratos does
//! (CONTRACT.md section 14), and request bodies read the way Kratos reads them.
//!
//! - [`Submitted`] is a request body as Kratos's decoder (ory/x `decoderx`) sees it: for
//!   `application/json` the *first* JSON value (whatever follows it is ignored, nesting is
//!   bounded only by Go's limit of 10,000), for `application/x-www-form-urlencoded` the form
//!   fields (`transient_payload` parsed as JSON text, `traits.x` keys nested), for
//!   `multipart/form-data` nothing.
//! - [`Flow`] renders a recovery flow object (`recoveryFlow` of `api.json`) with the
//!   submitted `transient_payload` copied unchanged and `ui.nodes[].attributes.value` filled
//!   from the submitted fields.
//! - [`recovery_code_sent`] and [`recovery`] are ready-made [`Reply::from_fn`] replies:
//!   "code sent", and recovery success (native token in `continue_with`, or the session
//!   cookie for browser flows). Sessions they hand out are registered in the fake's registry
//!   when the request arrives, so whoami on them works.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use uuid::Uuid;

use super::fake_kratos::{
    fresh_uuid, RecordedCall, Registry, Reply, SessionSpec, JSON_UTF8, SESSION_COOKIE,
};
use super::fixtures::Json;

/// Where the fake's flows say Kratos and its UI live.
pub const KRATOS_BASE: &str = "https://auth.example.com";
pub const UI_BASE: &str = "https://app.example.com";
/// The anti-CSRF cookie a browser flow answer carries next to the session cookie.
pub const FLOW_CSRF_SET_COOKIE: &str = "csrf_token_806060ca5bf70dff3caa0e5c860002aade9d470a5a4dce73bcfa7b10d3cd3ee3=7Qtk3FoHvJgEu1UH1hY8qSzbGQe3mIsEWvgOAh4cqbs=; Path=/; Domain=auth.example.com; Max-Age=31536000; HttpOnly; SameSite=Lax";
/// Go's `encoding/json` nesting limit.
pub const GO_MAX_DEPTH: usize = 10_000;

// ---------------------------------------------------------------------------
// Request bodies as Kratos reads them
// ---------------------------------------------------------------------------

/// Parses the first JSON value of `input` like Go's `json.Decoder.Decode`: leading white
/// space skipped, anything after the value ignored, nesting up to [`GO_MAX_DEPTH`], object
/// members kept in order *with* repeated keys (use [`last_member`] for Go's struct
/// decoding, where the last one wins). Iterative, so deep nesting needs no stack.
pub fn first_json_value(input: &[u8]) -> Result<Json, String> {
    enum Frame {
        Array(Vec<Json>),
        Object(Vec<(String, Json)>, String),
    }
    let mut p = Parser { b: input, pos: 0 };
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        p.skip_ws();
        let mut value = match p.peek() {
            Some(b'{') => {
                p.pos += 1;
                if stack.len() + 1 > GO_MAX_DEPTH {
                    return Err("exceeded max depth".to_owned());
                }
                p.skip_ws();
                if p.peek() == Some(b'}') {
                    p.pos += 1;
                    Json::Object(Vec::new())
                } else {
                    let key = p.key()?;
                    stack.push(Frame::Object(Vec::new(), key));
                    continue;
                }
            }
            Some(b'[') => {
                p.pos += 1;
                if stack.len() + 1 > GO_MAX_DEPTH {
                    return Err("exceeded max depth".to_owned());
                }
                p.skip_ws();
                if p.peek() == Some(b']') {
                    p.pos += 1;
                    Json::Array(Vec::new())
                } else {
                    stack.push(Frame::Array(Vec::new()));
                    continue;
                }
            }
            Some(b'"') => Json::String(p.string()?),
            Some(b't') => p.literal("true", Json::Bool(true))?,
            Some(b'f') => p.literal("false", Json::Bool(false))?,
            Some(b'n') => p.literal("null", Json::Null)?,
            Some(b'-' | b'0'..=b'9') => p.number()?,
            other => return Err(format!("unexpected {other:?} at {}", p.pos)),
        };
        // A value is complete: hand it to its container, closing containers as they end.
        loop {
            match stack.last_mut() {
                None => return Ok(value),
                Some(Frame::Array(items)) => {
                    items.push(value);
                    p.skip_ws();
                    match p.peek() {
                        Some(b',') => {
                            p.pos += 1;
                            break;
                        }
                        Some(b']') => {
                            p.pos += 1;
                            let Some(Frame::Array(items)) = stack.pop() else {
                                unreachable!("top frame is an array")
                            };
                            value = Json::Array(items);
                        }
                        other => return Err(format!("unexpected {other:?} in array")),
                    }
                }
                Some(Frame::Object(members, key)) => {
                    members.push((std::mem::take(key), value));
                    p.skip_ws();
                    match p.peek() {
                        Some(b',') => {
                            p.pos += 1;
                            *key = p.key()?;
                            break;
                        }
                        Some(b'}') => {
                            p.pos += 1;
                            let Some(Frame::Object(members, _)) = stack.pop() else {
                                unreachable!("top frame is an object")
                            };
                            value = Json::Object(members);
                        }
                        other => return Err(format!("unexpected {other:?} in object")),
                    }
                }
            }
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// `"key"` `:`
    fn key(&mut self) -> Result<String, String> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return Err(format!("expected a key at {}", self.pos));
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(format!("expected ':' at {}", self.pos));
        }
        self.pos += 1;
        Ok(key)
    }

    fn string(&mut self) -> Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err("unterminated string".to_owned()),
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = &self.b[start..self.pos];
        match serde_json::from_slice::<String>(raw) {
            Ok(s) => Ok(s),
            // Go replaces invalid UTF-8 with U+FFFD instead of failing.
            Err(_) => serde_json::from_str::<String>(&String::from_utf8_lossy(raw))
                .map_err(|e| e.to_string()),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(format!("invalid literal at {}", self.pos))
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.pos;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        serde_json::from_slice::<serde_json::Number>(&self.b[start..self.pos])
            .map(Json::Number)
            .map_err(|e| e.to_string())
    }
}

/// The last member `key` of an object (Go's struct decoding keeps the last duplicate).
pub fn last_member<'a>(object: &'a Json, key: &str) -> Option<&'a Json> {
    match object {
        Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// How a request body is encoded, by its `Content-Type` media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
    Multipart,
    /// No or another content type: Kratos's decoder refuses it.
    Other,
}

pub fn body_kind(content_type: Option<&str>) -> BodyKind {
    let media = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => BodyKind::Json,
        "application/x-www-form-urlencoded" => BodyKind::Form,
        "multipart/form-data" => BodyKind::Multipart,
        _ => BodyKind::Other,
    }
}

/// A submitted body as Kratos decodes it: an object of fields (`None` when undecodable).
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    pub kind: BodyKind,
    pub fields: Option<Json>,
}

impl Submitted {
    /// The body of a recorded request, by its `Content-Type`.
    pub fn of(call: &RecordedCall) -> Submitted {
        Submitted::parse(call.header("content-type"), &call.body)
    }

    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Submitted {
        let kind = body_kind(content_type);
        let fields = match kind {
            BodyKind::Json => first_json_value(body)
                .ok()
                .filter(|v| matches!(v, Json::Object(_))),
            BodyKind::Form => Some(form_fields(body)),
            BodyKind::Multipart => Some(Json::Object(Vec::new())),
            BodyKind::Other => None,
        };
        Submitted { kind, fields }
    }

    /// A top-level field (the last one if repeated).
    pub fn field(&self, name: &str) -> Option<&Json> {
        last_member(self.fields.as_ref()?, name)
    }

    /// A top-level field that is a string.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Json::as_str)
    }

    /// The submitted `transient_payload`, unchanged.
    pub fn transient_payload(&self) -> Option<&Json> {
        self.field("transient_payload")
    }
}

/// Form fields as an object: `a.b=x` becomes `{"a":{"b":"x"}}`, `transient_payload` is
/// parsed as JSON text (dropped if it is not JSON), the last of repeated fields wins.
fn form_fields(body: &[u8]) -> Json {
    let mut root = Json::Object(Vec::new());
    for (key, value) in form_urlencoded::parse(body) {
        let value = if key == "transient_payload" {
            match first_json_value(value.as_bytes()) {
                Ok(v) => v,
                Err(_) => continue,
            }
        } else {
            Json::str(value.into_owned())
        };
        let parts: Vec<&str> = key.split('.').collect();
        let mut node = &mut root;
        for part in &parts[..parts.len() - 1] {
            if !matches!(node.get(part), Some(Json::Object(_))) {
                node.set(part, Json::Object(Vec::new()));
            }
            node = node.get_mut(part).expect("just set");
        }
        node.set(parts[parts.len() - 1], value);
    }
    root
}

/// Kratos's `IsJSONRequest`: `Content-Type` exactly `application/json`, or `Accept`
/// negotiation over `text/html, text/*, */*, application/json` picking JSON.
pub fn is_json_request(call: &RecordedCall) -> bool {
    if call.header("content-type") == Some("application/json") {
        return true;
    }
    let Some(accept) = call.header("accept") else {
        return false;
    };
    let offers = ["text/html", "text/*", "*/*", "application/json"];
    let mut best = "text/html";
    let (mut best_q, mut best_wild) = (-1.0_f64, 3);
    for offer in offers {
        for spec in accept.split(',') {
            let mut parts = spec.split(';');
            let range = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f64>().ok())
                .unwrap_or(1.0);
            let wild = if range == "*/*" {
                2
            } else if range.ends_with("/*") && offer.split('/').next() == range.strip_suffix("/*") {
                1
            } else if range == offer {
                0
            } else {
                continue;
            };
            if q > best_q || (q == best_q && wild < best_wild) {
                best = offer;
                best_q = q;
                best_wild = wild;
            }
        }
    }
    best_q > 0.0 && best == "application/json"
}

// ---------------------------------------------------------------------------
// Flow objects
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowType {
    /// Created with `GET /self-service/<flow>/api` (native apps).
    Api,
    /// Created with `GET /self-service/<flow>/browser`.
    Browser,
}

/// A recovery flow of one type, rendered per request with the client's input echoed.
#[derive(Clone, Debug)]
pub struct Flow {
    pub flow_type: FlowType,
    pub id: Uuid,
    /// When the flow was created (`issued_at`; it expires an hour later), fixed like Kratos's.
    pub issued_at: SystemTime,
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn node(
    group: &str,
    name: &str,
    input_type: &str,
    value: Option<Json>,
    label: Option<(u32, &str)>,
) -> Json {
    let mut attributes = Json::Object(Vec::new());
    attributes.set("name", Json::str(name));
    attributes.set("type", Json::str(input_type));
    if let Some(value) = value {
        attributes.set("value", value);
    }
    attributes.set(
        "required",
        Json::Bool(input_type != "submit" && input_type != "hidden"),
    );
    attributes.set("disabled", Json::Bool(false));
    attributes.set("node_type", Json::str("input"));
    let mut meta = Json::Object(Vec::new());
    if let Some((id, text)) = label {
        let mut l = Json::Object(Vec::new());
        l.set("id", Json::Number(id.into()));
        l.set("text", Json::str(text));
        l.set("type", Json::str("info"));
        meta.set("label", l);
    }
    let mut n = Json::Object(Vec::new());
    n.set("type", Json::str("input"));
    n.set("group", Json::str(group));
    n.set("attributes", attributes);
    n.set("messages", Json::Array(Vec::new()));
    n.set("meta", meta);
    n
}

/// A UI message `{"id","text","type"}`.
pub fn ui_message(id: u32, text: &str, kind: &str) -> Json {
    let mut m = Json::Object(Vec::new());
    m.set("id", Json::Number(id.into()));
    m.set("text", Json::str(text));
    m.set("type", Json::str(kind));
    m
}

impl Flow {
    pub fn new(flow_type: FlowType) -> Flow {
        Flow {
            flow_type,
            id: fresh_uuid(),
            issued_at: SystemTime::now(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self.flow_type {
            FlowType::Api => "api",
            FlowType::Browser => "browser",
        }
    }

    /// The flow object in state `state`, with `messages` in `ui.messages`, the submitted
    /// fields in `ui.nodes[].attributes.value` and the submitted `transient_payload`.
    pub fn render(&self, state: &str, submitted: &Submitted, messages: Vec<Json>) -> Json {
        let now = self.issued_at;
        let text = |name: &str| submitted.text(name).map(Json::str);
        let mut nodes = vec![node(
            "default",
            "csrf_token",
            "hidden",
            Some(Json::str(if self.flow_type == FlowType::Browser {
                "7Qtk3FoHvJgEu1UH1hY8qSzbGQe3mIsEWvgOAh4cqbs="
            } else {
                ""
            })),
            None,
        )];
        nodes.push(node(
            "code",
            "email",
            "email",
            text("email"),
            Some((1_070_007, "Email")),
        ));
        if submitted.field("code").is_some() || state != "choose_method" {
            nodes.push(node(
                "code",
                "code",
                "text",
                text("code"),
                Some((1_070_012, "Code")),
            ));
        }
        nodes.push(node(
            "code",
            "method",
            "submit",
            Some(Json::str("code")),
            Some((1_070_009, "Continue")),
        ));
        let mut ui = Json::Object(Vec::new());
        ui.set(
            "action",
            Json::str(format!(
                "{KRATOS_BASE}/self-service/recovery?flow={}",
                self.id
            )),
        );
        ui.set("method", Json::str("POST"));
        ui.set("nodes", Json::Array(nodes));
        if !messages.is_empty() {
            ui.set("messages", Json::Array(messages));
        }
        let mut flow = Json::Object(Vec::new());
        flow.set("id", Json::str(self.id.to_string()));
        flow.set("type", Json::str(self.type_name()));
        flow.set(
            "expires_at",
            Json::str(rfc3339(now + Duration::from_secs(3600))),
        );
        flow.set("issued_at", Json::str(rfc3339(now)));
        flow.set(
            "request_url",
            Json::str(format!(
                "{KRATOS_BASE}/self-service/recovery/{}",
                self.type_name()
            )),
        );
        flow.set("active", Json::str("code"));
        flow.set("ui", ui);
        flow.set("state", Json::str(state));
        if let Some(payload) = submitted.transient_payload() {
            flow.set("transient_payload", payload.clone());
        }
        flow
    }
}

// ---------------------------------------------------------------------------
// Ready-made replies
// ---------------------------------------------------------------------------

/// A flow answer computed per request: `status` with the flow in `state` and `messages`,
/// echoing the submitted body.
pub fn flow_reply(flow: Flow, status: u16, state: &str, messages: Vec<Json>) -> Reply {
    let state = state.to_owned();
    Reply::from_fn(move |call| {
        let submitted = Submitted::of(call);
        // A flow body is written with herodot's `WriteCode`, not `WriteError`: the success
        // content type, whatever the status.
        Reply::json(status, flow.render(&state, &submitted, messages.clone()))
            .header("content-type", JSON_UTF8)
    })
}

/// The recovery "code sent" answer: 200 flow in state `sent_email`, no credential, the
/// submitted address and payload echoed (also for an address nobody has).
pub fn recovery_code_sent(flow: Flow) -> Reply {
    flow_reply(flow, 200, "sent_email", vec![code_sent_message()])
}

fn code_sent_message() -> Json {
    ui_message(
        1_060_003,
        "An email containing a recovery code has been sent to the email address you provided. If you have not received an email, check the spelling of the address and make sure to use the address you registered with.",
        "info",
    )
}

/// The settings flow a successful recovery continues with.
fn show_settings_ui(settings_flow: Uuid) -> Json {
    let mut flow = Json::Object(Vec::new());
    flow.set("id", Json::str(settings_flow.to_string()));
    flow.set(
        "url",
        Json::str(format!("{UI_BASE}/settings?flow={settings_flow}")),
    );
    let mut item = Json::Object(Vec::new());
    item.set("action", Json::str("show_settings_ui"));
    item.set("flow", flow);
    item
}

/// Recovery by code as Kratos answers both steps on `POST /self-service/recovery?flow=…`
/// (with `feature_flags.use_continue_with_transitions`):
///
/// - a body with a `code` is the code step: the session `spec` is registered in the fake
///   (it needs a token for API flows, a cookie for browser flows) and the answer is
///   - API flow: 200 flow `passed_challenge` with
///     `continue_with:[{set_ory_session_token}, {show_settings_ui}]`;
///   - browser flow, JSON request: `Set-Cookie` (CSRF and session) + 200 flow
///     `passed_challenge` with `continue_with:[{show_settings_ui}]`;
///   - browser flow, form: `Set-Cookie` + 303 to the settings UI;
/// - any other body is the "send code" step: [`recovery_code_sent`].
///
/// Every flow answer echoes the submitted `transient_payload` and fields; none names the
/// identity (`RecoveredIdentityID` is `json:"-"`). The same request gets the same bytes (the
/// flow's times and the settings flow id are fixed when the reply is made), so a test can
/// compare the gateway's answer with the one Kratos gives directly.
pub fn recovery(registry: Registry, flow: Flow, spec: SessionSpec) -> Reply {
    let settings = fresh_uuid();
    Reply::from_fn(move |call| {
        let submitted = Submitted::of(call);
        if call.method != Method::POST || submitted.field("code").is_none() {
            return Reply::json(
                200,
                flow.render("sent_email", &submitted, vec![code_sent_message()]),
            );
        }
        registry.add_session(spec.clone());
        let mut body = flow.render("passed_challenge", &submitted, Vec::new());
        let mut continue_with = Vec::new();
        match flow.flow_type {
            FlowType::Api => {
                let token = spec
                    .token
                    .clone()
                    .expect("an API recovery hands out the session's token");
                let mut item = Json::Object(Vec::new());
                item.set("action", Json::str("set_ory_session_token"));
                item.set("ory_session_token", Json::str(token));
                continue_with.push(item);
                continue_with.push(show_settings_ui(settings));
                body.insert_after("state", "continue_with", Json::Array(continue_with));
                Reply::json(200, body)
            }
            FlowType::Browser => {
                let cookie = spec
                    .cookie
                    .clone()
                    .expect("a browser recovery hands out the session's cookie");
                let set_cookie = format!(
                    "{SESSION_COOKIE}={cookie}; Path=/; Domain=auth.example.com; Max-Age=86400; HttpOnly; SameSite=Lax"
                );
                let reply = if is_json_request(call) {
                    continue_with.push(show_settings_ui(settings));
                    body.insert_after("state", "continue_with", Json::Array(continue_with));
                    Reply::json(200, body)
                } else {
                    Reply::empty(303)
                        .header("location", &format!("{UI_BASE}/settings?flow={settings}"))
                };
                reply
                    .header("set-cookie", FLOW_CSRF_SET_COOKIE)
                    .header("set-cookie", &set_cookie)
            }
        }
    })
}
