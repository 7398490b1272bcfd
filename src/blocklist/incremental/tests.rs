use super::*;
use crate::blocklist::diff::differences;
use crate::blocklist::scan::agreement::Rng;
use crate::util::{sha256_hex, unix_now};

const NAME: &str = "blocklist.yaml";

/// Reloads `text` through `tracker` from `current`, checks the result against a whole-file
/// parse (list, positions, warnings, errors, SHA-256, the changes and every difference), and
/// returns the new list (or `current` on an error) and whether the reload was incremental.
fn reload(tracker: &mut Tracker, current: &Blocklist, text: &str) -> (Blocklist, bool) {
    // Cut as every line would be, whatever was found equal to the last file by hash alone.
    let scanned = tracker.scan(Input::Bytes(text.as_bytes())).expect("read");
    assert_eq!(scanned.chunks, chunks(text.as_bytes()));
    assert_eq!(scanned.sha256, sha256_hex(text.as_bytes()));
    let got = tracker.reload(current, text.as_bytes(), NAME);
    let want = Blocklist::parse(text, NAME);
    match (got, want) {
        (Ok(got), Ok(want)) => {
            assert_eq!(got.parsed, want, "{text}");
            assert_eq!(tracker.sha256(), sha256_hex(text.as_bytes()));
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

/// `scanned` is what a pass over `bytes` gives: every line's cut, the checksum, the SHA-256.
fn describes(scanned: &Scanned, bytes: &[u8], what: &str) {
    assert_eq!(scanned.chunks, chunks(bytes), "{what}");
    assert_eq!(scanned.sum, content_checksum(bytes), "{what}");
    assert_eq!(scanned.sha256, sha256_hex(bytes), "{what}");
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

/// A whole file's chunks, as one pass cuts them.
fn chunks(bytes: &[u8]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let cut = cut_chunks(bytes, true, |c, lines| {
        out.push(Chunk {
            hash: crate::util::content_hash(c),
            len: c.len() as u32,
            lines,
        });
        Ok::<bool, ()>(false)
    })
    .expect("cut");
    assert_eq!((cut.used, cut.finished), (bytes.len(), true));
    out
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

/// `text` written to a new file in `dir`, opened.
fn file_of(dir: &std::path::Path, name: &str, text: &str) -> (std::fs::File, u64) {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    let f = std::fs::File::open(&path).expect("open");
    (f, text.len() as u64)
}

/// A scan of `text` read from a file through a `buffer`-byte buffer, and one over the bytes.
fn scan_both(tracker: &mut Tracker, text: &str, buffer: usize) -> (Scanned, Scanned) {
    let dir = tempfile::tempdir().expect("dir");
    let (f, len) = file_of(dir.path(), "list.yaml", text);
    tracker.buffer = buffer;
    let from_file = tracker.scan(Input::File(&f, len)).expect("read");
    let from_bytes = tracker.scan(Input::Bytes(text.as_bytes())).expect("read");
    (from_file, from_bytes)
}

#[test]
fn a_file_read_through_a_small_buffer_is_cut_and_summed_as_its_bytes() {
    let mut rng = Rng(31);
    let mut lines = big_file(&mut rng, 800);
    // A comment line longer than the buffer: a chunk larger than it.
    lines.insert(300, format!("  # {}", "x".repeat(5000)));
    let t = text(&lines);
    let mut no_newline = t.clone();
    no_newline.pop();
    for text in [
        &t,
        &no_newline,
        &String::new(),
        &"identities: []".to_owned(),
    ] {
        for buffer in [64, 100, 1000, 4096, 1 << 20] {
            let mut tracker = Tracker::default();
            let (f, b) = scan_both(&mut tracker, text, buffer);
            assert_eq!(f.sum, content_checksum(text.as_bytes()), "{buffer}");
            assert_eq!((f.sum, f.len), (b.sum, b.len), "{buffer}");
            assert_eq!(f.chunks, b.chunks, "{buffer}");
            assert_eq!(f.chunks, chunks(text.as_bytes()), "{buffer}");
            assert_eq!(f.sha256, sha256_hex(text.as_bytes()), "{buffer}");
            assert_eq!(b.sha256, f.sha256);
            // The buffer grown for the long line is not kept.
            assert!(tracker.buf.len() <= READ_BUFFER.max(buffer));
        }
    }
}

#[test]
fn edits_at_buffer_boundaries_read_from_a_file_equal_a_whole_parse() {
    let mut rng = Rng(41);
    let lines = big_file(&mut rng, 3000);
    let first = text(&lines);
    let dir = tempfile::tempdir().expect("dir");
    let buffer = 4096;
    let line_len = lines[5].len() + 1;
    for k in 1..6 {
        let (mut tracker, list) = start(&first);
        tracker.buffer = buffer;
        // The line that spans the k-th multiple of the buffer, changed.
        let at = lines[..2].iter().map(|l| l.len() + 1).sum::<usize>();
        let line = 2 + (k * buffer - at) / line_len;
        let mut edited = lines.clone();
        edited[line] = format!("  - {}", uuid(&mut rng));
        let t = text(&edited);
        let (f, len) = file_of(dir.path(), &format!("e{k}.yaml"), &t);
        let input = Input::File(&f, len);
        let scanned = tracker.scan(input).expect("read");
        let got = tracker
            .reload_scanned(&list, scanned, input, NAME, true)
            .map_err(|e| format!("{e:?}"))
            .expect("valid");
        assert!(got.is_incremental(), "{k}");
        assert_eq!(
            got.parsed,
            Blocklist::parse(&t, NAME).expect("valid"),
            "{k}"
        );
        assert_eq!(tracker.sha256(), sha256_hex(t.as_bytes()), "{k}");
    }
}

#[test]
fn a_file_that_changes_length_while_read_is_a_change() {
    let dir = tempfile::tempdir().expect("dir");
    let t = text(&big_file(&mut Rng(2), 200));
    let (f, len) = file_of(dir.path(), "list.yaml", &t);
    let mut tracker = Tracker {
        buffer: 1000,
        ..Tracker::default()
    };
    // Longer, then shorter, than when it was opened.
    for stated in [len - 1, len + 1, len + 5000] {
        let got = tracker.scan(Input::File(&f, stated));
        assert!(
            matches!(got, Err(ReadError::Changed)),
            "{stated}: {:?}",
            got.err()
        );
    }
    // Rewritten in place between the pass and the read of a region: the region's bytes no
    // longer have the chunks' hashes.
    let lines = big_file(&mut Rng(2), 200);
    let (mut tracker, list) = start(&t);
    let mut edited = lines.clone();
    edited[100] = format!("  - {}", uuid(&mut Rng(9)));
    let e = text(&edited);
    let path = dir.path().join("edited.yaml");
    std::fs::write(&path, &e).expect("write");
    let f = std::fs::File::open(&path).expect("open");
    let input = Input::File(&f, e.len() as u64);
    let scanned = tracker.scan(input).expect("read");
    let mut again = edited.clone();
    again[100] = format!("  - {}", uuid(&mut Rng(10)));
    std::fs::write(&path, text(&again)).expect("write");
    let got = tracker.reload_scanned(&list, scanned, input, NAME, true);
    assert!(
        matches!(got, Err(Failure::Read(ReadError::Changed))),
        "{:?}",
        got.err()
    );
}

#[test]
fn regions_are_read_back_from_the_open_file_after_a_rename_over_its_path() {
    let dir = tempfile::tempdir().expect("dir");
    let mut rng = Rng(51);
    let lines = big_file(&mut rng, 2000);
    let (mut tracker, list) = start(&text(&lines));
    let mut edited = lines.clone();
    edited[1000] = format!("  - {}", uuid(&mut rng));
    let t = text(&edited);
    let (f, len) = file_of(dir.path(), "list.yaml", &t);
    let input = Input::File(&f, len);
    let scanned = tracker.scan(input).expect("read");
    // Another version renamed over the path before the region is read back.
    let mut other = edited.clone();
    other[1000] = format!("  - {}", uuid(&mut rng));
    std::fs::write(dir.path().join("next.yaml"), text(&other)).expect("write");
    std::fs::rename(dir.path().join("next.yaml"), dir.path().join("list.yaml")).expect("mv");
    let got = tracker
        .reload_scanned(&list, scanned, input, NAME, true)
        .map_err(|e| format!("{e:?}"))
        .expect("valid");
    assert!(got.is_incremental());
    assert_eq!(got.parsed, Blocklist::parse(&t, NAME).expect("valid"));
    assert_eq!(tracker.sha256(), sha256_hex(t.as_bytes()));
}

#[test]
fn an_unchanged_start_is_not_hashed_again() {
    let mut rng = Rng(61);
    let mut lines = big_file(&mut rng, 30_000);
    let (mut tracker, list) = start(&text(&lines));
    let marks = tracker.last.as_ref().expect("index").marks.len();
    assert!(marks >= 3, "{marks}");
    let n = lines.len();
    lines.insert(n - 6, format!("  - {}", uuid(&mut rng)));
    let t = text(&lines);
    let (_, inc) = reload(&mut tracker, &list, &t);
    assert!(inc);
    // The states before the change are the last file's; no new one after it (less than
    // MARK_EVERY bytes from the last state to the end).
    let kept = &tracker.last.as_ref().expect("index").marks;
    assert_eq!(kept.len(), marks);
}

#[test]
fn chunks_checked_by_hash_alone_are_those_of_a_cut_of_every_line() {
    let mut rng = Rng(71);
    let dir = tempfile::tempdir().expect("dir");
    let pieces = [
        "identities:",
        "emails:",
        "  # note",
        "",
        "\r",
        "- 12",
        "  - id: x",
        "    reason: r",
        "key: [a, b]",
    ];
    for round in 0..60 {
        let mut lines: Vec<String> = (0..400 + rng.next() as usize % 400)
            .map(|_| match rng.next() % 12 {
                k @ 0..=8 => pieces[k as usize].to_owned(),
                _ => format!("  - {}", uuid(&mut rng)),
            })
            .collect();
        let old = text(&lines);
        for _ in 0..1 + rng.next() % 4 {
            let at = rng.next() as usize % lines.len();
            match rng.next() % 4 {
                0 => lines.insert(at, format!("  - {}", uuid(&mut rng))),
                1 => {
                    lines.remove(at);
                }
                2 => lines[at] = pieces[rng.next() as usize % pieces.len()].to_owned(),
                _ => lines.push(format!("  - {}", uuid(&mut rng))),
            }
        }
        let mut new = text(&lines);
        if round % 3 == 0 {
            new.pop();
        }
        for buffer in [64, 300, 4096] {
            let mut tracker = Tracker::default();
            let first = tracker.scan(Input::Bytes(old.as_bytes())).expect("read");
            tracker.last = Some(FileIndex {
                chunks: first.chunks,
                marks: first.marks,
                block: Block {
                    key_line: 1,
                    end: None,
                    item_indent: 2,
                },
                keys: Vec::new(),
                checksum: 0,
            });
            tracker.sha256 = first.sha256;
            tracker.buffer = buffer;
            let (f, len) = file_of(dir.path(), "l.yaml", &new);
            for input in [Input::File(&f, len), Input::Bytes(new.as_bytes())] {
                let scanned = tracker.scan(input).expect("read");
                describes(&scanned, new.as_bytes(), &format!("{round} {buffer}"));
            }
            // The same file again.
            let same = tracker.scan(Input::Bytes(old.as_bytes())).expect("read");
            describes(&same, old.as_bytes(), "the same file");
        }
    }
}

#[test]
fn the_checksum_differs_when_any_chunk_does_and_not_otherwise() {
    let mut rng = Rng(83);
    let lines = big_file(&mut rng, 2000);
    let t = text(&lines);
    let bytes = t.as_bytes();
    let sum = content_checksum(bytes);
    // Equal content, however it was put together.
    assert_eq!(content_checksum(t.clone().into_bytes().as_slice()), sum);
    assert_eq!(
        Blocklist::parse(&t, NAME)
            .expect("valid")
            .blocklist
            .checksum(),
        sum
    );
    let cut = chunks(bytes);
    assert!(cut.len() > 40, "{}", cut.len());
    // One byte changed in every chunk, at its start, middle and end; the chunks may or may
    // not be cut elsewhere.
    let mut at = 0;
    for c in &cut {
        for k in [0, c.len as usize / 2, c.len as usize - 1] {
            let mut changed = bytes.to_vec();
            changed[at + k] ^= 0x01;
            assert_ne!(content_checksum(&changed), sum, "byte {}", at + k);
        }
        at += c.len as usize;
    }
    // Two chunks swapped, one left out, one twice: every chunk hash as before, in another
    // sequence.
    let parts: Vec<&[u8]> = {
        let mut at = 0;
        cut.iter()
            .map(|c| {
                at += c.len as usize;
                &bytes[at - c.len as usize..at]
            })
            .collect()
    };
    let joined = |p: &[&[u8]]| p.concat();
    assert_eq!(content_checksum(&joined(&parts)), sum);
    let mut swapped = parts.clone();
    swapped.swap(3, 4);
    assert_ne!(content_checksum(&joined(&swapped)), sum);
    let mut left_out = parts.clone();
    left_out.remove(5);
    assert_ne!(content_checksum(&joined(&left_out)), sum);
    let mut twice = parts.clone();
    twice.insert(5, parts[5]);
    assert_ne!(content_checksum(&joined(&twice)), sum);
    // Every length of the same bytes.
    for len in (0..bytes.len()).step_by(97) {
        assert_ne!(content_checksum(&bytes[..len]), sum, "length {len}");
    }
    assert_ne!(content_checksum(b""), content_checksum(b"\n"));
}

#[test]
fn chunks_after_a_change_larger_than_the_window_are_those_of_a_cut_of_every_line() {
    let mut rng = Rng(89);
    let dir = tempfile::tempdir().expect("dir");
    let lines = big_file(&mut rng, 30_000);
    let old = text(&lines);
    // More new chunks, and more removed ones, than the window looked in near a change.
    let items = CHUNK_ITEMS as usize * (RESYNC_WINDOW + 40);
    let fresh: Vec<String> = (0..items)
        .map(|_| format!("  - {}", uuid(&mut rng)))
        .collect();
    let mut inserted = lines.clone();
    inserted.splice(5_000..5_000, fresh.iter().cloned());
    let mut removed = lines.clone();
    removed.drain(5_000..5_000 + items);
    let mut replaced = lines.clone();
    replaced.splice(5_000..5_000 + items, fresh.iter().cloned());
    // Two edits far apart: the window follows the chunks found in both.
    let mut two = lines.clone();
    two.insert(20_000, format!("  - {}", uuid(&mut rng)));
    two.remove(3_000);
    for new in [text(&inserted), text(&removed), text(&replaced), text(&two)] {
        let mut tracker = Tracker::default();
        let first = tracker.scan(Input::Bytes(old.as_bytes())).expect("read");
        tracker.keep_last(Some(FileIndex {
            chunks: first.chunks,
            marks: first.marks,
            block: Block {
                key_line: 2,
                end: None,
                item_indent: 2,
            },
            keys: Vec::new(),
            checksum: 0,
        }));
        tracker.sha256 = first.sha256;
        tracker.buffer = 4096;
        let (f, len) = file_of(dir.path(), "l.yaml", &new);
        for input in [Input::File(&f, len), Input::Bytes(new.as_bytes())] {
            let scanned = tracker.scan(input).expect("read");
            describes(&scanned, new.as_bytes(), "after the rename");
        }
    }
}

/// Content handed over whole (a file read at start-up) parses as borrowed content does, and
/// the tracker it leaves reads the next edit incrementally, as after any whole parse.
#[test]
fn a_list_handed_over_parses_as_one_lent_and_tracks_the_next_edit() {
    let mut rng = Rng(23);
    let mut lines = big_file(&mut rng, 2000);
    let first = text(&lines);
    let (_, lent) = start(&first);
    let mut tracker = Tracker::default();
    let (parsed, sha256) = tracker
        .parse_full_owned(first.clone().into_bytes(), NAME)
        .expect("valid");
    assert_eq!(sha256, sha256_hex(first.as_bytes()));
    assert_eq!(parsed, Blocklist::parse(&first, NAME).expect("valid"));
    assert_eq!(parsed.blocklist.checksum, lent.checksum);
    lines.insert(1000, format!("  - {}", uuid(&mut rng)));
    let (_, incremental) = reload(&mut tracker, &parsed.blocklist, &text(&lines));
    assert!(
        incremental,
        "the edit after a handed-over list is read alone"
    );
}
