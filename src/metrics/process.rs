//! The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`), read from `/proc/self` at each scrape as the Go and Python
//! clients do. prometheus-client has no process collector.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/*/stat` times: USER_HZ, 100 on every Linux
/// architecture Rust targets (the Go client's procfs assumes the same).
const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub struct ProcessCollector {
    boot_time: Option<f64>,
}

impl ProcessCollector {
    pub fn new() -> Self {
        ProcessCollector {
            boot_time: boot_time(),
        }
    }
}

/// `btime` of `/proc/stat`: when the machine booted, in unix seconds.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub start_ticks: f64,
    pub virtual_bytes: f64,
    pub resident_bytes: f64,
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, hence the last `)`).
pub fn parse_stat(stat: &str) -> Option<Sample> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is index 0 here: utime 14, stime 15, starttime 22, vsize 23.
    let num = |field: usize| -> Option<f64> { fields.get(field - 3)?.parse().ok() };
    Some(Sample {
        cpu_seconds: (num(14)? + num(15)?) / USER_HZ,
        start_ticks: num(22)?,
        virtual_bytes: num(23)?,
        resident_bytes: 0.0,
    })
}

/// `VmRSS` of `/proc/self/status`, in bytes (no page size needed).
pub fn parse_rss(status: &str) -> Option<f64> {
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

/// The soft limit on open files, from `/proc/self/limits`.
pub fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s));
        if let Some(s) = &stat {
            let cpu = ConstCounter::new(s.cpu_seconds);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                cpu.metric_type(),
            )?;
            cpu.encode(m)?;
        }
        if let Some(rss) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| parse_rss(&s))
        {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            )?;
        }
        if let Some(s) = &stat {
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            )?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle being read is one of them.
            let open = dir.count().saturating_sub(1);
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                open as f64,
            )?;
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| parse_max_fds(&s))
        {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                max,
            )?;
        }
        if let (Some(s), Some(boot)) = (&stat, self.boot_time) {
            gauge(
                &mut encoder,
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                boot + s.start_ticks / USER_HZ,
            )?;
        }
        Ok(())
    }
}
