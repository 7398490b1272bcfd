//! Issue 13, items 8 and 9.
//!
//! Signed out cleanly: when the gateway refuses a listed identity's browser session (whoami,
//! `GET /sessions`, a settings answer), the answer clears the session cookie with the
//! attributes Kratos set it with (CONTRACT.md 3.3), so the browser stops presenting it. Token
//! clients (`X-Session-Token`, `Authorization: Bearer`) never get a `Set-Cookie`.
//!
//! Editor support: the JSON Schemas under `schemas/` are the ones the types render (adding a
//! config key without regenerating them fails here), every shipped example names its schema
//! on its first line and validates against it, and schema and parser agree on what they
//! accept.
//!
//! Regenerate the schemas after changing the config types or the blocklist format:
//!
//! ```sh
//! UPDATE_SCHEMAS=1 cargo test --test it signed_out_and_schemas
//! ```

use crate::support;

use std::path::{Path, PathBuf};

use http::{Method, StatusCode};

use kratos_gate::blocklist::Blocklist;
use kratos_gate::config::{Config, SameSite};
use kratos_gate::schema;
use support::client::Reply as Answer;
use support::enforcement::{
    assert_identity_disabled, assert_no_credential, send, setup, setup_with, Person, Setup,
};
use support::fake_kratos::{fresh_token, fresh_uuid, Reply, SessionSpec};
use support::fixtures;

/// Kratos's logout clearing cookie with its default attributes (`Secure` unless `--dev`,
/// `SameSite=Lax`, `Path=/`, host-only).
const CLEARING: &str = "ory_kratos_session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax";

const FLOW: &str = "1d9d3e0a-3d38-4f3c-9a57-2b6a7c7c9e21";
const CSRF: &str =
    "csrf_token_3f1c=q1w2e3r4t5y6u7i8o9p0=; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax";

fn session_cookies_of(a: &Answer) -> Vec<String> {
    a.set_cookies()
        .into_iter()
        .filter(|c| c.to_ascii_lowercase().contains("ory_kratos_session"))
        .collect()
}

// ---------------------------------------------------------------------------
// Signed out cleanly
// ---------------------------------------------------------------------------

/// A second session of `p`'s identity, so that `GET /sessions` lists something.
fn second_session(s: &Setup, p: &Person) {
    s.fake.add_session(
        SessionSpec::new(p.identity, fresh_uuid())
            .token(fresh_token())
            .email(p.email.clone()),
    );
}

/// whoami answers with the identity header; the request's cookie spelling does not matter
/// to Kratos's answer here, only to whether the gateway clears it.
fn whoami_names(s: &Setup, p: &Person) {
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::json(200, fixtures::whoami_body(p.identity, p.session, None))
            .header("x-kratos-authenticated-identity-id", &p.id()),
    );
}

#[tokio::test]
async fn whoami_with_the_session_cookie_clears_it_as_kratos_does() {
    let s = setup().await;
    let a = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[(
            "cookie",
            &format!("theme=dark; {}", s.listed.cookie_header()),
        )],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.text(), fixtures::WHOAMI_401_WIRE);
    assert_eq!(a.set_cookies(), vec![CLEARING.to_owned()]);
    assert_no_credential(&a, &s.listed);
}

#[tokio::test]
async fn token_clients_never_get_a_set_cookie() {
    let s = setup().await;
    for path in ["/sessions/whoami", "/sessions"] {
        for (name, value) in [
            ("x-session-token", s.listed.token.clone()),
            ("authorization", format!("Bearer {}", s.listed.token)),
        ] {
            s.fake.add_session(s.listed.spec());
            second_session(&s, &s.listed);
            let a = send(Method::GET, &s.public(path), &[(name, value.as_str())], "").await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path} {name}");
            assert!(
                a.set_cookies().is_empty(),
                "{path} {name}: {:?}",
                a.set_cookies()
            );
        }
    }
}

