//! Micro-benchmarks of the gateway's own work, without the network: blocklist parsing (the
//! line-oriented fast path against serde-saphyr), lookups (ids, client addresses in networks),
//! reload diffs, body inspection.
//!
//! `cargo run --release --example micro` (bench/run.sh runs it). Plain `std::time`, no
//! benchmark framework: each case reports the median of a few repetitions, and the peak RSS
//! it added (VmHWM, reset before each case; Linux only). Prints `key=value` lines after the
//! table for bench/run.sh.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use kratos_gate::blocklist::Blocklist;
use kratos_gate::inspection;
use kratos_gate::util::{parse_uuid, unix_now};
use uuid::Uuid;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(
            (u128::from(self.next()) << 64 | u128::from(self.next())).to_be_bytes(),
        )
        .into_uuid()
    }
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `f` `reps` times; returns the median time and the peak RSS above the start, in MB.
fn measure<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, f64) {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kb("VmRSS:");
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        black_box(f());
        times.push(t.elapsed());
    }
    times.sort();
    let peak = status_kb("VmHWM:").saturating_sub(before);
    (times[times.len() / 2], peak as f64 / 1024.0)
}

fn ids_file(n: usize, seed: u64) -> (String, Vec<Uuid>) {
    let mut rng = Rng(seed);
    let mut text = String::with_capacity(n * 41 + 16);
    text.push_str("identities:\n");
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let id = rng.uuid();
        let _ = writeln!(text, "  - {id}");
        ids.push(id);
    }
    (text, ids)
}

