//! Unit tests of the config tree: positions, every error of a file, `${VAR}`, overrides, the
//! key list.

use serde::Deserialize;

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    name: String,
    #[serde(default)]
    size: u32,
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    inner: Inner,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Inner {
    count: usize,
    list: Vec<String>,
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn stand_in(path: &str) -> Option<Value> {
    (path == "name").then(|| Value::Scalar("stand-in".to_owned()))
}

#[test]
fn every_error_is_reported_with_its_key_and_position() {
    let text = "name: [a]\nsize: big\nenabled: sometimes\ninner:\n  count: -1\n  lst: []\n";
    let tree = parse(text).expect("yaml");
    let (doc, errors) = deserialize_all::<Doc>(&tree, &stand_in);
    let doc = doc.expect("checked past every error");
    assert_eq!(
        (
            doc.name.as_str(),
            doc.size,
            doc.enabled,
            doc.inner.count,
            doc.inner.list.len()
        ),
        ("stand-in", 0, false, 0, 0)
    );
    let got: Vec<(String, u64, u64)> = errors
        .iter()
        .map(|e| (e.path.clone(), e.at.line, e.at.column))
        .collect();
    assert_eq!(
        got,
        [
            ("name".to_owned(), 1, 7),
            ("size".to_owned(), 2, 7),
            ("enabled".to_owned(), 3, 10),
            ("inner.count".to_owned(), 5, 10),
            ("inner.lst".to_owned(), 6, 3),
        ],
        "{errors:#?}"
    );
    assert!(errors[1]
        .message
        .contains("`big` is not a whole number (0 to 4294967295)"));
    assert!(errors[2]
        .message
        .contains("`sometimes` is not true or false"));
    assert!(errors[4]
        .message
        .contains("unknown key `lst`; expected one of `count`, `list`"));
}

#[test]
fn a_missing_required_key_points_at_its_map() {
    let tree = parse("size: 3\n").expect("yaml");
    let (_, errors) = deserialize_all::<Doc>(&tree, &stand_in);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "name");
    assert!(errors[0].message.contains("missing required key `name`"));
}

#[test]
fn references_expand_with_defaults_and_unset_ones_are_errors() {
    let env = |k: &str| match k {
        "HOST" => Some("kratos".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    assert_eq!(
        expand("http://${HOST}:${PORT:-4433}", &env),
        Ok(Some("http://kratos:4433".to_owned()))
    );
    assert_eq!(
        expand("${EMPTY:-x}${EMPTY}", &env),
        Ok(Some("x".to_owned()))
    );
    assert_eq!(
        expand("costs $5, $${HOST}", &env),
        Ok(Some("costs $5, ${HOST}".to_owned()))
    );
    assert_eq!(expand("plain", &env), Ok(None));
    assert!(expand("${NOPE}", &env)
        .expect_err("unset")
        .contains("${NOPE} is not set"));
    assert!(expand("${HOST", &env).is_err());
    assert!(expand("${1X}", &env).is_err());

    let mut tree = parse("name: ${HOST}\ninner:\n  list: [a, '${NOPE}']\n").expect("yaml");
    let problems = expand_all(&mut tree, &env);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "inner.list[1]");
    assert_eq!((problems[0].at.line, problems[0].at.column), (3, 13));
    let p = provenance(&tree);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].path, "name");
    assert_eq!(p[0].value, "kratos");
    assert_eq!(p[0].origin, Origin::Expanded("${HOST}".to_owned()));
    let _ = no_env("x");
}

#[test]
fn numbers_and_booleans_keep_their_text_as_written() {
    let tree = parse("a: 0123\nb: 1.10\nc: yes\nd: [007, true]\ne: \"0123\"\nf: 12 # note\n")
        .expect("yaml");
    let shown: Vec<String> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| tree.get(k).map(Node::display).unwrap_or_default())
        .collect();
    assert_eq!(shown, ["0123", "1.10", "yes", "[007, true]", "0123", "12"]);
}

#[test]
fn passwords_in_urls_are_not_shown() {
    assert_eq!(
        mask_password("redis://gate:s3cret@redis:6379/0"),
        "redis://gate:***@redis:6379/0"
    );
    assert_eq!(
        mask_password("rediss://:s3cret@redis"),
        "rediss://:***@redis"
    );
    assert_eq!(mask_password("http://kratos:4433"), "http://kratos:4433");
    assert_eq!(mask_password("s3://bucket/a@b:c"), "s3://bucket/a@b:c");
    let env =
        |k: &str| (k == "KRATOS_GATE_THROTTLE_REDIS_URL").then(|| "redis://u:pw@r".to_owned());
    let mut tree = parse("throttle:\n  enabled: true\n").expect("yaml");
    assert_eq!(apply_overrides(&mut tree, &env), []);
    assert_eq!(provenance(&tree)[0].value, "redis://u:***@r");
}

#[test]
fn every_config_key_has_an_environment_name_of_its_own() {
    let keys = keys();
    for k in [
        "listen.public",
        "listen.public.address",
        "listen.public.tls.cert",
        "listen.admin.tls.key",
        "listen.hooks",
        "upstream.public",
        "upstream.ca_file",
        "blocklist.path",
        "forwarding.trusted_proxies",
        "revocation.concurrency",
        "inspection.session_cookie_same_site",
        "log.access",
    ] {
        assert!(keys.contains_key(k), "{k} missing from {:?}", keys.keys());
    }
    assert!(!keys.contains_key("listen"));
    assert!(keys["forwarding.trusted_proxies"].list);
    assert_eq!(keys["listen.public"].map_key.as_deref(), Some("address"));
    let mut names: Vec<String> = keys.keys().map(|k| env_name(k)).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "two keys share an environment name");
    assert_eq!(env_name("upstream.ca_file"), "KRATOS_GATE_UPSTREAM_CA_FILE");
}

#[test]
fn overrides_replace_values_and_turn_a_single_address_into_a_map() {
    let mut tree = parse("listen:\n  public: 0.0.0.0:4455\n  ops: 0.0.0.0:9091\n").expect("yaml");
    let env = |k: &str| match k {
        "KRATOS_GATE_LISTEN_OPS" => Some("127.0.0.1:9999".to_owned()),
        "KRATOS_GATE_LISTEN_PUBLIC_TLS_CERT" => Some("c.pem".to_owned()),
        "KRATOS_GATE_FORWARDING_TRUSTED_PROXIES" => Some("10.0.0.0/8, 10.1.0.0/16".to_owned()),
        _ => None,
    };
    assert_eq!(apply_overrides(&mut tree, &env), []);
    assert_eq!(
        tree.get("listen.ops").map(Node::display).as_deref(),
        Some("127.0.0.1:9999")
    );
    assert_eq!(
        tree.get("listen.public.address")
            .map(Node::display)
            .as_deref(),
        Some("0.0.0.0:4455")
    );
    assert_eq!(
        tree.get("listen.public.tls.cert")
            .map(Node::display)
            .as_deref(),
        Some("c.pem")
    );
    assert_eq!(
        tree.get("forwarding.trusted_proxies")
            .map(Node::display)
            .as_deref(),
        Some("[10.0.0.0/8, 10.1.0.0/16]")
    );
    let p = provenance(&tree);
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listen.public.tls.cert",
            "listen.ops",
            "forwarding.trusted_proxies"
        ]
    );
    assert_eq!(
        p[1].origin,
        Origin::Env("KRATOS_GATE_LISTEN_OPS".to_owned())
    );
    // The file's position of an overridden key is kept.
    assert_eq!(p[1].at.line, 3);
}
