//! Host metrics read directly from Linux `/proc`, named and scaled like node_exporter's so that
//! dashboards and rules written for it apply unchanged. The parsers take file text, so tests feed
//! them fixtures; [`collect`] only reads the files.

use std::collections::BTreeMap;

use yunwei_proto::Sample;

/// Why host metrics could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("the host metrics collector is not supported on this platform ({0})")]
    Unsupported(&'static str),
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: &'static str, message: String },
}

/// Kernel clock ticks per second in `/proc/stat` (USER_HZ). Reading it needs
/// `sysconf(_SC_CLK_TCK)`, an unsafe call the workspace forbids; it is 100 on every mainstream
/// Linux architecture, as node_exporter's procfs library also assumes.
const USER_HZ: f64 = 100.0;

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// `(/proc/meminfo key, metric name)`; values are in kB and exported in bytes.
const MEMINFO: [(&str, &str); 7] = [
    ("MemTotal", "node_memory_MemTotal_bytes"),
    ("MemFree", "node_memory_MemFree_bytes"),
    ("MemAvailable", "node_memory_MemAvailable_bytes"),
    ("Buffers", "node_memory_Buffers_bytes"),
    ("Cached", "node_memory_Cached_bytes"),
    ("SwapTotal", "node_memory_SwapTotal_bytes"),
    ("SwapFree", "node_memory_SwapFree_bytes"),
];

/// `(/proc/stat key, metric name)` for the single-value lines.
const STAT: [(&str, &str); 5] = [
    ("btime", "node_boot_time_seconds"),
    ("procs_running", "node_procs_running"),
    ("procs_blocked", "node_procs_blocked"),
    ("ctxt", "node_context_switches_total"),
    ("processes", "node_forks_total"),
];

/// `(column in /proc/net/dev, metric name)`; columns 0..8 are receive, 8.. transmit.
const NETDEV: [(usize, &str); 8] = [
    (0, "node_network_receive_bytes_total"),
    (1, "node_network_receive_packets_total"),
    (2, "node_network_receive_errs_total"),
    (3, "node_network_receive_drop_total"),
    (8, "node_network_transmit_bytes_total"),
    (9, "node_network_transmit_packets_total"),
    (10, "node_network_transmit_errs_total"),
    (11, "node_network_transmit_drop_total"),
];

/// Collects all host metrics, stamped with `ts_ms` (the collection time, Unix milliseconds).
#[cfg(target_os = "linux")]
pub fn collect(ts_ms: i64) -> Result<Vec<Sample>, CollectError> {
    fn read(path: &'static str) -> Result<String, CollectError> {
        std::fs::read_to_string(path).map_err(|source| CollectError::Read { path, source })
    }
    let mut out = Vec::with_capacity(128);
    parse_loadavg(&read("/proc/loadavg")?, ts_ms, &mut out).map_err(|message| {
        CollectError::Parse {
            path: "/proc/loadavg",
            message,
        }
    })?;
    parse_meminfo(&read("/proc/meminfo")?, ts_ms, &mut out);
    parse_stat(&read("/proc/stat")?, ts_ms, &mut out);
    parse_net_dev(&read("/proc/net/dev")?, ts_ms, &mut out);
    out.push(sample(
        "node_time_seconds",
        &[],
        ts_ms as f64 / 1000.0,
        ts_ms,
    ));
    Ok(out)
}

/// Collects all host metrics; not available on this platform.
#[cfg(not(target_os = "linux"))]
pub fn collect(_ts_ms: i64) -> Result<Vec<Sample>, CollectError> {
    Err(CollectError::Unsupported(std::env::consts::OS))
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts_ms: i64) -> Sample {
    Sample {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        value,
        ts_ms,
    }
}

/// `/proc/loadavg`: `0.04 0.17 0.11 1/134 8472`.
pub fn parse_loadavg(text: &str, ts_ms: i64, out: &mut Vec<Sample>) -> Result<(), String> {
    let mut fields = text.split_whitespace();
    for name in ["node_load1", "node_load5", "node_load15"] {
        let field = fields.next().ok_or("fewer than 3 fields")?;
        let value: f64 = field
            .parse()
            .map_err(|_| format!("{field:?} is not a number"))?;
        out.push(sample(name, &[], value, ts_ms));
    }
    Ok(())
}

