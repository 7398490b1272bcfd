use super::*;
use crate::blocklist::diff::differences;
use crate::blocklist::scan::agreement::Rng;
use crate::util::{checksum, sha256_hex, unix_now};

const NAME: &str = "blocklist.yaml";

/// Reloads `text` through `tracker` from `current`, checks the result against a whole-file
/// parse (list, positions, warnings, errors, SHA-256, the changes and every difference), and
/// returns the new list (or `current` on an error) and whether the reload was incremental.
fn reload(tracker: &mut Tracker, current: &Blocklist, text: &str) -> (Blocklist, bool) {
    let got = tracker.reload(current, text.as_bytes(), checksum(text.as_bytes()), NAME);
    let want = Blocklist::parse(text, NAME);
    match (got, want) {
        (Ok(got), Ok(want)) => {
            assert_eq!(got.parsed, want, "{text}");
            assert_eq!(tracker.sha256(text.as_bytes()), sha256_hex(text.as_bytes()));
            let (before, after) = got.diff_pair(current);
            let now = unix_now();
            assert_eq!(
                before.changes_to(after, now),
                current.changes_to(&want.blocklist, now)
            );
            assert_eq!(
                differences(before, after),
                differences(current, &want.blocklist)
            );
            let incremental = got.is_incremental();
            (got.parsed.blocklist, incremental)
        }
        (Err(got), Err(want)) => {
            assert_eq!(got, want);
            (current.clone(), false)
        }
        (got, want) => panic!("incremental {:?}, whole {:?}", got.map(|r| r.parsed), want),
    }
}

fn uuid(rng: &mut Rng) -> String {
    uuid::Uuid::from_u64_pair(rng.next(), rng.next()).to_string()
}

fn big_file(rng: &mut Rng, n: usize) -> Vec<String> {
    let mut lines = vec!["# ops list".to_owned(), "identities:".to_owned()];
    for _ in 0..n {
        lines.push(format!("  - {}", uuid(rng)));
    }
    lines.push("emails:".to_owned());
    lines.push("  - email: a@evil.example".to_owned());
    lines.push("    reason: spam".to_owned());
    lines.push("networks:".to_owned());
    lines.push("  - 192.0.2.0/24".to_owned());
    lines
}

fn text(lines: &[String]) -> String {
    let mut t = lines.join("\n");
    t.push('\n');
    t
}

fn start(text: &str) -> (Tracker, Blocklist) {
    let mut tracker = Tracker::default();
    let (parsed, sha256) = tracker.parse_full(text.as_bytes(), NAME).expect("valid");
    assert_eq!(sha256, sha256_hex(text.as_bytes()));
    (tracker, parsed.blocklist)
}

#[test]
fn small_edits_read_only_the_region_and_equal_a_whole_parse() {
    let mut rng = Rng(11);
    let mut lines = big_file(&mut rng, 3000);
    let (mut tracker, mut list) = start(&text(&lines));
    let mut incremental = 0;
    for step in 0..60 {
        let at = 2 + (rng.next() as usize % 3000);
        match step % 5 {
            0 => lines.insert(at, format!("  - {}", uuid(&mut rng))),
            1 => {
                lines.remove(at);
            }
            2 => lines[at] = format!("  - {}", uuid(&mut rng)),
            3 => {
                let id = uuid(&mut rng);
                lines.insert(at, format!("  - id: {id}"));
                lines.insert(at + 1, "    reason: chargeback".to_owned());
                lines.insert(at + 2, "    until: 2999-01-01T00:00:00Z".to_owned());
                lines.insert(at + 3, "    mode: report".to_owned());
            }
            _ => {
                lines.insert(at, "  # a comment".to_owned());
                lines.insert(at, String::new());
            }
        }
        let (next, inc) = reload(&mut tracker, &list, &text(&lines));
        incremental += usize::from(inc);
        list = next;
        if step % 17 == 16 {
            list = list.compacted_now();
            assert!(!list.identities.has_overlay());
        }
    }
    assert!(incremental >= 55, "{incremental} of 60 incremental");
    assert!(list.identities.has_overlay());
    // The overlay and the compacted table answer alike.
    let compact = list.compacted_now();
    assert_eq!(compact, list);
    let want = Blocklist::parse(&text(&lines), NAME)
        .expect("valid")
        .blocklist;
    for (id, e) in want.identities.iter() {
        assert_eq!(list.lookup_at(&id, 0), Some(e));
    }
    assert_eq!(list.lookup_at(&uuid::Uuid::nil(), 0), None);
}