/// A cookie the gateway recognises as the session cookie in another spelling (case, the
/// `__Host-`/`__Secure-` prefixes), in a second `Cookie` field (HTTP/2 splits them): still a
/// browser, still signed out.
#[tokio::test]
async fn every_recognised_spelling_of_the_cookie_is_a_browser() {
    let s = setup().await;
    whoami_names(&s, &s.listed);
    for cookie in [
        format!("ORY_KRATOS_SESSION={}", s.listed.cookie),
        format!("__Host-ory_kratos_session={}", s.listed.cookie),
        format!("a=b; __Secure-ory_kratos_session={}", s.listed.cookie),
    ] {
        let a = send(
            Method::GET,
            &s.public("/sessions/whoami"),
            &[("cookie", cookie.as_str())],
            "",
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{cookie}");
        assert_eq!(a.set_cookies(), vec![CLEARING.to_owned()], "{cookie}");
    }
    // Only other cookies: not the session's, nothing cleared.
    let a = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[
            ("cookie", "theme=dark"),
            ("x-session-token", s.listed.token.as_str()),
        ],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.set_cookies().is_empty(), "{:?}", a.set_cookies());
}

#[tokio::test]
async fn session_list_with_the_cookie_clears_it() {
    let s = setup().await;
    second_session(&s, &s.listed);
    let a = send(
        Method::GET,
        &s.public("/sessions"),
        &[("cookie", s.listed.cookie_header().as_str())],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text());
    assert_eq!(a.text(), fixtures::SESSIONS_401_WIRE);
    assert_eq!(a.set_cookies(), vec![CLEARING.to_owned()]);
}

/// The attributes come from config, as Kratos's `session.cookie.*`.
#[tokio::test]
async fn configured_attributes_are_the_ones_cleared_with() {
    let s = setup_with(|c| {
        c.inspection.session_cookie_path = "/auth".to_owned();
        c.inspection.session_cookie_domain = Some(".example.com".to_owned());
        c.inspection.session_cookie_secure = false;
        c.inspection.session_cookie_same_site = SameSite::Strict;
    })
    .await;
    let a = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[("cookie", s.listed.cookie_header().as_str())],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Go writes the domain without its leading dot.
    assert_eq!(
        a.set_cookies(),
        vec![
            "ory_kratos_session=; Path=/auth; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; SameSite=Strict"
                .to_owned()
        ]
    );
}

/// The same keys read from `gateway.yaml`, and what the parser refuses.
#[test]
fn cookie_keys_parse_from_yaml() {
    let base = "listen:\n  public: 0.0.0.0:4455\n  ops: 0.0.0.0:9091\nupstream:\n  public: http://127.0.0.1:4433\n  admin: http://127.0.0.1:4434\nblocklist:\n  path: blocklist.yaml\n";
    let path = Path::new("/etc/kratos-gate/gateway.yaml");
    let c = Config::from_yaml(base, path).expect("valid");
    assert_eq!(c.inspection.session_cookie_path, "/");
    assert_eq!(c.inspection.session_cookie_domain, None);
    assert!(c.inspection.session_cookie_secure);
    assert_eq!(c.inspection.session_cookie_same_site, SameSite::Lax);
    let text = format!("{base}inspection:\n  session_cookie_path: /auth\n  session_cookie_domain: example.com\n  session_cookie_secure: false\n  session_cookie_same_site: None\n");
    let c = Config::from_yaml(&text, path).expect("valid");
    assert_eq!(c.inspection.session_cookie_path, "/auth");
    assert_eq!(
        c.inspection.session_cookie_domain.as_deref(),
        Some("example.com")
    );
    assert!(!c.inspection.session_cookie_secure);
    assert_eq!(c.inspection.session_cookie_same_site, SameSite::None);
    for bad in [
        "session_cookie_path: auth",
        "session_cookie_path: \"/a; Domain=evil.example\"",
        "session_cookie_domain: \"evil.example; Secure\"",
        "session_cookie_same_site: lax",
        "session_cookie_secure: sometimes",
    ] {
        let text = format!("{base}inspection:\n  {bad}\n");
        assert!(Config::from_yaml(&text, path).is_err(), "{bad} accepted");
    }
}