/// `/proc/meminfo`: `MemTotal:       24684084 kB`. Keys the kernel does not report are skipped.
pub fn parse_meminfo(text: &str, ts_ms: i64, out: &mut Vec<Sample>) {
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some((_, name)) = MEMINFO.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(Ok(value)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let scale = if parts.next() == Some("kB") { 1024 } else { 1 };
        out.push(sample(name, &[], (value * scale) as f64, ts_ms));
    }
}

/// `/proc/stat`: per-CPU `cpuN` tick counters and the single-value lines (boot time, running and
/// blocked processes, context switches, forks). The aggregate `cpu` line is skipped, as
/// node_exporter does, and so are modes an older kernel does not report.
pub fn parse_stat(text: &str, ts_ms: i64, out: &mut Vec<Sample>) {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some(key) = parts.next() else { continue };
        if let Some(cpu) = key.strip_prefix("cpu").filter(|n| !n.is_empty()) {
            for (mode, ticks) in CPU_MODES.iter().zip(parts) {
                let Ok(ticks) = ticks.parse::<u64>() else {
                    break;
                };
                out.push(sample(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    ticks as f64 / USER_HZ,
                    ts_ms,
                ));
            }
        } else if let Some((_, name)) = STAT.iter().find(|(k, _)| *k == key)
            && let Some(Ok(value)) = parts.next().map(str::parse::<u64>)
        {
            out.push(sample(name, &[], value as f64, ts_ms));
        }
    }
}