#[test]
fn appending_and_removing_the_last_id_leaves_a_tiny_overlay() {
    let mut rng = Rng(5);
    let lines = big_file(&mut rng, 2000);
    let mut ids_only: Vec<String> = lines[..2002].to_vec();
    let (mut tracker, mut list) = start(&text(&ids_only));
    let extra = format!("  - {}", uuid(&mut rng));
    for k in 0..10 {
        if k % 2 == 0 {
            ids_only.push(extra.clone());
        } else {
            ids_only.pop();
        }
        let (next, inc) = reload(&mut tracker, &list, &text(&ids_only));
        assert!(inc, "reload {k}");
        list = next;
        assert!(list.identities.has_overlay());
        assert!(list.identities.overlay_ids() <= 1, "reload {k}");
    }
}

type Edit<'a> = dyn Fn(&mut Vec<String>) + 'a;

#[test]
fn ambiguous_or_invalid_edits_are_parsed_whole() {
    let mut rng = Rng(3);
    let base = big_file(&mut rng, 500);
    let id_at = |i: usize| base[i].trim_start_matches("  - ").to_owned();
    let edits: Vec<Box<Edit<'_>>> = vec![
        // A duplicate of an id elsewhere.
        Box::new(|l| l.insert(300, format!("  - {}", id_at(10)))),
        // An invalid id: the whole parse's error.
        Box::new(|l| l[200] = "  - not-a-uuid".to_owned()),
        // A section key inside the block.
        Box::new(|l| l.insert(250, "emails:".to_owned())),
        // Another indent.
        Box::new(|l| l[250] = format!("    - {}", id_at(250))),
        // Flow style, an anchor, a tab.
        Box::new(|l| l[250] = format!("  - [{}]", id_at(250))),
        Box::new(|l| l[250] = format!("  - &a {}", id_at(250))),
        Box::new(|l| l[250] = format!("  -\t{}", id_at(250))),
        // The section key itself, and the sections after the block.
        Box::new(|l| l[1] = "identities: # all of them".to_owned()),
        Box::new(|l| l.push("  - b@evil.example".to_owned())),
        // A large change.
        Box::new(|l| l.truncate(20)),
        // A key of a map item without its item line.
        Box::new(|l| l.insert(250, "    reason: x".to_owned())),
    ];
    for (i, edit) in edits.iter().enumerate() {
        let (mut tracker, list) = start(&text(&base));
        let mut lines = base.clone();
        edit(&mut lines);
        let (after, inc) = reload(&mut tracker, &list, &text(&lines));
        assert!(!inc || i == 8, "edit {i} was read incrementally");
        // And back: from an error the last file is still the one remembered.
        reload(&mut tracker, &after, &text(&base));
    }
}

#[test]
fn a_reload_after_a_list_with_warnings_is_whole() {
    let mut rng = Rng(9);
    let mut lines = big_file(&mut rng, 200);
    lines.insert(50, lines[40].clone());
    let (mut tracker, list) = start(&text(&lines));
    assert!(tracker.last.is_none());
    lines[100] = format!("  - {}", uuid(&mut rng));
    let (_, inc) = reload(&mut tracker, &list, &text(&lines));
    assert!(!inc);
}