/// A settings flow answer naming the identity, as Kratos writes it (CONTRACT.md §4, #6).
fn settings_flow(p: &Person) -> String {
    let session = fixtures::session_json(p.identity, p.session, Some(&p.email));
    let identity = session.get("identity").cloned().expect("identity");
    fixtures::Json::Object(vec![
        ("id".into(), fixtures::Json::str(FLOW)),
        ("type".into(), fixtures::Json::str("browser")),
        (
            "expires_at".into(),
            fixtures::Json::str("2026-08-01T11:00:00Z"),
        ),
        (
            "issued_at".into(),
            fixtures::Json::str("2026-08-01T10:00:00Z"),
        ),
        (
            "request_url".into(),
            fixtures::Json::str("https://auth.example.com/self-service/settings/browser"),
        ),
        (
            "ui".into(),
            fixtures::Json::Object(vec![("nodes".into(), fixtures::Json::Array(vec![]))]),
        ),
        ("identity".into(), identity),
        ("state".into(), fixtures::Json::str("success")),
    ])
    .to_wire()
}

/// A SPA settings submission (cookie + JSON) whose answer re-issues the cookie: 403, the
/// re-issued cookie withheld, the CSRF cookie kept, and the browser's cookie cleared.
#[tokio::test]
async fn spa_settings_refusal_clears_the_cookie() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/settings",
        Reply::json(200, settings_flow(&s.listed))
            .header("set-cookie", CSRF)
            .header("set-cookie", &s.listed.set_cookie()),
    );
    let a = send(
        Method::POST,
        &s.public(&format!("/self-service/settings?flow={FLOW}")),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("cookie", s.listed.cookie_header().as_str()),
        ],
        r#"{"method":"password","password":"a new correct horse"}"#,
    )
    .await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &s.listed);
    assert_eq!(session_cookies_of(&a), vec![CLEARING.to_owned()]);
    assert!(
        a.set_cookies().contains(&CSRF.to_owned()),
        "{:?}",
        a.set_cookies()
    );
}

/// A browser form settings submission: a 303 with only the re-issued cookie. The answer is
/// the HTML 403 page, and it clears the cookie.
#[tokio::test]
async fn browser_form_settings_refusal_clears_the_cookie() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/settings",
        Reply::empty(303)
            .header("location", "https://app.example.com/settings")
            .header("set-cookie", &s.listed.set_cookie()),
    );
    let a = send(
        Method::POST,
        &s.public(&format!("/self-service/settings?flow={FLOW}")),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", s.listed.cookie_header().as_str()),
        ],
        "method=password&password=a+new+correct+horse&csrf_token=q1w2e3",
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());
    assert_no_credential(&a, &s.listed);
    assert_eq!(a.set_cookies(), vec![CLEARING.to_owned()]);
}

/// A native settings submission with a token: refused, no `Set-Cookie`.
#[tokio::test]
async fn native_settings_refusal_sets_no_cookie() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/settings",
        Reply::json(200, settings_flow(&s.listed)),
    );
    for (name, value) in [
        ("x-session-token", s.listed.token.clone()),
        ("authorization", format!("Bearer {}", s.listed.token)),
    ] {
        let a = send(
            Method::POST,
            &s.public(&format!("/self-service/settings?flow={FLOW}")),
            &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
                (name, value.as_str()),
            ],
            r#"{"method":"password","password":"a new correct horse"}"#,
        )
        .await;
        assert_identity_disabled(&a);
        assert!(a.set_cookies().is_empty(), "{name}: {:?}", a.set_cookies());
    }
}

/// Unlisted browsers keep their cookie: Kratos's answer passes as it was.
#[tokio::test]
async fn unlisted_browser_keeps_its_cookie() {
    let s = setup().await;
    let a = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[("cookie", s.unlisted.cookie_header().as_str())],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.set_cookies().is_empty(), "{:?}", a.set_cookies());
}

// ---------------------------------------------------------------------------
// Editor support: JSON Schemas
// ---------------------------------------------------------------------------

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The committed schemas are what the types render. Adding a config key (or changing the
/// blocklist format) without regenerating them fails here.
#[test]
fn committed_schemas_match_the_types() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, rendered) in [
        (
            schema::CONFIG_SCHEMA_PATH,
            schema::render(&schema::config_schema()),
        ),
        (
            schema::BLOCKLIST_SCHEMA_PATH,
            schema::render(&schema::blocklist_schema()),
        ),
    ] {
        let file = repo(path);
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        if committed == rendered {
            continue;
        }
        if update {
            std::fs::create_dir_all(file.parent().expect("folder")).expect("mkdir");
            std::fs::write(&file, rendered).expect("write schema");
        } else {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what the types render (src/config.rs, src/schema.rs). \
         Regenerate and commit them:\n  UPDATE_SCHEMAS=1 cargo test --test it signed_out_and_schemas"
    );
}