/// `/proc/net/dev`: two header lines, then `  eth0: rx_bytes rx_packets ... tx_bytes ...`.
/// The loopback device is skipped.
pub fn parse_net_dev(text: &str, ts_ms: i64, out: &mut Vec<Sample>) {
    for line in text.lines().skip(2) {
        let Some((device, counters)) = line.rsplit_once(':') else {
            continue;
        };
        let device = device.trim();
        if device == "lo" || device.is_empty() {
            continue;
        }
        let counters: Vec<u64> = match counters.split_whitespace().map(str::parse).collect() {
            Ok(c) => c,
            Err(_) => continue,
        };
        if counters.len() < 16 {
            continue;
        }
        for (column, name) in NETDEV {
            out.push(sample(
                name,
                &[("device", device)],
                counters[column] as f64,
                ts_ms,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: i64 = 1_700_000_000_123;

    /// Runs `parse` on `text` and renders the samples as `name{k="v",..} value` lines.
    fn check(parse: impl Fn(&str, i64, &mut Vec<Sample>), text: &str, expected: &[&str]) {
        let mut out = Vec::new();
        parse(text, TS, &mut out);
        let got: Vec<String> = out
            .iter()
            .map(|s| {
                assert_eq!(s.ts_ms, TS);
                assert!(yunwei_proto::valid_metric_name(&s.name), "{}", s.name);
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                if labels.is_empty() {
                    format!("{} {}", s.name, s.value)
                } else {
                    format!("{}{{{}}} {}", s.name, labels.join(","), s.value)
                }
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn loadavg() {
        check(
            |t, ts, out| parse_loadavg(t, ts, out).unwrap(),
            "0.04 0.17 1.50 1/134 8472\n",
            &["node_load1 0.04", "node_load5 0.17", "node_load15 1.5"],
        );
        let mut out = Vec::new();
        assert!(parse_loadavg("0.04 x 1", TS, &mut out).is_err());
        assert!(parse_loadavg("", TS, &mut out).is_err());
    }

    #[test]
    fn meminfo_in_bytes() {
        check(
            parse_meminfo,
            "MemTotal:       24684084 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\n\
             Buffers:           10240 kB\nCached:          1000000 kB\nSwapCached:            0 kB\n\
             Active:          1000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n\
             HugePages_Total:       0\n",
            &[
                "node_memory_MemTotal_bytes 25276502016",
                "node_memory_MemFree_bytes 20480000000",
                "node_memory_MemAvailable_bytes 22528000000",
                "node_memory_Buffers_bytes 10485760",
                "node_memory_Cached_bytes 1024000000",
                "node_memory_SwapTotal_bytes 0",
                "node_memory_SwapFree_bytes 0",
            ],
        );
    }

    #[test]
    fn stat_cpus_and_counters() {
        let text = "cpu  7172 0 4269 94848 686 0 84 33 0 0\n\
                    cpu0 3199 0 1597 48681 64 0 11 13 0 0\n\
                    cpu1 3972 5 2671 46167 621 1 73\n\
                    intr 365786 0 0 0\n\
                    ctxt 942861\n\
                    btime 1795346096\n\
                    processes 8476\n\
                    procs_running 2\n\
                    procs_blocked 1\n\
                    softirq 1 2 3\n";
        let cpu0 = [
            ("user", "31.99"),
            ("nice", "0"),
            ("system", "15.97"),
            ("idle", "486.81"),
            ("iowait", "0.64"),
            ("irq", "0"),
            ("softirq", "0.11"),
            ("steal", "0.13"),
        ];
        let cpu1 = [
            ("user", "39.72"),
            ("nice", "0.05"),
            ("system", "26.71"),
            ("idle", "461.67"),
            ("iowait", "6.21"),
            ("irq", "0.01"),
            ("softirq", "0.73"),
        ];
        let mut expected: Vec<String> = Vec::new();
        for (cpu, modes) in [("0", &cpu0[..]), ("1", &cpu1[..])] {
            for (mode, v) in modes {
                expected.push(format!(
                    "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {v}"
                ));
            }
        }
        expected.extend(
            [
                "node_context_switches_total 942861",
                "node_boot_time_seconds 1795346096",
                "node_forks_total 8476",
                "node_procs_running 2",
                "node_procs_blocked 1",
            ]
            .map(String::from),
        );
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        check(parse_stat, text, &expected);
    }

    #[test]
    fn net_dev_skips_loopback_and_keeps_odd_names() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
             lo:   53519     655    0    0    0     0          0         0    53519     655    0    0    0     0       0          0\n  \
             eth0:12345678901 100 1 2 0 0 0 0 999 50 3 4 0 0 0 0\n\
             br-1a2b: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n\
             bad: 1 2 3\n";
        check(
            parse_net_dev,
            text,
            &[
                "node_network_receive_bytes_total{device=\"eth0\"} 12345678901",
                "node_network_receive_packets_total{device=\"eth0\"} 100",
                "node_network_receive_errs_total{device=\"eth0\"} 1",
                "node_network_receive_drop_total{device=\"eth0\"} 2",
                "node_network_transmit_bytes_total{device=\"eth0\"} 999",
                "node_network_transmit_packets_total{device=\"eth0\"} 50",
                "node_network_transmit_errs_total{device=\"eth0\"} 3",
                "node_network_transmit_drop_total{device=\"eth0\"} 4",
                "node_network_receive_bytes_total{device=\"br-1a2b\"} 1",
                "node_network_receive_packets_total{device=\"br-1a2b\"} 2",
                "node_network_receive_errs_total{device=\"br-1a2b\"} 3",
                "node_network_receive_drop_total{device=\"br-1a2b\"} 4",
                "node_network_transmit_bytes_total{device=\"br-1a2b\"} 9",
                "node_network_transmit_packets_total{device=\"br-1a2b\"} 10",
                "node_network_transmit_errs_total{device=\"br-1a2b\"} 11",
                "node_network_transmit_drop_total{device=\"br-1a2b\"} 12",
            ],
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_proc_passes_server_validation() {
        let samples = collect(TS).unwrap();
        for name in [
            "node_load1",
            "node_memory_MemTotal_bytes",
            "node_boot_time_seconds",
            "node_time_seconds",
        ] {
            assert!(samples.iter().any(|s| s.name == name), "{name} missing");
        }
        assert!(samples.iter().any(|s| s.name == "node_cpu_seconds_total"));
        let batch = yunwei_proto::Batch {
            version: yunwei_proto::PROTOCOL_VERSION,
            agent_id: "a".into(),
            seq: 1,
            interval_ms: 15_000,
            collected_at_ms: TS,
            age_ms: 0,
            host: yunwei_proto::HostFacts {
                hostname: "h".into(),
                ..Default::default()
            },
            samples,
            events: vec![],
        };
        yunwei_proto::validate_batch(&batch, &yunwei_proto::Limits::default(), TS).unwrap();
    }
}