fn emails_file(n: usize) -> String {
    let mut text = String::from("emails:\n");
    for i in 0..n {
        let _ = writeln!(text, "  - user{i}@blocked-{}.example", i % 97);
    }
    text
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 100_000 } else { 1_000_000 };
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut kv: Vec<(String, String)> = Vec::new();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);

    let (text, ids) = ids_file(n, 1);
    let mb = text.len() as f64 / 1e6;
    let (t, peak) = measure(3, || {
        Blocklist::parse(&text, "ids.yaml").map(|p| p.blocklist.len())
    });
    rows.push((
        format!("parse {n} ids ({mb:.0} MB), fast path"),
        ms(t),
        format!("{peak:.0} MB"),
    ));
    kv.push((
        "parse_fast_ms".into(),
        format!("{:.0}", t.as_secs_f64() * 1000.0),
    ));
    kv.push(("parse_fast_peak_mb".into(), format!("{peak:.0}")));
    let (t, peak) = measure(1, || {
        Blocklist::parse_with_serde_saphyr(&text, "ids.yaml").map(|p| p.blocklist.len())
    });
    rows.push((
        format!("parse {n} ids ({mb:.0} MB), serde-saphyr"),
        ms(t),
        format!("{peak:.0} MB"),
    ));
    kv.push((
        "parse_saphyr_ms".into(),
        format!("{:.0}", t.as_secs_f64() * 1000.0),
    ));
    kv.push(("parse_saphyr_peak_mb".into(), format!("{peak:.0}")));

    let emails = emails_file(n / 10);
    let (t, _) = measure(3, || {
        Blocklist::parse(&emails, "emails.yaml").map(|p| p.blocklist.len())
    });
    rows.push((
        format!("parse {} e-mails, fast path", n / 10),
        ms(t),
        String::new(),
    ));
    let (t, _) = measure(1, || {
        Blocklist::parse_with_serde_saphyr(&emails, "emails.yaml").map(|p| p.blocklist.len())
    });
    rows.push((
        format!("parse {} e-mails, serde-saphyr", n / 10),
        ms(t),
        String::new(),
    ));

    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kb("VmRSS:");
    let list = match Blocklist::parse(&text, "ids.yaml") {
        Ok(p) => p.blocklist,
        Err(e) => panic!("{e:?}"),
    };
    let held = status_kb("VmRSS:").saturating_sub(before) as f64 / 1024.0;
    rows.push((
        format!("memory held by a {n}-id list"),
        String::new(),
        format!("{held:.0} MB"),
    ));
    kv.push(("list_mb".into(), format!("{held:.0}")));

    let now = unix_now();
    let mut rng = Rng(99);
    let absent: Vec<Uuid> = (0..1000).map(|_| rng.uuid()).collect();
    let lookups = 2_000_000usize;
    let (t, _) = measure(3, || {
        let mut hits = 0usize;
        for i in 0..lookups {
            let id = if i % 2 == 0 {
                &ids[(i * 7919) % ids.len()]
            } else {
                &absent[i % absent.len()]
            };
            hits += usize::from(list.lookup_at(id, now).is_some());
        }
        hits
    });
    let per = t.as_secs_f64() * 1e9 / lookups as f64;
    rows.push((
        format!("lookup in {n} ids (half listed)"),
        format!("{per:.0} ns"),
        String::new(),
    ));
    kv.push(("lookup_ns".into(), format!("{per:.0}")));
    let (t, _) = measure(3, || {
        let mut hits = 0usize;
        for i in 0..lookups {
            hits +=
                usize::from(parse_uuid("5ff66179-c240-4703-b0d8-494592cefff5").is_some() && i > 0);
        }
        hits
    });
    rows.push((
        "parse a UUID header".into(),
        format!("{:.0} ns", t.as_secs_f64() * 1e9 / lookups as f64),
        String::new(),
    ));

    let (plus_one, _) = {
        let mut t = text.clone();
        let _ = writeln!(t, "  - {}", Rng(5).uuid());
        (t, ())
    };
    let newer = match Blocklist::parse(&plus_one, "ids.yaml") {
        Ok(p) => p.blocklist,
        Err(e) => panic!("{e:?}"),
    };
    let (t, _) = measure(3, || list.changes_to(&newer, now).added.len());
    rows.push((
        format!("diff {n} → {} ids (reload log, revoke-on-add)", n + 1),
        ms(t),
        String::new(),
    ));

    // 100,000 networks (half IPv4 /24s, half IPv6 /48s): parse, then client-address lookups.
    let nets = 100_000u32;
    let mut net_text = String::from("networks:\n");
    for i in 0..nets / 2 {
        let v4 = std::net::Ipv4Addr::from((0x0001_0000 + i * 3) << 8);
        let _ = writeln!(net_text, "  - {v4}/24");
        let _ = writeln!(net_text, "  - 2001:{:x}:{:x}::/48", i >> 16, i & 0xffff);
    }
    let (t, peak) = measure(3, || {
        Blocklist::parse(&net_text, "networks.yaml").map(|p| p.blocklist.len())
    });
    rows.push((
        format!("parse {nets} networks"),
        ms(t),
        format!("{peak:.0} MB"),
    ));
    let net_list = match Blocklist::parse(&net_text, "networks.yaml") {
        Ok(p) => p.blocklist,
        Err(e) => panic!("{e:?}"),
    };
    let clients: Vec<std::net::IpAddr> = (0..1000u32)
        .map(|i| {
            if i % 2 == 0 {
                // Every third /24 is listed: a third of these hit.
                std::net::IpAddr::from(std::net::Ipv4Addr::from(((0x0001_0000 + i * 7) << 8) | 9))
            } else {
                std::net::IpAddr::from(std::net::Ipv6Addr::from(
                    0x2001u128 << 112 | u128::from(i) << 80 | 7,
                ))
            }
        })
        .collect();
    let (t, _) = measure(3, || {
        let mut hits = 0usize;
        for i in 0..lookups {
            let ip = clients[i % clients.len()];
            hits += usize::from(net_list.lookup_network(ip, now).is_some());
        }
        hits
    });
    let per = t.as_secs_f64() * 1e9 / lookups as f64;
    rows.push((
        format!("client address lookup in {nets} networks (IPv4 and IPv6)"),
        format!("{per:.0} ns"),
        String::new(),
    ));
    kv.push(("network_lookup_ns".into(), format!("{per:.0}")));

    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kratos/synthesized/"
    );
    for (name, file) in [
        ("inspect native login body", "native-login-200.json"),
        ("inspect whoami body", "whoami-200.json"),
    ] {
        let body = std::fs::read(format!("{fixtures}{file}")).unwrap_or_default();
        let compact = serde_json::to_vec(
            &serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
        )
        .unwrap_or_default();
        let reps = 20_000;
        let (t, _) = measure(3, || {
            for _ in 0..reps {
                black_box(inspection::inspect_json(black_box(&compact)).is_ok());
            }
        });
        rows.push((
            format!("{name} ({} bytes)", compact.len()),
            format!("{:.2} µs", t.as_secs_f64() * 1e6 / reps as f64),
            String::new(),
        ));
    }

    println!("| micro-benchmark | time | peak RSS added |");
    println!("|---|---:|---:|");
    for (a, b, c) in &rows {
        println!("| {a} | {b} | {c} |");
    }
    for (k, v) in &kv {
        println!("micro_{k}={v}");
    }
}
