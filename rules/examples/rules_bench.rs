//! Rule-evaluation benchmark: a synthetic node_exporter fleet in a [`MemStorage`] and a set of
//! alerting and recording rules typical of production rule files, evaluated cycle after cycle
//! on one thread, the way the server evaluates them over its live window.
//!
//! ```text
//! cargo run --release -p yunwei-rules --example rules_bench -- [--rules 1000] [--series 20000] [--cycles 20]
//!     [--groups 50] [--warmup 3] [--write-rules FILE] [--write-openmetrics FILE]
//! ```
//!
//! The fleet: `series / 200` hosts with 200 series each (node_cpu_seconds_total{cpu,mode},
//! node_memory_*, node_filesystem_*{mountpoint}, node_network_*{device}, node_disk_*{device},
//! node_load*, probe_*{probe}, ...), one sample every 15 s over the last hour. A few hosts are
//! unhealthy (load, memory, a filling disk, a failing probe) so some alerts go pending and fire.
//!
//! Each cycle, untimed: one new sample per series 15 s after the previous one, and samples older
//! than the live window dropped. Timed: every group evaluated with [`RuleGroup::eval`] at the new
//! time, and its output written back to the storage, as the server does. The figures printed
//! are per cycle (all groups), in milliseconds: wall clock, and the thread's CPU time (Linux),
//! which a busy machine inflates less. A digest of everything the rules produced (samples
//! written, alerts with their annotations) lets two builds be compared for identical results.
//! `RULES_BENCH_VERBOSE=1` also prints each cycle and the alerts per rule.
//!
//! `--write-rules` and `--write-openmetrics` write the same rules and data for a peer
//! measurement with Prometheus: `rules/examples/rules_bench_peer.sh`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use yunwei_rules::alerting::{AlertState, EvalOptions, GroupState};
use yunwei_rules::promql::{Labels, MemStorage, SharedEval, is_stale_nan};
use yunwei_rules::rulefile::{Rule, RuleGroup, parse_rule_file};

const STEP_MS: i64 = 15_000;
const HISTORY_MS: i64 = 3_600_000;
/// The server's live window is longer than the longest range the rules use (1h).
const WINDOW_MS: i64 = 3_600_000 + 5 * 60_000;
/// 2023-11-14T22:13:20Z, a fixed start so runs are comparable.
const T0_MS: i64 = 1_700_000_000_000;
const SERIES_PER_HOST: usize = 200;
const TARGET_MS: f64 = 100.0;