struct Example {
    file: &'static str,
    schema: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        file: "gateway.yaml",
        schema: "schemas/gateway.schema.json",
    },
    Example {
        file: "deploy/compose/kratos-gate/gateway.yaml",
        schema: "schemas/gateway.schema.json",
    },
    Example {
        file: "deploy/helm/gateway.yaml",
        schema: "schemas/gateway.schema.json",
    },
    Example {
        file: "deploy/kubernetes/base/gateway.yaml",
        schema: "schemas/gateway.schema.json",
    },
    Example {
        file: "deploy/kubernetes/overlays/standalone/gateway.yaml",
        schema: "schemas/gateway.schema.json",
    },
    Example {
        file: "deploy/kubernetes/overlays/standalone-remote/gateway.yaml",
        schema: "schemas/gateway.schema.json",
    },
    Example {
        file: "blocklist.yaml",
        schema: "schemas/blocklist.schema.json",
    },
    Example {
        file: "deploy/compose/kratos-gate/blocklist.yaml",
        schema: "schemas/blocklist.schema.json",
    },
    Example {
        file: "deploy/helm/blocklist.yaml",
        schema: "schemas/blocklist.schema.json",
    },
    Example {
        file: "deploy/kubernetes/base/blocklist.yaml",
        schema: "schemas/blocklist.schema.json",
    },
];

fn validator(schema_path: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo(schema_path)).expect("schema file");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema is a valid JSON Schema")
}

/// YAML as JSON, as an editor's language server reads it. An empty or comment-only document
/// is an empty map.
fn yaml_value(text: &str) -> serde_json::Value {
    let v: Option<serde_json::Value> = serde_saphyr::from_str(text).expect("YAML");
    v.unwrap_or_else(|| serde_json::json!({}))
}

fn errors(v: &jsonschema::Validator, value: &serde_json::Value) -> Vec<String> {
    v.iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Every example names its schema on its first line (a path relative to the file that
/// reaches the committed schema), validates against it, and the gateway's own parser accepts
/// it too.
#[test]
fn every_shipped_example_names_and_matches_its_schema() {
    for ex in EXAMPLES {
        let path = repo(ex.file);
        let text = std::fs::read_to_string(&path).expect(ex.file);
        let first = text.lines().next().unwrap_or_default();
        let named = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `# yaml-language-server: $schema=…`, is {first:?}",
                    ex.file
                )
            });
        let resolved = path.parent().expect("folder").join(named.trim());
        assert_eq!(
            std::fs::canonicalize(&resolved).ok(),
            std::fs::canonicalize(repo(ex.schema)).ok(),
            "{}: $schema={named} does not reach {}",
            ex.file,
            ex.schema
        );
        let v = validator(ex.schema);
        let errs = errors(&v, &yaml_value(&text));
        assert!(
            errs.is_empty(),
            "{} against {}: {errs:#?}",
            ex.file,
            ex.schema
        );
        if ex.schema.contains("gateway") {
            Config::from_yaml(&text, &path).unwrap_or_else(|e| panic!("{}: {e:?}", ex.file));
        } else {
            Blocklist::parse(&text, ex.file).unwrap_or_else(|e| panic!("{}: {e:?}", ex.file));
        }
    }
}

const MINIMAL: &str = "listen:\n  public: 0.0.0.0:4455\n  ops: 0.0.0.0:9091\nupstream:\n  public: http://127.0.0.1:4433\n  admin: http://127.0.0.1:4434\nblocklist:\n  path: blocklist.yaml\n";