#[test]
fn about_one_item_in_chunk_items_starts_a_chunk() {
    let mut rng = Rng(3);
    let n = 64_000;
    let share = |line: &dyn Fn(&mut Rng) -> String, rng: &mut Rng| {
        (0..n)
            .filter(|_| starts_chunk(line(rng).as_bytes()).0)
            .count()
    };
    // Plain ids, ids with the same comment, the mapping form, short items: each about one
    // in CHUNK_ITEMS (2,000 of 64,000).
    let forms: [&dyn Fn(&mut Rng) -> String; 4] = [
        &|r| format!("  - {}", uuid(r)),
        &|r| format!("  - {}  # fraud ring, ticket OPS-1234", uuid(r)),
        &|r| format!("  - id: {}", uuid(r)),
        &|r| format!("- {}", r.next() % 100_000),
    ];
    for (k, form) in forms.iter().enumerate() {
        let cuts = share(form, &mut rng);
        assert!((1_500..2_500).contains(&cuts), "form {k}: {cuts} of {n}");
    }
}

#[test]
fn chunks_resynchronise_after_an_insertion() {
    let mut rng = Rng(1);
    let lines = big_file(&mut rng, 5000);
    let a = chunks(text(&lines).as_bytes());
    let mut edited = lines.clone();
    edited.insert(3, format!("  - {}", uuid(&mut rng)));
    let b = chunks(text(&edited).as_bytes());
    let same_end = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    assert!(a.len() > 50, "{}", a.len());
    assert!(same_end + 3 >= a.len(), "{same_end} of {}", a.len());
    assert_eq!(
        a.iter().map(|c| c.len as usize).sum::<usize>(),
        text(&lines).len()
    );
    assert_eq!(chunks(b"").len(), 1);
}

#[test]
fn a_changed_header_comment_and_a_line_at_the_end_are_two_regions() {
    let mut rng = Rng(21);
    let mut lines = big_file(&mut rng, 3000);
    lines.truncate(3002);
    let (mut tracker, mut list) = start(&text(&lines));
    for k in 0..6 {
        lines[0] = format!("# {} ids", 3000 + k);
        if k % 2 == 0 {
            lines.push(format!("  - {}", uuid(&mut rng)));
        } else {
            lines.pop();
        }
        // And a comment more in the middle.
        lines.insert(1500, "  # checked".to_owned());
        let (next, inc) = reload(&mut tracker, &list, &text(&lines));
        assert!(inc, "reload {k}");
        list = next;
    }
    // An e-mail section before the identities: the comment above it may change, its entries
    // (and the comments among them, read with them) are read whole.
    let mut lines = big_file(&mut rng, 1000);
    let emails: Vec<String> = lines.drain(1002..1005).collect();
    for (k, e) in emails.into_iter().enumerate() {
        lines.insert(1 + k, e);
    }
    let (mut tracker, list) = start(&text(&lines));
    let mut edited = lines.clone();
    edited[0] = "# ops list, reviewed".to_owned();
    edited.insert(600, format!("  - {}", uuid(&mut rng)));
    let (list2, inc) = reload(&mut tracker, &list, &text(&edited));
    assert!(inc);
    edited[2] = "  - c@evil.example".to_owned();
    let (list3, inc) = reload(&mut tracker, &list2, &text(&edited));
    assert!(!inc);
    edited.insert(3, "  # spam".to_owned());
    let (_, inc) = reload(&mut tracker, &list3, &text(&edited));
    assert!(!inc);
}

#[test]
fn regions_are_found_between_common_chunks() {
    let c = |h: u128| Chunk {
        hash: h,
        len: 10,
        lines: 1,
    };
    let old: Vec<Chunk> = (0..10).map(c).collect();
    let mut new = old.clone();
    new[0] = c(100);
    new.insert(5, c(101));
    new.remove(9);
    new.push(c(102));
    let r = changed_regions(&old, &new).expect("aligned");
    let spans: Vec<_> = r.iter().map(|r| (r.old, r.new, r.to_end)).collect();
    assert_eq!(
        spans,
        vec![
            ((0, 1), (0, 1), false),
            ((5, 5), (5, 6), false),
            ((8, 9), (9, 9), false),
            ((10, 10), (10, 11), true)
        ]
    );
    assert_eq!(changed_regions(&old, &old), Some(vec![]));
    // Nothing in common within the window: no alignment.
    let other: Vec<Chunk> = (1000..1400).map(c).collect();
    let long: Vec<Chunk> = (0..400).map(c).collect();
    assert_eq!(changed_regions(&long, &other), None);
}
