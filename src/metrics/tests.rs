use super::*;

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn counters_exist_at_zero_before_any_event() {
    let m = Metrics::new();
    let text = m.encode();
    for kind in BLOCKED_KINDS {
        for mode in MODES {
            assert!(
                has(
                    &text,
                    &format!("kratos_gate_blocked_total{{kind=\"{kind}\",mode=\"{mode}\"}} 0")
                ),
                "{kind} {mode}: {text}"
            );
        }
    }
    for reason in FAIL_CLOSED_REASONS {
        assert!(has(
            &text,
            &format!("kratos_gate_fail_closed_total{{reason=\"{reason}\"}} 0")
        ));
    }
    for result in ["success", "unchanged", "failure"] {
        assert!(has(
            &text,
            &format!("kratos_gate_blocklist_reloads_total{{result=\"{result}\"}} 0")
        ));
    }
    assert!(has(
        &text,
        "kratos_gate_attribution_lookups_total{source=\"whoami\",result=\"error\"} 0"
    ));
    assert!(has(
        &text,
        "kratos_gate_revocations_total{result=\"dropped\"} 0"
    ));
    assert!(has(
        &text,
        "kratos_gate_upstream_errors_total{reason=\"unreachable\"} 0"
    ));
}

#[test]
fn build_info_names_version_commit_and_compiler() {
    let text = Metrics::new().encode();
    let line = text
        .lines()
        .find(|l| l.starts_with("kratos_gate_build_info{"))
        .expect("build_info");
    assert!(line.contains(&format!("version=\"{VERSION}\"")), "{line}");
    assert!(line.contains("commit=\""), "{line}");
    assert!(line.contains("rustc=\"rustc "), "{line}");
    assert!(line.ends_with(" 1"), "{line}");
}

#[test]
fn latency_histogram_is_cumulative_and_counts_match() {
    let m = Metrics::new();
    let h = m.request_duration("public");
    h.observe(Duration::from_micros(100));
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_secs(100));
    assert_eq!(h.count(), 3);
    let text = m.encode();
    let public = |suffix: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "kratos_gate_request_duration_seconds_{suffix}{{listener=\"public\""
                ))
            })
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
    };
    assert_eq!(public("count").as_deref(), Some("3"), "{text}");
    let sum: f64 = public("sum").expect("sum").parse().expect("number");
    assert!((sum - 100.0031).abs() < 1e-6, "{sum}");
    assert!(
        has(
            &text,
            "kratos_gate_request_duration_seconds_bucket{le=\"0.0005\",listener=\"public\"} 1"
        ) || has(
            &text,
            "kratos_gate_request_duration_seconds_bucket{listener=\"public\",le=\"0.0005\"} 1"
        ),
        "{text}"
    );
    assert!(
        has(
            &text,
            "kratos_gate_request_duration_seconds_bucket{le=\"+Inf\",listener=\"public\"} 3"
        ),
        "{text}"
    );
}

#[test]
fn blocklist_info_has_one_series_for_the_list_in_force() {
    let m = Metrics::new();
    m.set_blocklist("aa", EntryCounts::default());
    m.set_blocklist(
        "bb",
        EntryCounts {
            identity: 3,
            email: 2,
            domain: 1,
            network: 4,
        },
    );
    let text = m.encode();
    assert!(
        has(&text, "kratos_gate_blocklist_info{sha256=\"bb\"} 1"),
        "{text}"
    );
    assert!(!text.contains("sha256=\"aa\""), "{text}");
    assert!(has(
        &text,
        "kratos_gate_blocklist_entries{kind=\"identity\"} 3"
    ));
    assert!(has(
        &text,
        "kratos_gate_blocklist_entries{kind=\"email\"} 2"
    ));
    assert!(has(
        &text,
        "kratos_gate_blocklist_entries{kind=\"domain\"} 1"
    ));
    assert!(has(
        &text,
        "kratos_gate_blocklist_entries{kind=\"network\"} 4"
    ));
}

#[cfg(target_os = "linux")]
#[test]
fn process_metrics_are_read_from_proc() {
    let text = Metrics::new().encode();
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        let value: f64 = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: {text}"));
        assert!(value >= 0.0, "{name} {value}");
    }
    let stat = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 9000 123456 789";
    let s = process::parse_stat(stat).expect("parsed");
    assert_eq!(s.cpu_seconds, 3.0);
    assert_eq!(s.start_ticks, 9000.0);
    assert_eq!(s.virtual_bytes, 123456.0);
    assert_eq!(
        process::parse_rss("Name:\tx\nVmRSS:\t    2048 kB\n"),
        Some(2048.0 * 1024.0)
    );
    assert_eq!(
        process::parse_max_fds(
            "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n"
        ),
        Some(1024.0)
    );
}

/// Every known lookup counts on its exposed series (resolved once at start), and only on
/// it; a pair outside [`LOOKUPS`] still gets its own series.
#[test]
fn lookups_count_on_their_own_series() {
    let m = Metrics::new();
    let line = |source: &str, result: &str| {
        format!("kratos_gate_attribution_lookups_total{{source=\"{source}\",result=\"{result}\"}}")
    };
    for (i, (source, results)) in LOOKUPS.iter().enumerate() {
        for (j, result) in results.iter().enumerate() {
            for _ in 0..(i * 10 + j + 1) {
                m.lookup(source, result);
            }
        }
    }
    m.lookup("elsewhere", "found");
    let text = m.encode();
    for (i, (source, results)) in LOOKUPS.iter().enumerate() {
        for (j, result) in results.iter().enumerate() {
            let want = format!("{} {}", line(source, result), i * 10 + j + 1);
            assert!(has(&text, &want), "{want}: {text}");
        }
    }
    assert!(
        has(&text, &format!("{} 1", line("elsewhere", "found"))),
        "{text}"
    );
}
