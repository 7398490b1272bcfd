//! Request paths as a lax router would see them, for naming request kinds in audit events
//! and for the admin listener's extend check. Blocking on the public listener never depends
//! on the path (see `inspection.rs`).

/// The path a permissive router would route: percent-decoded (repeatedly, so `%2577` is
/// `w`), `\` taken as `/`, empty and `.` segments dropped, `..` resolved, lower-cased, without
/// a trailing slash. Always starts with `/`.
pub fn canonical_path(raw: &str) -> String {
    let decoded = decode_fully(raw);
    let lower = decoded.replace('\\', "/").to_ascii_lowercase();
    let mut segments: Vec<&str> = Vec::new();
    for seg in lower.split('/') {
        match seg.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0') {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(lower.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Percent-decodes `raw` until no `%XX` escape is left, however many times it was encoded
/// (`%252577` → `%2577` → `%77` → `w`). One pass: a decoded byte may complete an escape with
/// the bytes before it, so the end of the output is decoded again as it grows. Linear in the
/// length, and never leaves an escape behind for a second call to decode.
fn decode_fully(raw: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        out.push(b);
        while let [.., b'%', h, l] = out.as_slice() {
            let Some(byte) = hex(*h).zip(hex(*l)).map(|(h, l)| (h << 4) | l) else {
                break;
            };
            out.truncate(out.len().saturating_sub(3));
            out.push(byte);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The session id of an extend request (`/admin/sessions/{id}/extend`, or
/// `/sessions/{id}/extend`, which Kratos's admin port also routes), however the path is
/// spelled. `Some("")`-like garbage ids are returned as written for the caller to reject.
pub fn extend_session_id(raw_path: &str) -> Option<String> {
    let path = canonical_path(raw_path);
    let rest = path.strip_prefix("/admin").unwrap_or(&path);
    let rest = rest.strip_prefix("/sessions/")?;
    let (id, tail) = rest.split_once('/')?;
    (tail == "extend").then(|| id.to_owned())
}

/// True for the admin API's paths however spelled (`/admin`, `/admin/...`, `//Admin/./x`).
///
/// Besides `/admin/…`, Kratos's public port answers the admin API's unprefixed paths
/// (`/identities…`, `/recovery/link`, `/recovery/code`, `/courier…`) with a 307 to the admin
/// URL (CONTRACT.md §2, §14): they are refused too, so that URL is never revealed.
pub fn is_admin_path(raw_path: &str) -> bool {
    Canonical::of(raw_path).is_admin()
}

/// A request path made canonical once ([`canonical_path`], borrowed when already canonical),
/// for asking it both whether it is the admin API's and what kind of request it is.
#[derive(Debug)]
pub struct Canonical<'a>(std::borrow::Cow<'a, str>);

impl<'a> Canonical<'a> {
    pub fn of(raw_path: &'a str) -> Self {
        Canonical(canonical_cow(raw_path))
    }

    /// [`is_admin_path`] of the raw path.
    pub fn is_admin(&self) -> bool {
        let p = &*self.0;
        let under = |prefix: &str| is_under(p, prefix);
        under("/admin")
            || under("/identities")
            || under("/courier")
            || p == "/recovery/link"
            || p == "/recovery/code"
    }

    /// [`request_kind`] of the raw path.
    pub fn kind(&self) -> &'static str {
        let starts = |prefix: &str| is_under(&self.0, prefix);
        if starts("/sessions/whoami") {
            "whoami"
        } else if starts("/sessions/token-exchange") {
            "token_exchange"
        } else if starts("/self-service/login") || starts("/self-service/methods/oidc") {
            "login"
        } else if starts("/self-service/registration") {
            "registration"
        } else if starts("/self-service/recovery") {
            "recovery"
        } else if starts("/self-service/settings") {
            "settings"
        } else if starts("/self-service/verification") {
            "verification"
        } else if starts("/sessions") {
            "sessions"
        } else {
            "other"
        }
    }
}

/// [`canonical_path`] of `raw`, borrowed without building a string when `raw` is already
/// canonical (the common request path).
fn canonical_cow(raw: &str) -> std::borrow::Cow<'_, str> {
    if already_canonical(raw) {
        std::borrow::Cow::Borrowed(raw)
    } else {
        std::borrow::Cow::Owned(canonical_path(raw))
    }
}

/// `path` is `prefix` itself or below it (`/admin`, `/admin/x`; not `/administrator`).
fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// True when [`canonical_path`] would return `raw` unchanged: `/`, or `/`-separated segments
/// that are not empty, `.` or `..` and hold only lower-case letters, digits, `-`, `_` and `.`
/// (nothing to decode, fold, trim or resolve). The common request path; checking it costs
/// less than building the three strings of `canonical_path`.
fn already_canonical(raw: &str) -> bool {
    raw == "/"
        || raw.strip_prefix('/').is_some_and(|rest| {
            rest.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'-' | b'_' | b'.')
                    })
            })
        })
}