/// Schema and parser agree on `gateway.yaml`: what one accepts the other accepts.
#[test]
fn config_schema_and_parser_agree() {
    let v = validator(schema::CONFIG_SCHEMA_PATH);
    let path = Path::new("/etc/kratos-gate/gateway.yaml");
    let cases: &[(&str, bool)] = &[
        ("", true),
        (
            "server:\n  shutdown_grace: 1m 30s\n  shutdown_delay: 0s\n",
            true,
        ),
        ("upstream_x: 1\n", false),
        ("server:\n  shutdown_grace: soon\n", false),
        ("server:\n  graceful: 1s\n", false),
        ("blocklist_extra:\n  mode: report\n", false),
        ("log:\n  access: true\n", true),
        ("log:\n  acces: true\n", false),
        ("inspection:\n  session_cookie_same_site: Strict\n", true),
        (
            "inspection:\n  session_cookie_same_site: Sometimes\n",
            false,
        ),
        (
            "inspection:\n  session_cookie_secure: false\n  session_cookie_domain: example.com\n",
            true,
        ),
        (
            "forwarding:\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7]\n",
            true,
        ),
        (
            "enforcement:\n  browser_redirect: https://app.example.com/disabled\n",
            true,
        ),
        ("revocation:\n  concurrency: many\n", false),
    ];
    for (extra, ok) in cases {
        let text = format!("{MINIMAL}{extra}");
        let parsed = Config::from_yaml(&text, path).is_ok();
        let errs = errors(&v, &yaml_value(&text));
        assert_eq!(parsed, *ok, "parser on {extra:?}");
        assert_eq!(errs.is_empty(), *ok, "schema on {extra:?}: {errs:?}");
    }
    for (from, to, ok) in [
        (
            "  public: 0.0.0.0:4455\n",
            "  public:\n    address: 0.0.0.0:4455\n    tls: {cert: c.pem, key: k.pem}\n",
            true,
        ),
        (
            "  public: 0.0.0.0:4455\n",
            "  public:\n    address: 0.0.0.0:4455\n    tsl: {}\n",
            false,
        ),
        ("  public: 0.0.0.0:4455\n", "  public: localhost\n", false),
        ("http://127.0.0.1:4434", "ftp://127.0.0.1:4434", false),
        ("http://127.0.0.1:4434", "https://project.oryapis.com", true),
        ("  ops: 0.0.0.0:9091\n", "", false),
    ] {
        let text = MINIMAL.replace(from, to);
        let parsed = Config::from_yaml(&text, path).is_ok();
        let errs = errors(&v, &yaml_value(&text));
        assert_eq!(parsed, ok, "parser on {to:?}");
        assert_eq!(errs.is_empty(), ok, "schema on {to:?}: {errs:?}");
    }
}

/// Schema and parser agree on the blocklist format.
#[test]
fn blocklist_schema_and_parser_agree() {
    let v = validator(schema::BLOCKLIST_SCHEMA_PATH);
    let id = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
    let cases: Vec<(String, bool)> = vec![
        ("identities:\n".to_owned(), true),
        (format!("identities:\n  - {id}\n"), true),
        (format!("identities:\n  - id: {id}\n    reason: fraud\n    until: 2027-01-01T00:00:00Z\n    mode: report\n"), true),
        (format!("identities:\n  - id: {id}\n    ticket: OPS-1\n    added_by: alice\n    note: x\n    meta: {{case: 7}}\n"), true),
        ("emails:\n  - spammer@example.com\n  - email: a@b.example\n    reason: spam\nemail_domains:\n  - throwaway.example\n  - domain: y.example\n".to_owned(), true),
        (format!("identities:\n  - id: {id}\n    reasn: typo\n"), false),
        (format!("identities:\n  - id: {id}\n    mode: maybe\n"), false),
        (format!("identities:\n  - id: {id}\n    until: tomorrow\n"), false),
        (format!("identities:\n  - email: {id}\n"), false),
        ("identities:\n  - not-a-uuid\n".to_owned(), false),
        ("identities:\n  - reason: no id\n".to_owned(), false),
        ("users:\n  - x\n".to_owned(), false),
        ("emails:\n  - domain: x.example\n".to_owned(), false),
    ];
    for (text, ok) in cases {
        let parsed = Blocklist::parse(&text, "blocklist.yaml").is_ok();
        let errs = errors(&v, &yaml_value(&text));
        assert_eq!(parsed, ok, "parser on {text:?}");
        assert_eq!(errs.is_empty(), ok, "schema on {text:?}: {errs:?}");
    }
}
