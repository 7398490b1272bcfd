//! Incremental blocklist reloads agree with whole-file parses: generated files (bare and map
//! items, comments, blank lines, several sections) edited by random scripts (insert, delete
//! and change lines, including lines that break the structure or the line reader's shapes,
//! duplicates, `until` in the past), each version reloaded through the incremental path from
//! the last one in force and compared with a parse of the whole file: the list (entries,
//! metadata, positions), warnings, errors, SHA-256, the changes revoke-on-add acts on, every
//! difference, and lookups. Most small edits must take the incremental path.

use std::cell::Cell;

use kratos_gate::blocklist::diff::{differences, Change, Difference};
use kratos_gate::blocklist::incremental::Tracker;
use kratos_gate::blocklist::Blocklist;
use kratos_gate::util::{sha256_hex, unix_now};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use uuid::Uuid;

const NAME: &str = "blocklist.yaml";

/// A small deterministic generator: the file's ids come from the case's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn id(&mut self) -> String {
        Uuid::from_u64_pair(self.next(), self.next()).to_string()
    }
}

/// A file as elements (one or more lines each).
fn file(seed: u64, items: usize, before: bool, after: bool) -> Vec<String> {
    let mut rng = Rng(seed | 1);
    let mut out = vec!["# blocklist".to_owned()];
    if seed.is_multiple_of(3) {
        out.push("---".to_owned());
    }
    if before {
        out.push("emails:".to_owned());
        out.push("  - a@evil.example".to_owned());
        out.push("  - email: b@evil.example\n    reason: spam".to_owned());
    }
    out.push("identities:".to_owned());
    for _ in 0..items {
        let id = rng.id();
        out.push(match rng.next() % 20 {
            0 => format!("  - id: {id}\n    reason: fraud\n    ticket: OPS-1"),
            1 => format!("  - id: {id}\n    until: 2999-01-01T00:00:00Z\n    mode: report"),
            2 => "  # a comment".to_owned(),
            3 => String::new(),
            _ => format!("  - {id}"),
        });
    }
    if after {
        out.push("email_domains:".to_owned());
        out.push("  - throwaway.example".to_owned());
        out.push("networks:".to_owned());
        out.push("  - network: 192.0.2.0/24\n    until: 2001-01-01T00:00:00Z".to_owned());
    }
    out
}

/// What an edit puts in: a fresh id (the common case) or something else.
fn new_element(kind: u8, rng: &mut Rng, lines: &[String]) -> (String, bool) {
    let id = rng.id();
    // Three in four edits put in something the incremental path can take.
    match kind % 32 {
        0..=19 => (format!("  - {id}"), true),
        20 | 21 => (
            format!("  - id: {id}\n    reason: chargeback\n    note: n"),
            true,
        ),
        22 | 23 => (
            format!("  - id: {id}\n    until: 2001-01-01T00:00:00Z"),
            true,
        ),
        24 => {
            // A duplicate of a listed line.
            let at = rng.next() as usize % lines.len().max(1);
            (lines.get(at).cloned().unwrap_or_default(), false)
        }
        25 => ("  - not-a-uuid".to_owned(), false),
        26 => ("emails:".to_owned(), false),
        27 => (format!("  - [{id}]"), false),
        28 => ("    reason: x".to_owned(), false),
        29 => (format!("    - {id}"), false),
        30 => ("  # comment".to_owned(), false),
        _ if rng.next().is_multiple_of(2) => ("---".to_owned(), false),
        _ => (format!("  - id: {id}\n    mode: maybe"), false),
    }
}

fn text(lines: &[String]) -> String {
    let mut t = lines.join("\n");
    t.push('\n');
    t
}

/// True for an element that is a bare or map identity item inside the `identities` block.
fn is_identity_item(lines: &[String], at: usize) -> bool {
    let Some(key) = lines.iter().position(|l| l == "identities:") else {
        return false;
    };
    let end = lines
        .iter()
        .skip(key + 1)
        .position(|l| l.chars().next().is_some_and(|c| c != ' ' && c != '#'))
        .map_or(lines.len(), |p| key + 1 + p);
    at > key && at < end && lines.get(at).is_some_and(|l| l.starts_with("  - "))
}

