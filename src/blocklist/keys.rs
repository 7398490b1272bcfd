//! How an entry's text becomes the key the list compares: e-mail addresses and domains in
//! one spelling (lower-case, the domain in ASCII by UTS-46), public suffixes refused.

use std::borrow::Cow;

/// Why a value is not an e-mail address or a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Invalid {
    /// Not the shape of one.
    Malformed,
    /// The domain is not a valid internationalised domain name (IDNA/UTS-46).
    Idn,
    /// A domain entry that is a public suffix (`com`, `co.uk`, `github.io`).
    PublicSuffix,
}

/// Lower-cases and checks an e-mail address: one `@`-separated local part and a domain,
/// the domain in its ASCII (punycode) form, see [`normalize_domain`].
pub fn normalize_email(text: &str) -> Option<String> {
    email_key(text).ok()
}

/// Checks a domain and gives its one spelling: ASCII, lower-case, without a trailing dot.
/// An internationalised name is converted to punycode by UTS-46 (as browsers do), so
/// `Bücher.example` and `xn--bcher-kva.example` are the same domain. Labels are letters,
/// digits, `-` and `_`.
pub fn normalize_domain(text: &str) -> Option<String> {
    domain_key(text).ok()
}

pub(super) fn email_key(text: &str) -> Result<String, Invalid> {
    let t = text.trim();
    let (local, domain) = t.rsplit_once('@').ok_or(Invalid::Malformed)?;
    if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::Malformed);
    }
    let domain = domain_ascii(domain)?;
    // One allocation for the key, as for a plain lower-cased copy.
    let mut key = String::with_capacity(local.len() + 1 + domain.len());
    if local.is_ascii() {
        key.extend(local.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        key.push_str(&local.to_lowercase());
    }
    key.push('@');
    key.push_str(&domain);
    Ok(key)
}

fn domain_key(text: &str) -> Result<String, Invalid> {
    domain_ascii(text).map(Cow::into_owned)
}

/// [`domain_key`], borrowing from `text` when it is already in its one spelling.
fn domain_ascii(text: &str) -> Result<Cow<'_, str>, Invalid> {
    let t = text.trim().trim_end_matches('.');
    if t.is_empty() || t.len() > 1024 {
        return Err(Invalid::Malformed);
    }
    let ascii = match domain_to_ascii(t)? {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim_end_matches('.')),
        Cow::Owned(o) => Cow::Owned(o.trim_end_matches('.').to_owned()),
    };
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(Invalid::Malformed);
    }
    let ok = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    });
    if ok {
        Ok(ascii)
    } else {
        Err(Invalid::Malformed)
    }
}

/// An `email_domains` entry: a domain ([`domain_key`]) that is not itself a public suffix.
pub(super) fn domain_entry_key(text: &str) -> Result<String, Invalid> {
    let key = domain_key(text)?;
    if is_public_suffix(&key) {
        return Err(Invalid::PublicSuffix);
    }
    Ok(key)
}

/// True when `domain` (ASCII, lower-case, no trailing dot) is itself a suffix on the Public
/// Suffix List compiled into the `psl` crate: an ICANN one (`com`, `co.uk`, `公司.cn`) or a
/// private one (`github.io`, `blogspot.com`), each of whose subdomains belongs to someone
/// else. A name the list does not know (`example`, `internal`) is not one.
pub fn is_public_suffix(domain: &str) -> bool {
    use psl::Psl;
    // The compiled list holds internationalised suffixes in Unicode only.
    let unicode;
    let name = if domain.split('.').any(|l| l.starts_with("xn--")) {
        unicode = idna::domain_to_unicode(domain).0;
        unicode.as_str()
    } else {
        domain
    };
    psl::List
        .suffix(name.as_bytes())
        .is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
}

/// UTS-46 ToASCII (non-transitional, as in URLs): maps (lower-cases, NFC), checks, and
/// punycode-encodes every label that is not ASCII; checks every `xn--` label too. A name that
/// is ASCII but not a valid domain (`bad..domain`, `@x`) is left for the label check, so that
/// it reads as malformed rather than as a bad IDN.
fn domain_to_ascii(domain: &str) -> Result<Cow<'_, str>, Invalid> {
    let is_idn = !domain.is_ascii()
        || domain
            .split('.')
            .any(|l| l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
    match idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::URL) {
        Ok(ascii) => Ok(ascii),
        Err(_) if is_idn => Err(Invalid::Idn),
        Err(_) => Err(Invalid::Malformed),
    }
}

/// An address as [`Blocklist::address_matches`] compares it: trimmed, lower-case, the domain
/// in ASCII. An ASCII address (nearly all) costs one lower-cased copy, as before; only an
/// address with non-ASCII characters goes through UTS-46. In a domain that UTS-46 refuses,
/// each label it accepts is converted alone, so the domain's listed parents still match.
pub(super) fn address_key(address: &str) -> String {
    let t = address.trim();
    if t.is_ascii() {
        return t.to_ascii_lowercase();
    }
    match t.rsplit_once('@') {
        Some((local, domain)) => {
            let mut key = local.to_lowercase();
            key.push('@');
            match domain_to_ascii(domain) {
                Ok(ascii) => key.push_str(&ascii),
                // Label by label: the labels UTS-46 accepts in their ASCII form.
                Err(_) => {
                    for (i, label) in domain.split('.').enumerate() {
                        if i > 0 {
                            key.push('.');
                        }
                        match domain_to_ascii(label) {
                            Ok(ascii) => key.push_str(&ascii),
                            Err(_) => key.push_str(&label.to_lowercase()),
                        }
                    }
                }
            }
            key
        }
        None => t.to_lowercase(),
    }
}