/// Parses a UUID the way Kratos parses ids in paths (gofrs/uuid `FromString`): the
/// canonical form or 32 hex digits without dashes, either bare, in `{…}` braces or after a
/// `urn:uuid:` prefix, in either letter case. Anything else is `None`: Kratos answers it
/// with 400.
pub fn parse_uuid_as_kratos_does(text: &str) -> Option<uuid::Uuid> {
    let inner = match text.strip_prefix("urn:uuid:") {
        Some(rest) => rest,
        None => text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text),
    };
    match inner.len() {
        32 if inner.bytes().all(|b| b.is_ascii_hexdigit()) => uuid::Uuid::try_parse(inner).ok(),
        36 if !inner.starts_with('{') => uuid::Uuid::try_parse(inner).ok(),
        _ => None,
    }
}

/// The `flow` query parameter as Kratos reads it (the first value, any spelling
/// [`parse_uuid_as_kratos_does`] accepts), when it is a UUID.
pub fn flow_id(uri: &http::Uri) -> Option<uuid::Uuid> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "flow")
        .and_then(|(_, v)| parse_uuid_as_kratos_does(&v))
}

/// A short name for what a public request is, for audit events and metrics.
pub fn request_kind(raw_path: &str) -> &'static str {
    Canonical::of(raw_path).kind()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_path_undoes_spelling_tricks() {
        for raw in [
            "/sessions/whoami",
            "//sessions/whoami",
            "/sessions/%77hoami",
            "/sessions/%2577hoami",
            "/sessions/whoami/",
            "/./sessions/./whoami",
            "/x/../sessions/whoami",
            "/Sessions/WHOAMI",
            "/sessions\\whoami",
            "/sessions/whoami%2f",
        ] {
            assert_eq!(canonical_path(raw), "/sessions/whoami", "{raw}");
        }
        assert_eq!(canonical_path(""), "/");
        assert_eq!(canonical_path("/../../"), "/");
    }

    /// Found by the `paths` fuzz target: a path percent-encoded four times or more kept an
    /// escape after three rounds of decoding, which a second call then decoded, so
    /// `canonical_path` was not idempotent and the extend check read
    /// `/admin/sessions/{id}/%25252565xtend` as no extend.
    #[test]
    fn canonical_path_is_idempotent_however_deep_the_encoding() {
        for raw in [
            "/%25252577hoami",
            "/sessions/%2525252577hoami",
            "/a/%252525252e%252525252e/b",
            "/%2525252525252f%252525252f",
            // The input the `paths` fuzz target found (its first crash, after 43,500 runs).
            "-######%64%%%\0-%%%333333333%3333%%3%%%$%%%%%%%%%%%%%%%%%%%%%%%33333%%%",
        ] {
            let once = canonical_path(raw);
            assert_eq!(canonical_path(&once), once, "{raw}");
        }
        assert_eq!(
            canonical_path("/sessions/%25252577hoami"),
            "/sessions/whoami"
        );
        let id = "7efedf89-4dda-4636-8320-7506e58db1a3";
        assert_eq!(
            extend_session_id(&format!("/admin/sessions/{id}/%25252565xtend")).as_deref(),
            Some(id)
        );
        // Decoding stays linear however deep the nesting.
        let deep = format!("/%{}41", "25".repeat(30_000));
        let started = std::time::Instant::now();
        assert_eq!(canonical_path(&deep), "/a");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn extend_paths_in_every_spelling() {
        let id = "7efedf89-4dda-4636-8320-7506e58db1a3";
        for raw in [
            format!("/admin/sessions/{id}/extend"),
            format!("/sessions/{id}/extend"),
            format!("//admin//sessions/{id}/extend/"),
            format!("/admin/sessions/{id}/%65xtend"),
            format!("/admin/x/../sessions/{id}/Extend"),
        ] {
            assert_eq!(extend_session_id(&raw).as_deref(), Some(id), "{raw}");
        }
        assert_eq!(extend_session_id(&format!("/admin/sessions/{id}")), None);
        assert_eq!(extend_session_id("/admin/sessions/extend"), None);
        assert_eq!(
            extend_session_id(&format!("/admin/sessions/{id}/extend/more")),
            None
        );
    }

    #[test]
    fn admin_paths_in_every_spelling() {
        for raw in [
            "/admin",
            "/admin/",
            "/admin/sessions/x/extend",
            "//Admin//identities",
            "/x/../admin/y",
            "/%61dmin/y",
        ] {
            assert!(is_admin_path(raw), "{raw}");
        }
        for raw in [
            "/identities",
            "/Identities/5ff66179-c240-4703-b0d8-494592cefff5",
            "/identities/x/sessions",
            "//recovery/link",
            "/recovery/code",
            "/courier/messages",
        ] {
            assert!(is_admin_path(raw), "{raw}");
        }
        for raw in [
            "/",
            "/administrator",
            "/self-service/admin",
            "/sessions/whoami",
            "/self-service/recovery",
            "/identitiesx",
        ] {
            assert!(!is_admin_path(raw), "{raw}");
        }
    }

    #[test]
    fn a_path_taken_as_already_canonical_is_what_canonical_path_returns() {
        // Every string of up to 6 characters over an alphabet of path tricks.
        let alphabet = ['/', 'a', 'A', '.', '%', '2', 'f', '\\', ' ', '-', '\0'];
        let mut taken = 0;
        let mut word = String::new();
        fn walk(word: &mut String, alphabet: &[char], depth: usize, taken: &mut usize) {
            if already_canonical(word) {
                assert_eq!(canonical_path(word), *word, "{word:?}");
                *taken += 1;
            }
            if depth == 0 {
                return;
            }
            for c in alphabet {
                word.push(*c);
                walk(word, alphabet, depth - 1, taken);
                word.pop();
            }
        }
        walk(&mut word, &alphabet, 6, &mut taken);
        assert!(taken > 1000, "{taken}");
        for raw in [
            "/sessions/whoami",
            "/self-service/login/api",
            "/health/alive",
            "/",
        ] {
            assert!(already_canonical(raw), "{raw}");
        }
    }

    #[test]
    fn uuids_in_every_spelling_kratos_accepts() {
        let canonical = "5ff66179-c240-4703-b0d8-494592cefff5";
        let want = uuid::Uuid::parse_str(canonical).ok();
        for spelling in [
            canonical.to_owned(),
            canonical.to_uppercase(),
            canonical.replace('-', ""),
            format!("{{{canonical}}}"),
            format!("{{{}}}", canonical.replace('-', "")),
            format!("urn:uuid:{canonical}"),
            format!("urn:uuid:{}", canonical.replace('-', "")),
        ] {
            assert_eq!(parse_uuid_as_kratos_does(&spelling), want, "{spelling}");
        }
        for bad in [
            "",
            "5ff66179",
            "5ff66179-c240-4703-b0d8-494592cefff5x",
            "{5ff66179}",
        ] {
            assert_eq!(parse_uuid_as_kratos_does(bad), None, "{bad}");
        }
    }

    /// An extend path in any spelling yields an id that parses as Kratos would parse it.
    #[test]
    fn extend_ids_in_kratos_spellings_come_through() {
        let canonical = "5ff66179-c240-4703-b0d8-494592cefff5";
        for raw in [
            format!("/admin/sessions/{}/extend", canonical.replace('-', "")),
            format!("/admin/sessions/%7B{canonical}%7D/extend"),
            format!(
                "/admin/sessions/urn:uuid:{}/extend",
                canonical.to_uppercase()
            ),
        ] {
            let id = extend_session_id(&raw).expect("extend path");
            assert_eq!(
                parse_uuid_as_kratos_does(&id)
                    .map(|u| u.to_string())
                    .as_deref(),
                Some(canonical),
                "{raw}"
            );
        }
    }

    /// One canonicalisation answers both questions exactly as the two separate checks do,
    /// however the path is spelled.
    #[test]
    fn one_canonical_path_answers_both_checks() {
        for (raw, admin, kind) in [
            ("/self-service/login/api", false, "login"),
            ("/Self-Service/%4cogin/", false, "login"),
            ("/%2573elf-service/login", false, "login"),
            ("/admin/../self-service/login", false, "login"),
            ("/self-service/login/../../admin/identities", true, "other"),
            ("//Admin/./sessions/whoami", true, "other"),
            ("/%61dmin/sessions/whoami", true, "other"),
            ("/sessions/%2577hoami/", false, "whoami"),
            ("/sessions\\whoami", false, "whoami"),
            ("/recovery/link/", true, "other"),
            ("/self-service/recovery/../../recovery/code", true, "other"),
            ("/self-service/recovery", false, "recovery"),
            ("/identities%2f", true, "other"),
            ("/self-service/loginx", false, "other"),
            ("", false, "other"),
        ] {
            let path = Canonical::of(raw);
            assert_eq!((path.is_admin(), path.kind()), (admin, kind), "{raw}");
            assert_eq!(path.is_admin(), is_admin_path(raw), "{raw}");
            assert_eq!(path.kind(), request_kind(raw), "{raw}");
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(request_kind("/self-service/login"), "login");
        assert_eq!(request_kind("/sessions/%77hoami"), "whoami");
        assert_eq!(
            request_kind("/self-service/methods/oidc/callback/google"),
            "login"
        );
        assert_eq!(request_kind("/sessions/token-exchange"), "token_exchange");
        assert_eq!(request_kind("/health/alive"), "other");
    }
}