/// Reloads `t` from `current` and checks it against a whole parse (the SHA-256 too when
/// `sha`); the new list (or `current` on an error) and whether the reload was incremental.
fn check(
    tracker: &mut Tracker,
    current: &Blocklist,
    t: &str,
    sha: bool,
) -> Result<(Blocklist, bool), TestCaseError> {
    let got = tracker.reload(current, t.as_bytes(), NAME);
    let want = Blocklist::parse(t, NAME);
    match (got, want) {
        (Ok(got), Ok(want)) => {
            prop_assert_eq!(&got.parsed, &want, "{}", t);
            // Not asked for after every reload: the next one resumes from older states.
            if sha {
                prop_assert_eq!(tracker.sha256(), sha256_hex(t.as_bytes()));
            }
            let (before, after) = got.diff_pair(current);
            let now = unix_now();
            prop_assert_eq!(
                before.changes_to(after, now),
                current.changes_to(&want.blocklist, now)
            );
            prop_assert_eq!(
                differences(before, after),
                differences(current, &want.blocklist)
            );
            let list = &got.parsed.blocklist;
            let ids = |d: &Difference| d.section == "identities";
            for d in differences(&Blocklist::default(), &want.blocklist)
                .into_iter()
                .filter(ids)
            {
                if let (Ok(id), Change::Added(e)) = (Uuid::parse_str(&d.key), d.change) {
                    prop_assert_eq!(list.lookup_at(&id, i64::MIN), Some(e));
                }
            }
            for d in differences(current, &want.blocklist)
                .into_iter()
                .filter(ids)
            {
                if let (Ok(id), Change::Removed(_)) = (Uuid::parse_str(&d.key), d.change) {
                    prop_assert_eq!(list.lookup_at(&id, i64::MIN), None);
                }
            }
            let incremental = got.is_incremental();
            Ok((got.parsed.blocklist, incremental))
        }
        (Err(got), Err(want)) => {
            prop_assert_eq!(got, want);
            Ok((current.clone(), false))
        }
        (got, want) => Err(TestCaseError::fail(format!(
            "incremental {:?}, whole {want:?}",
            got.map(|r| r.parsed)
        ))),
    }
}

#[test]
fn incremental_reloads_equal_whole_parses() {
    // PROPTEST_CASES asks for more.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let small = Cell::new(0usize);
    let small_incremental = Cell::new(0usize);
    // (what, where, with what, reload after it): several edits may go into one reload.
    let edit = (0u8..4, any::<u16>(), any::<u8>(), prop::bool::weighted(0.7));
    let strategy = (
        any::<u64>(),
        150usize..400,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(edit, 1..16),
        any::<u64>(),
    );
    runner
        .run(
            &strategy,
            |(seed, items, before, after, script, compact)| {
                let mut lines = file(seed, items, before, after);
                let mut rng = Rng(seed.rotate_left(7) | 1);
                let mut tracker = Tracker::default();
                let first = text(&lines);
                let mut current = tracker
                    .parse_full(first.as_bytes(), NAME)
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?
                    .0
                    .blocklist;
                // The text in force, and whether it was a warning-free fast-path file.
                let mut in_force = first;
                let n = script.len();
                let mut batch_clean = None;
                let mut batch_benign = true;
                for (k, (op, at, kind, reload)) in script.into_iter().enumerate() {
                    let clean = *batch_clean.get_or_insert_with(|| {
                        text(&lines) == in_force
                            && Blocklist::parse_fast_path_only(&in_force, NAME)
                                .is_some_and(|r| r.is_ok_and(|p| p.warnings.is_empty()))
                    });
                    let at = usize::from(at) % (lines.len() + 1);
                    let benign = match op {
                        // The comment at the top, as a generator rewrites it.
                        3 => {
                            if let Some(l) = lines.first_mut() {
                                *l = format!("# blocklist, version {k}");
                            }
                            true
                        }
                        0 => {
                            let (e, ok) = new_element(kind, &mut rng, &lines);
                            let ok = ok
                                && (is_identity_item(&lines, at) || {
                                    // Inserted right after an identity item.
                                    at > 0 && is_identity_item(&lines, at - 1)
                                });
                            lines.insert(at, e);
                            ok
                        }
                        1 if lines.len() > 1 => {
                            let at = at.min(lines.len() - 1).max(1);
                            let ok = is_identity_item(&lines, at);
                            lines.remove(at);
                            ok
                        }
                        _ if lines.len() > 1 => {
                            let at = at.min(lines.len() - 1).max(1);
                            let was = is_identity_item(&lines, at);
                            let (e, ok) = new_element(kind, &mut rng, &lines);
                            lines[at] = e;
                            ok && was
                        }
                        _ => false,
                    };
                    batch_benign &= benign;
                    if !reload && k + 1 < n {
                        continue;
                    }
                    let t = text(&lines);
                    let (next, incremental) = check(&mut tracker, &current, &t, k % 4 != 3)?;
                    if batch_benign && clean {
                        small.set(small.get() + 1);
                        small_incremental.set(small_incremental.get() + usize::from(incremental));
                    }
                    batch_clean = None;
                    batch_benign = true;
                    if next != current || Blocklist::parse(&t, NAME).is_ok() {
                        in_force = t;
                    }
                    current = next;
                    if compact >> (k % 64) & 1 == 1 && k % 5 == 4 {
                        let compacted = current.compacted_now();
                        prop_assert_eq!(&compacted, &current);
                        current = compacted;
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    let (n, inc) = (small.get(), small_incremental.get());
    eprintln!("{inc} of {n} small edits from a clean list read incrementally");
    assert!(n > 100, "only {n} small edits from a clean list");
    assert!(
        inc * 10 >= n * 8,
        "{inc} of {n} small edits read incrementally"
    );
}