struct Args {
    rules: usize,
    series: usize,
    cycles: usize,
    groups: usize,
    warmup: usize,
    write_rules: Option<String>,
    write_openmetrics: Option<String>,
    no_sharing: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rules: 1000,
        series: 20_000,
        cycles: 20,
        groups: 50,
        warmup: 3,
        write_rules: None,
        write_openmetrics: None,
        no_sharing: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| {
            s.parse::<usize>()
                .map_err(|e| format!("{flag}: {e} ({s:?})"))
        };
        match flag.as_str() {
            "--rules" => a.rules = num(val()?)?,
            "--series" => a.series = num(val()?)?,
            "--cycles" => a.cycles = num(val()?)?,
            "--groups" => a.groups = num(val()?)?.max(1),
            "--warmup" => a.warmup = num(val()?)?,
            "--write-rules" => a.write_rules = Some(val()?),
            "--write-openmetrics" => a.write_openmetrics = Some(val()?),
            "--no-sharing" => a.no_sharing = true,
            "-h" | "--help" => {
                return Err(
                    "usage: rules_bench [--rules N] [--series N] [--cycles N] [--groups N] \
                     [--warmup N] [--no-sharing] [--write-rules FILE] [--write-openmetrics FILE]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if a.cycles == 0 {
        return Err("--cycles must be at least 1".into());
    }
    Ok(a)
}

// ---------------------------------------------------------------------------------------------
// The fleet

const ROLES: &[&str] = &["web", "db", "cache", "batch", "lb"];
const ENVS: &[&str] = &["prod", "prod", "prod", "staging"];
const REGIONS: &[&str] = &["cn-north", "cn-east", "cn-south"];
const MODES: &[&str] = &[
    "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
];
const MOUNTS: &[(&str, &str, &str)] = &[
    ("/", "/dev/sda1", "ext4"),
    ("/boot", "/dev/sda2", "ext4"),
    ("/var", "/dev/sda3", "xfs"),
    ("/data", "/dev/sdb1", "xfs"),
    ("/data1", "/dev/nvme0n1p1", "xfs"),
    ("/run", "tmpfs", "tmpfs"),
];
const NICS: &[&str] = &["eth0", "eth1", "lo", "docker0"];
const DISKS: &[&str] = &["sda", "sdb", "nvme0n1"];
const PROBES: usize = 8;

/// How a series' value evolves.
#[derive(Clone, Copy)]
enum Shape {
    /// A counter: `rate` per second on average, wobbling but never decreasing.
    Counter { rate: f64 },
    /// A gauge: `base` plus a slow wave of amplitude `amp`, plus `trend` per second.
    Gauge { base: f64, amp: f64, trend: f64 },
}

struct SeriesSpec {
    labels: Labels,
    shape: Shape,
    phase: f64,
}

impl SeriesSpec {
    fn value(&self, t_ms: i64) -> f64 {
        // Seconds since an hour before the start, so counters and trends start near 0.
        let s = (t_ms - (T0_MS - HISTORY_MS)) as f64 / 1000.0;
        match self.shape {
            Shape::Counter { rate } => {
                let period = 600.0;
                (rate * (s + 0.4 * period * (s / period + self.phase).sin())).max(0.0) + 1e6 * rate
            }
            Shape::Gauge { base, amp, trend } => {
                (base + amp * (s / 900.0 + self.phase).sin() + trend * s).max(0.0)
            }
        }
    }
}

/// A small deterministic generator (SplitMix64), so every run builds the same fleet.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn host_series(h: usize, rng: &mut Rng) -> Vec<SeriesSpec> {
    let instance = format!("host-{h:03}.example.net:9100");
    let base: Vec<(&str, String)> = vec![
        ("instance", instance.clone()),
        ("job", "node".into()),
        ("env", ENVS[h % ENVS.len()].into()),
        ("role", ROLES[h % ROLES.len()].into()),
        ("region", REGIONS[h % REGIONS.len()].into()),
    ];
    let mut out = Vec::with_capacity(SERIES_PER_HOST);
    let mut push = |name: &str, extra: &[(&str, &str)], shape: Shape, rng: &mut Rng| {
        let mut pairs: Vec<(&str, String)> = base.clone();
        pairs.push(("__name__", name.to_string()));
        for (k, v) in extra {
            pairs.push((k, v.to_string()));
        }
        out.push(SeriesSpec {
            labels: Labels::from_pairs(pairs),
            shape,
            phase: rng.unit() * std::f64::consts::TAU,
        });
    };
    let gauge = |base: f64, amp: f64| Shape::Gauge {
        base,
        amp,
        trend: 0.0,
    };
    // Unhealthy hosts.
    let busy = h % 37 == 5;
    let low_mem = h % 29 == 11;
    let filling = h % 23 == 3;
    let probe_down = h % 41 == 7;

    // CPU: 8 cpus x 8 modes = 64 counters (seconds per second per cpu).
    for cpu in 0..8 {
        let c = cpu.to_string();
        for (i, mode) in MODES.iter().enumerate() {
            let share = match (i, busy) {
                (0, false) => 0.85,
                (0, true) => 0.03,
                (1, true) => 0.80,
                _ => 0.02,
            };
            push(
                "node_cpu_seconds_total",
                &[("cpu", &c), ("mode", mode)],
                Shape::Counter {
                    rate: share * (0.9 + 0.2 * rng.unit()),
                },
                rng,
            );
        }
    }
    // Memory: 16 gauges.
    let total = 64e9;
    let avail = if low_mem { 0.05 * total } else { 0.5 * total };
    for (name, v) in [
        ("node_memory_MemTotal_bytes", total),
        ("node_memory_MemAvailable_bytes", avail),
        ("node_memory_MemFree_bytes", avail * 0.4),
        ("node_memory_Buffers_bytes", 1e9),
        ("node_memory_Cached_bytes", avail * 0.5),
        ("node_memory_SwapTotal_bytes", 8e9),
        ("node_memory_SwapFree_bytes", 7e9),
        ("node_memory_Active_bytes", 20e9),
        ("node_memory_Inactive_bytes", 10e9),
        ("node_memory_Dirty_bytes", 5e7),
        ("node_memory_Writeback_bytes", 1e6),
        ("node_memory_Slab_bytes", 2e9),
        ("node_memory_Shmem_bytes", 1e9),
        ("node_memory_HugePages_Total", 0.0),
        ("node_memory_Committed_AS_bytes", 40e9),
        ("node_memory_CommitLimit_bytes", 40e9),
    ] {
        let amp = if name == "node_memory_MemTotal_bytes" || v == 0.0 {
            0.0
        } else {
            v * 0.02
        };
        push(name, &[], gauge(v, amp), rng);
    }
    // Filesystems: 6 mounts x 6 metrics = 36.
    for (mi, (mount, dev, fstype)) in MOUNTS.iter().enumerate() {
        let size = [50e9, 1e9, 100e9, 2e12, 1e12, 32e9][mi];
        let fill = filling && *mount == "/data";
        // A filling disk loses 2e12 * 0.3 in 3 hours: predict_linear over 1h sees it hit 0.
        let (free_base, trend) = if fill {
            (0.3 * size, -0.3 * size / (3.0 * 3600.0))
        } else {
            (0.4 * size, 0.0)
        };
        let l: &[(&str, &str)] = &[("mountpoint", mount), ("device", dev), ("fstype", fstype)];
        let avail = Shape::Gauge {
            base: free_base,
            amp: size * 0.001,
            trend,
        };
        push("node_filesystem_avail_bytes", l, avail, rng);
        push("node_filesystem_free_bytes", l, avail, rng);
        push("node_filesystem_size_bytes", l, gauge(size, 0.0), rng);
        push("node_filesystem_files", l, gauge(6.5e6, 0.0), rng);
        push("node_filesystem_files_free", l, gauge(6e6, 1e4), rng);
        push("node_filesystem_readonly", l, gauge(0.0, 0.0), rng);
    }
    // Network: 4 devices x 6 metrics = 24.
    for dev in NICS {
        let l: &[(&str, &str)] = &[("device", dev)];
        let r = 1e6 * (0.5 + rng.unit());
        push(
            "node_network_receive_bytes_total",
            l,
            Shape::Counter { rate: r },
            rng,
        );
        push(
            "node_network_transmit_bytes_total",
            l,
            Shape::Counter { rate: r * 0.7 },
            rng,
        );
        push(
            "node_network_receive_errs_total",
            l,
            Shape::Counter { rate: 0.01 },
            rng,
        );
        push(
            "node_network_transmit_errs_total",
            l,
            Shape::Counter { rate: 0.0 },
            rng,
        );
        push(
            "node_network_receive_drop_total",
            l,
            Shape::Counter { rate: 0.1 },
            rng,
        );
        push("node_network_up", l, gauge(1.0, 0.0), rng);
    }
    // Disks: 3 devices x 5 counters = 15.
    for dev in DISKS {
        let l: &[(&str, &str)] = &[("device", dev)];
        push(
            "node_disk_read_bytes_total",
            l,
            Shape::Counter { rate: 5e6 },
            rng,
        );
        push(
            "node_disk_written_bytes_total",
            l,
            Shape::Counter { rate: 8e6 },
            rng,
        );
        push(
            "node_disk_io_time_seconds_total",
            l,
            Shape::Counter {
                rate: if busy { 0.95 } else { 0.2 },
            },
            rng,
        );
        push(
            "node_disk_reads_completed_total",
            l,
            Shape::Counter { rate: 200.0 },
            rng,
        );
        push(
            "node_disk_writes_completed_total",
            l,
            Shape::Counter { rate: 300.0 },
            rng,
        );
    }
    // Load: 3.
    let load = if busy { 12.0 } else { 1.5 };
    push("node_load1", &[], gauge(load, 1.0), rng);
    push("node_load5", &[], gauge(load, 0.8), rng);
    push("node_load15", &[], gauge(load, 0.5), rng);
    // Probes run from this host: 8 targets x 3 = 24.
    for p in 0..PROBES {
        let target = format!("https://svc{p}.example.net");
        let l: &[(&str, &str)] = &[("probe", &target)];
        let ok = if probe_down && p == 2 { 0.0 } else { 1.0 };
        push("probe_success", l, gauge(ok, 0.0), rng);
        push("probe_duration_seconds", l, gauge(0.12, 0.05), rng);
        // One certificate, seen from two hosts, expires soon.
        let days = if p == 7 && h.is_multiple_of(50) {
            10.0
        } else {
            40.0 + 10.0 * p as f64
        };
        let expiry = T0_MS as f64 / 1000.0 + 86400.0 * days;
        push("probe_ssl_earliest_cert_expiry", l, gauge(expiry, 0.0), rng);
    }
    // Everything else: 18.
    for (name, shape) in [
        ("up", gauge(1.0, 0.0)),
        ("node_boot_time_seconds", gauge(1.69e9, 0.0)),
        (
            "node_time_seconds",
            Shape::Gauge {
                base: 1.7e9,
                amp: 0.0,
                trend: 1.0,
            },
        ),
        ("node_procs_running", gauge(4.0, 3.0)),
        ("node_procs_blocked", gauge(0.5, 0.5)),
        (
            "node_context_switches_total",
            Shape::Counter { rate: 20000.0 },
        ),
        ("node_intr_total", Shape::Counter { rate: 15000.0 }),
        ("node_forks_total", Shape::Counter { rate: 30.0 }),
        ("node_entropy_available_bits", gauge(3500.0, 200.0)),
        ("node_filefd_allocated", gauge(9000.0, 500.0)),
        ("node_filefd_maximum", gauge(9.2e18, 0.0)),
        ("node_timex_offset_seconds", gauge(0.0, 0.002)),
        ("node_timex_sync_status", gauge(1.0, 0.0)),
        ("node_vmstat_pgmajfault", Shape::Counter { rate: 5.0 }),
        ("node_vmstat_oom_kill", Shape::Counter { rate: 0.0 }),
        ("node_nf_conntrack_entries", gauge(40000.0, 5000.0)),
        ("node_nf_conntrack_entries_limit", gauge(262144.0, 0.0)),
        ("node_sockstat_TCP_tw", gauge(3000.0, 1000.0)),
    ] {
        push(name, &[], shape, rng);
    }
    debug_assert_eq!(out.len(), SERIES_PER_HOST);
    out
}

fn fleet(series: usize) -> Vec<SeriesSpec> {
    let mut rng = Rng(42);
    let mut out = Vec::with_capacity(series);
    let mut h = 0;
    while out.len() < series {
        let need = series - out.len();
        out.extend(host_series(h, &mut rng).into_iter().take(need));
        h += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The rules

/// One rule template. In `expr`, `{F}` becomes `,<filter>` (or nothing) inside an existing
/// matcher list, `{FB}` becomes `{<filter>}` (or nothing) after a bare metric name, and `{T}`
/// the variant's threshold.
struct Template {
    name: &'static str,
    record: bool,
    expr: &'static str,
    /// Threshold of variant 0 and the step between variants.
    threshold: (f64, f64),
    for_: &'static str,
    severity: &'static str,
    summary: &'static str,
}

const SUMMARY_VALUE: &str = "{{ $labels.instance }}: {{ $value | humanize }}";

const TEMPLATES: &[Template] = &[
    Template {
        name: "HostHighLoad",
        record: false,
        expr: "node_load1{FB} > {T}",
        threshold: (4.0, 0.5),
        for_: "5m",
        severity: "warning",
        summary: "Load on {{ $labels.instance }} is {{ $value | printf \"%.2f\" }}",
    },
    Template {
        name: "HostLoadPerCpu",
        record: false,
        expr: "node_load5{FB} / on (instance) group_left count by (instance) (node_cpu_seconds_total{mode=\"idle\"{F}}) > {T}",
        threshold: (1.0, 0.1),
        for_: "10m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostMemoryLow",
        record: false,
        expr: "node_memory_MemAvailable_bytes{FB} / node_memory_MemTotal_bytes{FB} < {T}",
        threshold: (0.1, 0.01),
        for_: "5m",
        severity: "critical",
        summary: "{{ $labels.instance }} has {{ $value | humanizePercentage }} memory available",
    },
    Template {
        name: "HostCpuBusy",
        record: false,
        expr: "100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode=\"idle\"{F}}[5m]))) > {T}",
        threshold: (80.0, 1.0),
        for_: "5m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostDiskWillFill",
        record: false,
        expr: "predict_linear(node_filesystem_avail_bytes{mountpoint=~\"/|/data.*\"{F}}[1h], {T} * 3600) < 0",
        threshold: (4.0, 1.0),
        for_: "15m",
        severity: "warning",
        summary: "{{ $labels.instance }} {{ $labels.mountpoint }} fills within hours",
    },
    Template {
        name: "HostDiskFull",
        record: false,
        expr: "100 * node_filesystem_avail_bytes{fstype!~\"tmpfs|ramfs|overlay\"{F}} / node_filesystem_size_bytes{fstype!~\"tmpfs|ramfs|overlay\"{F}} < {T}",
        threshold: (10.0, 1.0),
        for_: "5m",
        severity: "critical",
        summary: "{{ $labels.instance }} {{ $labels.mountpoint }} {{ $value | printf \"%.1f\" }}% free",
    },
    Template {
        name: "HostOomKill",
        record: false,
        expr: "increase(node_vmstat_oom_kill{FB}[5m]) > {T}",
        threshold: (0.0, 1.0),
        for_: "0s",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostNetworkErrors",
        record: false,
        expr: "rate(node_network_receive_errs_total{device!~\"lo|docker.*\"{F}}[5m]) > {T}",
        threshold: (1.0, 0.5),
        for_: "5m",
        severity: "warning",
        summary: "{{ $labels.instance }} {{ $labels.device }}: {{ $value | humanize }} errors/s",
    },
    Template {
        name: "ProbeFailed",
        record: false,
        expr: "probe_success{FB} == 0",
        threshold: (0.0, 0.0),
        for_: "2m",
        severity: "critical",
        summary: "Probe {{ $labels.probe }} from {{ $labels.instance }} failed",
    },
    Template {
        name: "ProbeSlow",
        record: false,
        expr: "avg_over_time(probe_duration_seconds{FB}[5m]) > {T}",
        threshold: (1.0, 0.1),
        for_: "5m",
        severity: "warning",
        summary: "Probe {{ $labels.probe }} takes {{ $value | humanizeDuration }}",
    },
    Template {
        name: "ProbeCertExpiring",
        record: false,
        expr: "probe_ssl_earliest_cert_expiry{FB} - time() < 86400 * {T}",
        threshold: (21.0, 1.0),
        for_: "0s",
        severity: "warning",
        summary: "Certificate of {{ $labels.probe }} expires in {{ $value | humanizeDuration }}",
    },
    Template {
        name: "HostDown",
        record: false,
        expr: "up{job=\"node\"{F}} == 0",
        threshold: (0.0, 0.0),
        for_: "5m",
        severity: "critical",
        summary: "{{ $labels.instance }} is down",
    },
    Template {
        name: "HostDiskBusy",
        record: false,
        expr: "rate(node_disk_io_time_seconds_total{FB}[5m]) > {T}",
        threshold: (0.9, 0.01),
        for_: "10m",
        severity: "warning",
        summary: "{{ $labels.instance }} {{ $labels.device }} busy {{ $value | humanizePercentage }}",
    },
    Template {
        name: "HostInodesLow",
        record: false,
        expr: "node_filesystem_files_free{fstype!=\"tmpfs\"{F}} / node_filesystem_files{fstype!=\"tmpfs\"{F}} < {T}",
        threshold: (0.05, 0.01),
        for_: "5m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostSwapUsed",
        record: false,
        expr: "(node_memory_SwapTotal_bytes{FB} - node_memory_SwapFree_bytes{FB}) / node_memory_SwapTotal_bytes{FB} > {T}",
        threshold: (0.8, 0.02),
        for_: "10m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostClockSkew",
        record: false,
        expr: "(node_timex_offset_seconds{FB} > 0.05 and deriv(node_timex_offset_seconds{FB}[5m]) >= 0) or (node_timex_offset_seconds{FB} < -0.05 and deriv(node_timex_offset_seconds{FB}[5m]) <= 0)",
        threshold: (0.0, 0.0),
        for_: "10m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostRebooted",
        record: false,
        expr: "changes(node_boot_time_seconds{FB}[1h]) > {T}",
        threshold: (0.0, 1.0),
        for_: "0s",
        severity: "info",
        summary: "{{ $labels.instance }} rebooted",
    },
    Template {
        name: "HostConntrackFull",
        record: false,
        expr: "node_nf_conntrack_entries{FB} / node_nf_conntrack_entries_limit{FB} > {T}",
        threshold: (0.75, 0.02),
        for_: "5m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostMajorPageFaults",
        record: false,
        expr: "irate(node_vmstat_pgmajfault{FB}[5m]) > {T}",
        threshold: (1000.0, 100.0),
        for_: "5m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostSustainedLoad",
        record: false,
        expr: "max_over_time(node_load15{FB}[30m]) > {T}",
        threshold: (8.0, 0.5),
        for_: "0s",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostMemoryDraining",
        record: false,
        expr: "deriv(node_memory_MemAvailable_bytes{FB}[30m]) < -{T}",
        threshold: (1e6, 1e5),
        for_: "15m",
        severity: "info",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "HostNetworkSaturated",
        record: false,
        expr: "sum by (instance, role) (rate(node_network_transmit_bytes_total{device=~\"eth.*\"{F}}[5m])) > {T} * 1e6",
        threshold: (100.0, 5.0),
        for_: "5m",
        severity: "warning",
        summary: "{{ $labels.instance }} sends {{ $value | humanize }}B/s",
    },
    Template {
        name: "HostCpuIowait",
        record: false,
        expr: "avg by (instance) (irate(node_cpu_seconds_total{mode=\"iowait\"{F}}[5m])) > {T}",
        threshold: (0.2, 0.02),
        for_: "10m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    Template {
        name: "FleetProbeFailureRatio",
        record: false,
        expr: "1 - avg by (probe) (avg_over_time(probe_success{FB}[10m])) > {T}",
        threshold: (0.02, 0.01),
        for_: "5m",
        severity: "critical",
        summary: "{{ $labels.probe }} fails from {{ $value | humanizePercentage }} of hosts",
    },
    Template {
        name: "HostCpuUtilisationHigh",
        record: false,
        expr: "instance:node_cpu_utilisation:rate5m{scope=\"s0\"{F}} > {T}",
        threshold: (0.9, 0.01),
        for_: "15m",
        severity: "warning",
        summary: SUMMARY_VALUE,
    },
    // Recording rules (node-mixin style).
    Template {
        name: "instance:node_cpu_utilisation:rate5m",
        record: true,
        expr: "1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{mode=\"idle\"{F}}[5m]))",
        threshold: (0.0, 0.0),
        for_: "",
        severity: "",
        summary: "",
    },
    Template {
        name: "instance:node_network_receive_bytes_excluding_lo:rate5m",
        record: true,
        expr: "sum without (device) (rate(node_network_receive_bytes_total{device!=\"lo\"{F}}[5m]))",
        threshold: (0.0, 0.0),
        for_: "",
        severity: "",
        summary: "",
    },
    Template {
        name: "instance:node_memory_utilisation:ratio",
        record: true,
        expr: "1 - node_memory_MemAvailable_bytes{FB} / node_memory_MemTotal_bytes{FB}",
        threshold: (0.0, 0.0),
        for_: "",
        severity: "",
        summary: "",
    },
    Template {
        name: "instance_device:node_disk_io_time_seconds:rate5m",
        record: true,
        expr: "rate(node_disk_io_time_seconds_total{device=~\"(sd|nvme).+\"{F}}[5m])",
        threshold: (0.0, 0.0),
        for_: "",
        severity: "",
        summary: "",
    },
    Template {
        name: "role:node_load1:avg",
        record: true,
        expr: "avg by (role, env, region) (node_load1{FB})",
        threshold: (0.0, 0.0),
        for_: "",
        severity: "",
        summary: "",
    },
];

/// Label filters rules are scoped with, as teams scope copies of the same alert.
const FILTERS: &[&str] = &[
    "",
    "env=\"prod\"",
    "env=\"staging\"",
    "role=\"web\"",
    "role=\"db\"",
    "role=\"cache\"",
    "role=~\"batch|lb\"",
    "region=\"cn-north\"",
    "region=\"cn-east\"",
    "region=\"cn-south\"",
    "env=\"prod\",role=\"db\"",
    "env=\"prod\",role=\"web\"",
    "env=\"prod\",region=~\"cn-(north|east)\"",
    "instance=~\"host-0[0-4].*\"",
    "instance=~\"host-0[5-9].*\"",
    "role!=\"batch\"",
];

fn fmt_num(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Rule-file YAML for `n` rules in `groups` groups.
fn rules_yaml(n: usize, groups: usize) -> String {
    let per_group = n.div_ceil(groups.max(1)).max(1);
    let mut y = String::from("groups:\n");
    for i in 0..n {
        if i % per_group == 0 {
            let _ = write!(
                y,
                "  - name: bench-{:02}\n    interval: 15s\n    rules:\n",
                i / per_group
            );
        }
        let t = &TEMPLATES[i % TEMPLATES.len()];
        let round = i / TEMPLATES.len();
        let filter = FILTERS[round % FILTERS.len()];
        let variant = round / FILTERS.len();
        let thr = t.threshold.0 + t.threshold.1 * variant as f64;
        let expr = t
            .expr
            .replace(
                "{F}",
                &if filter.is_empty() {
                    String::new()
                } else {
                    format!(",{filter}")
                },
            )
            .replace(
                "{FB}",
                &if filter.is_empty() {
                    String::new()
                } else {
                    format!("{{{filter}}}")
                },
            )
            .replace("{T}", &fmt_num(thr));
        let scope = format!("s{round}");
        if t.record {
            let _ = write!(
                y,
                "      - record: {}\n        expr: '{}'\n        labels:\n          scope: {scope}\n",
                t.name,
                expr.replace('\'', "''"),
            );
        } else {
            let _ = write!(
                y,
                "      - alert: {}_{round}\n        expr: '{}'\n        for: {}\n        labels:\n          severity: {}\n          team: '{{{{ $labels.role }}}}-oncall'\n          scope: {scope}\n        annotations:\n          summary: '{}'\n          description: '{} has been true for {}; value {{{{ $value }}}}, labels {{{{ $labels }}}}.'\n          runbook_url: 'https://runbooks.example.net/{}'\n",
                t.name,
                expr.replace('\'', "''"),
                t.for_,
                t.severity,
                t.summary.replace('\'', "''"),
                t.name,
                t.for_,
                t.name.to_lowercase(),
            );
        }
    }
    y
}

// ---------------------------------------------------------------------------------------------
// Running

/// FNV-1a, to fingerprint results.
struct Fnv(u64);

impl Fnv {
    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// CPU time of this thread (ns), from `/proc/thread-self/schedstat` (Linux), so a busy machine
/// does not inflate the figure; `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Mean, median, minimum and maximum.
fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (
        mean,
        percentile(&sorted, 0.5),
        sorted[0],
        sorted[sorted.len() - 1],
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };

    let t_build = Instant::now();
    let specs = fleet(args.series);
    let hosts = args.series.div_ceil(SERIES_PER_HOST);
    let mut storage = MemStorage::new();
    let mut t = T0_MS - HISTORY_MS;
    while t <= T0_MS {
        for s in &specs {
            storage.add_sample(&s.labels, t, s.value(t));
        }
        t += STEP_MS;
    }
    let yaml = rules_yaml(args.rules, args.groups);
    let file = match parse_rule_file(&yaml, "bench.rules.yml") {
        Ok(f) => f,
        Err(e) => {
            eprintln!("generated rules do not load:\n{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut groups: Vec<RuleGroup> = file.groups;
    if args.no_sharing {
        for r in groups.iter_mut().flat_map(|g| &mut g.rules) {
            r.parsed_mut().unshare();
        }
    }
    let n_rules: usize = groups.iter().map(|g| g.rules.len()).sum();
    let n_record: usize = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| matches!(r, Rule::Recording(_)))
        .count();
    if let Some(path) = &args.write_rules
        && let Err(e) = std::fs::write(path, &yaml)
    {
        eprintln!("{path}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    if let Some(path) = &args.write_openmetrics
        && let Err(e) = write_openmetrics(path, &specs)
    {
        eprintln!("{path}: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let samples = storage.sample_count();
    println!(
        "rules_bench: {} series ({hosts} hosts x {SERIES_PER_HOST}), {samples} samples (15 s over 1 h), \
         {n_rules} rules ({} alerting, {n_record} recording) in {} groups; built in {:.1} s",
        storage.series_count(),
        n_rules - n_record,
        groups.len(),
        t_build.elapsed().as_secs_f64()
    );

    let verbose = std::env::var_os("RULES_BENCH_VERBOSE").is_some();
    let opts = EvalOptions::default();
    let mut states: Vec<GroupState> = vec![GroupState::default(); groups.len()];
    let mut times_ms: Vec<f64> = Vec::with_capacity(args.cycles);
    let mut cpu_ms: Vec<f64> = Vec::with_capacity(args.cycles);
    let mut digest = Fnv(0xcbf2_9ce4_8422_2325);
    let mut last_written = 0usize;
    let mut last_shared = (0, 0);
    let mut errors = 0usize;
    let mut pending = 0usize;
    let mut firing = 0usize;
    for cycle in 0..args.warmup + args.cycles {
        // Untimed: the next scrape of every series, and the live window trimmed.
        let t = T0_MS + (cycle as i64 + 1) * STEP_MS;
        for s in &specs {
            storage.add_sample(&s.labels, t, s.value(t));
        }
        storage.truncate_before(t - WINDOW_MS);

        let cpu_before = thread_cpu_ns();
        let started = Instant::now();
        let mut written = 0usize;
        let mut results = Vec::with_capacity(groups.len());
        let mut shared = SharedEval::new(t, &opts.promql);
        for (g, st) in groups.iter().zip(states.iter_mut()) {
            let r = if args.no_sharing {
                g.eval(t, &storage, st, &opts)
            } else {
                g.eval_shared(t, &storage, st, &opts, &mut shared)
            };
            for s in &r.samples_to_write {
                storage.add_sample(&s.labels, s.t_ms, s.v);
            }
            written += r.samples_to_write.len();
            results.push(r);
        }
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        last_shared = shared.hits_and_misses();
        let cpu = match (cpu_before, thread_cpu_ns()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e6),
            _ => None,
        };

        // Untimed: fingerprint what the rules produced.
        pending = 0;
        firing = 0;
        errors = 0;
        for r in &results {
            errors += r.errors.len();
            for e in &r.errors {
                digest.add(e.message.as_bytes());
            }
            let mut out: Vec<String> = r
                .samples_to_write
                .iter()
                .map(|s| {
                    let v = if is_stale_nan(s.v) {
                        "stale".to_string()
                    } else {
                        format!("{:x}", s.v.to_bits())
                    };
                    format!("{}@{} {v}", s.labels, s.t_ms)
                })
                .collect();
            out.sort();
            for line in out {
                digest.add(line.as_bytes());
            }
            for a in &r.alerts {
                match a.state {
                    AlertState::Pending => pending += 1,
                    AlertState::Firing => firing += 1,
                    AlertState::Inactive => {}
                }
                let ann: BTreeMap<_, _> = a.annotations.iter().collect();
                digest.add(
                    format!("{} {:?} {:?} {}", a.labels, a.state, ann, a.active_at_ms).as_bytes(),
                );
            }
        }
        last_written = written;
        if verbose && cycle + 1 == args.warmup + args.cycles {
            let mut by_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for r in &results {
                for e in &r.errors {
                    println!("error: {}: {}", e.rule_name, e.message);
                }
                for a in &r.alerts {
                    let name = a.labels.value("alertname");
                    let base = name.split('_').next().unwrap_or(name).to_string();
                    let e = by_rule.entry(base).or_default();
                    match a.state {
                        AlertState::Pending => e.0 += 1,
                        AlertState::Firing => e.1 += 1,
                        AlertState::Inactive => {}
                    }
                }
            }
            for (k, (p, f)) in by_rule {
                println!("alerts {k}: {p} pending, {f} firing");
            }
        }
        if cycle >= args.warmup {
            times_ms.push(elapsed);
            if verbose {
                println!("cycle {cycle}: {elapsed:.1} ms, cpu {cpu:?}");
            }
            if let Some(c) = cpu {
                cpu_ms.push(c);
            }
        }
    }

    let (mean, p50, min, max) = stats(&times_ms);
    println!(
        "{} warm-up + {} timed cycles, one thread, each cycle = all groups evaluated at the next 15 s step + results written back",
        args.warmup, args.cycles
    );
    println!(
        "last cycle: {last_written} samples written, {pending} alerts pending, {firing} firing, {errors} rule errors"
    );
    let marked: usize = groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| r.parsed().shared_count())
        .sum();
    println!(
        "shared subexpressions: {marked} marked in the rules; last cycle {} reused, {} computed{}",
        last_shared.0,
        last_shared.1,
        if args.no_sharing {
            " (--no-sharing)"
        } else {
            ""
        }
    );
    println!("results digest: {:016x}", digest.0);
    println!();
    println!("| ms per cycle | mean | p50 | min | max | target |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| yunwei, wall clock | {mean:.1} | {p50:.1} | {min:.1} | {max:.1} | ≤ {TARGET_MS:.0} |"
    );
    if cpu_ms.len() == times_ms.len() {
        let (m, p, lo, hi) = stats(&cpu_ms);
        println!(
            "| yunwei, thread CPU time | {m:.1} | {p:.1} | {lo:.1} | {hi:.1} | ≤ {TARGET_MS:.0} |"
        );
    }
    println!(
        "\ntarget ≤ {TARGET_MS:.0} ms per cycle: {}",
        if mean <= TARGET_MS && p50 <= TARGET_MS {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("peer (Prometheus 2.42): sh rules/examples/rules_bench_peer.sh");
    std::process::ExitCode::SUCCESS
}

/// The history plus the samples of every cycle, in OpenMetrics text for
/// `promtool tsdb create-blocks-from openmetrics`.
fn write_openmetrics(path: &str, specs: &[SeriesSpec]) -> std::io::Result<()> {
    use std::io::Write;
    // The same fleet, moved so that the hour of history ends now. Prometheus started on blocks
    // made of it (`promtool tsdb create-blocks-from openmetrics`) evaluates the rules over the
    // same data as this benchmark for the next five minutes (the lookback); data past now
    // would make its head refuse the rules' output ("out of bounds").
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let shift = (now_ms / STEP_MS) * STEP_MS - T0_MS;
    eprintln!("openmetrics: history ends at {} (unix ms)", T0_MS + shift);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut by_name: BTreeMap<&str, Vec<&SeriesSpec>> = BTreeMap::new();
    for s in specs {
        by_name
            .entry(s.labels.metric_name().unwrap_or(""))
            .or_default()
            .push(s);
    }
    let end = T0_MS;
    for (name, series) in by_name {
        let kind = match series[0].shape {
            Shape::Counter { .. } => "counter",
            Shape::Gauge { .. } => "gauge",
        };
        // OpenMetrics counters are named without the _total suffix in TYPE lines.
        let family = if kind == "counter" {
            name.strip_suffix("_total").unwrap_or(name)
        } else {
            name
        };
        let kind = if family == name { "gauge" } else { kind };
        writeln!(w, "# TYPE {family} {kind}")?;
        for s in series {
            let mut ls = String::new();
            for l in s.labels.iter().filter(|l| l.name != "__name__") {
                if !ls.is_empty() {
                    ls.push(',');
                }
                let _ = write!(ls, "{}={:?}", l.name, l.value);
            }
            let mut t = T0_MS - HISTORY_MS;
            while t <= end {
                writeln!(
                    w,
                    "{name}{{{ls}}} {} {:.3}",
                    s.value(t),
                    (t + shift) as f64 / 1000.0
                )?;
                t += STEP_MS;
            }
        }
    }
    writeln!(w, "# EOF")?;
    w.flush()
}
