//! Host metrics read directly from Linux `/proc` (and `statvfs` for filesystems), named and
//! scaled like node_exporter's so that dashboards and rules written for it apply unchanged. The
//! parsers take file text, so tests feed them fixtures; [`Collector`] only reads the files.
//!
//! Not available: clock synchronisation (`node_timex_sync_status` needs `adjtimex(2)`, which has
//! no safe wrapper and the workspace forbids `unsafe`). On other operating systems than Linux
//! every collector reports [`CollectError::Unsupported`].

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

/// Kernel clock ticks per second in `/proc/stat` and `/proc/[pid]/stat` (USER_HZ).
fn user_hz() -> f64 {
    #[cfg(target_os = "linux")]
    {
        rustix::param::clock_ticks_per_second() as f64
    }
    #[cfg(not(target_os = "linux"))]
    {
        100.0
    }
}

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

/// Collects all host metrics, stamped with `ts_ms` (the collection time, Unix milliseconds),
/// with the default options and no process scan.
pub fn collect(ts_ms: i64) -> Result<Vec<Sample>, CollectError> {
    let mut out = Vec::with_capacity(256);
    Collector::new(CollectOptions::default()).collect(ts_ms, true, &mut out)?;
    Ok(out)
}

/// What to collect besides the always-on CPU, memory, load, network and boot time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectOptions {
    /// Filesystem types not reported (pseudo and network filesystems by default).
    pub exclude_fstypes: Vec<String>,
    /// Mount points not reported: exact paths, or prefixes when they end in `/`.
    pub exclude_mount_points: Vec<String>,
    /// Scan the process table (process count, named processes) at most this often; `None`
    /// turns the scan off.
    pub process_scan_interval: Option<std::time::Duration>,
    /// Named processes to report (`yunwei_process_*{name=..}`).
    pub processes: Vec<String>,
}

/// node_exporter's default `--collector.filesystem.fs-types-exclude`, plus network filesystems,
/// whose `statvfs` can hang when the server is gone and would stall the agent.
pub const DEFAULT_EXCLUDE_FSTYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
    "ramfs",
    "efivarfs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "ceph",
    "glusterfs",
    "fuse.sshfs",
    "fuse.gvfsd-fuse",
];

/// node_exporter's default `--collector.filesystem.mount-points-exclude`, as prefixes.
pub const DEFAULT_EXCLUDE_MOUNT_POINTS: &[&str] = &[
    "/dev",
    "/dev/",
    "/proc",
    "/proc/",
    "/sys",
    "/sys/",
    "/run/credentials/",
    "/var/lib/docker/",
    "/var/lib/containers/storage/",
];

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            exclude_fstypes: DEFAULT_EXCLUDE_FSTYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            exclude_mount_points: DEFAULT_EXCLUDE_MOUNT_POINTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            process_scan_interval: None,
            processes: Vec::new(),
        }
    }
}

/// Reads the host's metrics; kept across cycles so the process table is scanned less often than
/// the rest.
#[derive(Debug)]
pub struct Collector {
    options: CollectOptions,
    /// The last process scan: when, and its samples.
    last_scan: Option<(std::time::Instant, Vec<Sample>)>,
    /// `/proc/mounts`, re-read once a minute (it is the largest file read per cycle, and
    /// mounts rarely change).
    mounts: Option<(std::time::Instant, Vec<Mount>)>,
}

/// How long the parsed `/proc/mounts` is reused.
const MOUNTS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Collector {
    pub fn new(options: CollectOptions) -> Collector {
        Collector {
            options,
            last_scan: None,
            mounts: None,
        }
    }

    pub fn options(&self) -> &CollectOptions {
        &self.options
    }

    /// Replaces the options (on a config reload); the next collection rescans processes.
    pub fn set_options(&mut self, options: CollectOptions) {
        if options != self.options {
            self.options = options;
            self.last_scan = None;
        }
    }

    /// Appends the host metrics at `ts_ms` to `out`. The process table is scanned when the last
    /// scan is older than the scan interval; `cached` says whether the samples of an earlier
    /// scan are repeated otherwise (for `/metrics`, not for batches, where each scan is sent once).
    /// Fails only when the core files (`/proc/stat`, `/proc/meminfo`, ...) cannot be read; the
    /// other collectors report `node_scrape_collector_success{collector}` instead.
    #[cfg(target_os = "linux")]
    pub fn collect(
        &mut self,
        ts_ms: i64,
        cached: bool,
        out: &mut Vec<Sample>,
    ) -> Result<(), CollectError> {
        fn read(path: &'static str) -> Result<String, CollectError> {
            std::fs::read_to_string(path).map_err(|source| CollectError::Read { path, source })
        }
        parse_loadavg(&read("/proc/loadavg")?, ts_ms, out).map_err(|message| {
            CollectError::Parse {
                path: "/proc/loadavg",
                message,
            }
        })?;
        parse_meminfo(&read("/proc/meminfo")?, ts_ms, out);
        parse_stat(&read("/proc/stat")?, ts_ms, out);
        parse_net_dev(&read("/proc/net/dev")?, ts_ms, out);
        out.push(sample(
            "node_time_seconds",
            &[],
            ts_ms as f64 / 1000.0,
            ts_ms,
        ));
        let now = std::time::Instant::now();
        if self
            .mounts
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) >= MOUNTS_TTL)
        {
            self.mounts = std::fs::read_to_string("/proc/mounts")
                .ok()
                .map(|text| (now, parse_mounts(&text)));
        }
        let ok = match &self.mounts {
            Some((_, mounts)) => {
                self.filesystems(mounts, ts_ms, out);
                true
            }
            None => false,
        };
        out.push(collector_success("filesystem", ok, ts_ms));
        let ok = match std::fs::read_to_string("/proc/diskstats") {
            Ok(text) => {
                parse_diskstats(&text, ts_ms, out);
                true
            }
            Err(_) => false,
        };
        out.push(collector_success("diskstats", ok, ts_ms));
        if let Some(every) = self.options.process_scan_interval {
            let now = std::time::Instant::now();
            // A little slack, so a scan due every cycle is not skipped by timer jitter.
            let due = self.last_scan.as_ref().is_none_or(|(at, _)| {
                now.duration_since(*at) + std::time::Duration::from_millis(500) >= every
            });
            if due {
                let scanned = scan_processes(&self.options.processes, ts_ms);
                out.extend(scanned.iter().cloned());
                self.last_scan = Some((now, scanned));
            } else if cached && let Some((_, samples)) = &self.last_scan {
                out.extend(samples.iter().cloned());
            }
        }
        Ok(())
    }

    /// Host metrics are not available on this platform.
    #[cfg(not(target_os = "linux"))]
    pub fn collect(
        &mut self,
        _ts_ms: i64,
        _cached: bool,
        _out: &mut Vec<Sample>,
    ) -> Result<(), CollectError> {
        Err(CollectError::Unsupported(std::env::consts::OS))
    }

    /// `node_filesystem_*` for each mount point that is not excluded.
    #[cfg(target_os = "linux")]
    fn filesystems(&self, mounts: &[Mount], ts_ms: i64, out: &mut Vec<Sample>) {
        for m in mounts {
            if self.excluded(m) {
                continue;
            }
            let labels = [
                ("device", m.device.as_str()),
                ("fstype", m.fstype.as_str()),
                ("mountpoint", m.mount_point.as_str()),
            ];
            match rustix::fs::statvfs(m.mount_point.as_str()) {
                Ok(st) => {
                    let frsize = st.f_frsize as f64;
                    for (name, value) in [
                        ("node_filesystem_size_bytes", st.f_blocks as f64 * frsize),
                        ("node_filesystem_free_bytes", st.f_bfree as f64 * frsize),
                        ("node_filesystem_avail_bytes", st.f_bavail as f64 * frsize),
                        ("node_filesystem_files", st.f_files as f64),
                        ("node_filesystem_files_free", st.f_ffree as f64),
                        ("node_filesystem_readonly", f64::from(u8::from(m.readonly))),
                        ("node_filesystem_device_error", 0.0),
                    ] {
                        out.push(sample(name, &labels, value, ts_ms));
                    }
                }
                Err(_) => out.push(sample("node_filesystem_device_error", &labels, 1.0, ts_ms)),
            }
        }
    }

    fn excluded(&self, m: &Mount) -> bool {
        let o = &self.options;
        o.exclude_fstypes.contains(&m.fstype)
            || o.exclude_mount_points.iter().any(|p| {
                if p.ends_with('/') {
                    m.mount_point.starts_with(p.as_str())
                } else {
                    m.mount_point == *p
                }
            })
    }
}

fn collector_success(collector: &str, ok: bool, ts_ms: i64) -> Sample {
    sample(
        "node_scrape_collector_success",
        &[("collector", collector)],
        f64::from(u8::from(ok)),
        ts_ms,
    )
}

/// One line of `/proc/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fstype: String,
    pub readonly: bool,
}

/// Parses `/proc/mounts`; octal escapes (`\040` for a space) are decoded. A mount point mounted
/// more than once is reported once (the last, which is what is visible).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(device), Some(mount_point), Some(fstype), options) =
            (f.next(), f.next(), f.next(), f.next().unwrap_or(""))
        else {
            continue;
        };
        let m = Mount {
            device: unescape_octal(device),
            mount_point: unescape_octal(mount_point),
            fstype: fstype.to_string(),
            readonly: options.split(',').any(|o| o == "ro"),
        };
        out.retain(|o| o.mount_point != m.mount_point);
        out.push(m);
    }
    out
}

fn unescape_octal(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/proc/diskstats` for whole disks (partitions, ram, loop and floppy devices are skipped, as
/// node_exporter does). Sectors are 512 bytes in this file whatever the device's sector size.
pub fn parse_diskstats(text: &str, ts_ms: i64, out: &mut Vec<Sample>) {
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let device = f[2];
        if ignored_disk(device) {
            continue;
        }
        let n = |i: usize| f[i].parse::<u64>().unwrap_or(0) as f64;
        let labels = [("device", device)];
        for (name, value) in [
            ("node_disk_reads_completed_total", n(3)),
            ("node_disk_read_bytes_total", n(5) * 512.0),
            ("node_disk_read_time_seconds_total", n(6) / 1000.0),
            ("node_disk_writes_completed_total", n(7)),
            ("node_disk_written_bytes_total", n(9) * 512.0),
            ("node_disk_write_time_seconds_total", n(10) / 1000.0),
            ("node_disk_io_now", n(11)),
            ("node_disk_io_time_seconds_total", n(12) / 1000.0),
        ] {
            out.push(sample(name, &labels, value, ts_ms));
        }
    }
}

/// node_exporter's default `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p|mmcblk\d+p)\d+$`.
fn ignored_disk(d: &str) -> bool {
    let digits_after = |prefix_len: usize| {
        prefix_len < d.len() && d[prefix_len..].bytes().all(|c| c.is_ascii_digit())
    };
    for p in ["ram", "zram", "loop", "fd"] {
        if d.starts_with(p) && digits_after(p.len()) {
            return true;
        }
    }
    for p in ["hd", "sd", "vd", "xvd"] {
        if let Some(rest) = d.strip_prefix(p) {
            let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            if letters == 1 && digits_after(p.len() + 1) {
                return true;
            }
        }
    }
    for (p, sep) in [("nvme", 'p'), ("mmcblk", 'p')] {
        if let Some(rest) = d.strip_prefix(p)
            && let Some(at) = rest.rfind(sep)
            && at > 0
            && rest[at + 1..].bytes().all(|c| c.is_ascii_digit())
            && at + 1 < rest.len()
        {
            return true;
        }
    }
    false
}

/// One process from `/proc/[pid]/stat`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcStat {
    pub comm: String,
    pub state: char,
    pub threads: u64,
    /// utime + stime in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses `/proc/[pid]/stat`: `pid (comm) state ppid ... utime stime ... num_threads ...`. The
/// command name may itself contain spaces and parentheses, so it ends at the last `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15, num_threads 20.
    let num = |field: usize| rest.get(field - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        comm,
        state: rest.first()?.chars().next()?,
        threads: num(20)?,
        cpu_ticks: num(14)? + num(15)?,
    })
}

/// Resident memory in bytes from `/proc/[pid]/status` (`VmRSS:  1234 kB`); kernel threads
/// have none.
pub fn parse_status_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Scans `/proc/[pid]`: process and thread counts by state, and for each name in `names` whether
/// such a process runs, how many, their resident memory and CPU time. A process matches a name
/// by its command name (`comm`, cut by the kernel at 15 bytes; longer names are confirmed against
/// the program name in `cmdline`).
#[cfg(target_os = "linux")]
pub fn scan_processes(names: &[String], ts_ms: i64) -> Vec<Sample> {
    #[derive(Default, Clone, Copy)]
    struct Found {
        count: u64,
        rss: u64,
        cpu_ticks: u64,
    }
    let mut found = vec![Found::default(); names.len()];
    let mut pids = 0u64;
    let mut threads = 0u64;
    let mut states: BTreeMap<char, u64> = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![collector_success("processes", false, ts_ms)];
    };
    let mut path = String::with_capacity(32);
    let mut text = String::with_capacity(512);
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        path.clear();
        path.push_str("/proc/");
        path.push_str(pid);
        let base = path.len();
        path.push_str("/stat");
        text.clear();
        // The process may have exited since the listing.
        if read_into(&path, &mut text).is_err() {
            continue;
        }
        let Some(st) = parse_proc_stat(&text) else {
            continue;
        };
        pids += 1;
        threads += st.threads;
        *states.entry(st.state).or_default() += 1;
        for (i, wanted) in names.iter().enumerate() {
            if !comm_matches(&st.comm, wanted) {
                continue;
            }
            if wanted.len() > 15 {
                path.truncate(base);
                path.push_str("/cmdline");
                text.clear();
                if read_into(&path, &mut text).is_err() || program_name(&text) != wanted {
                    continue;
                }
            }
            path.truncate(base);
            path.push_str("/status");
            text.clear();
            let rss = read_into(&path, &mut text)
                .ok()
                .and_then(|()| parse_status_rss(&text))
                .unwrap_or(0);
            let f = &mut found[i];
            f.count += 1;
            f.rss += rss;
            f.cpu_ticks += st.cpu_ticks;
        }
    }
    let mut out = Vec::with_capacity(8 + 4 * names.len());
    out.push(sample("node_processes_pids", &[], pids as f64, ts_ms));
    out.push(sample("node_processes_threads", &[], threads as f64, ts_ms));
    for (state, n) in states {
        let state = state.to_string();
        out.push(sample(
            "node_processes_state",
            &[("state", &state)],
            n as f64,
            ts_ms,
        ));
    }
    for (name, f) in names.iter().zip(found) {
        let labels = [("name", name.as_str())];
        out.push(sample(
            "yunwei_process_present",
            &labels,
            f64::from(u8::from(f.count > 0)),
            ts_ms,
        ));
        out.push(sample(
            "yunwei_process_instances",
            &labels,
            f.count as f64,
            ts_ms,
        ));
        out.push(sample(
            "yunwei_process_resident_memory_bytes",
            &labels,
            f.rss as f64,
            ts_ms,
        ));
        out.push(sample(
            "yunwei_process_cpu_seconds_total",
            &labels,
            f.cpu_ticks as f64 / user_hz(),
            ts_ms,
        ));
    }
    out.push(collector_success("processes", true, ts_ms));
    out
}

/// Not available on this platform: the scan reports failure.
#[cfg(not(target_os = "linux"))]
pub fn scan_processes(_names: &[String], ts_ms: i64) -> Vec<Sample> {
    vec![collector_success("processes", false, ts_ms)]
}

/// Processes whose command name is `name` (for the process probe): reads only
/// `/proc/[pid]/comm`, and `cmdline` to confirm names longer than the kernel keeps.
#[cfg(target_os = "linux")]
pub fn count_processes(name: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut text = String::with_capacity(64);
    let mut n = 0;
    for entry in dir.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .filter(|n| n.bytes().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        text.clear();
        if read_into(&format!("/proc/{pid}/comm"), &mut text).is_err()
            || !comm_matches(text.trim_end_matches('\n'), name)
        {
            continue;
        }
        if name.len() > 15 {
            text.clear();
            if read_into(&format!("/proc/{pid}/cmdline"), &mut text).is_err()
                || program_name(&text) != name
            {
                continue;
            }
        }
        n += 1;
    }
    n
}

/// Processes cannot be listed on this platform.
#[cfg(not(target_os = "linux"))]
pub fn count_processes(_name: &str) -> usize {
    0
}

/// Reads a file into `buf` without a new allocation when it fits.
/// A `/proc` file fits in one read when it is smaller than the buffer, which saves the second
/// `read` that `read_to_string` makes to see the end of the file (a syscall per process).
fn read_into(path: &str, buf: &mut String) -> std::io::Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut chunk = [0u8; 2048];
    let n = file.read(&mut chunk)?;
    buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
    if n == chunk.len() {
        file.read_to_string(buf)?;
    }
    Ok(())
}

/// The kernel keeps the first 15 bytes of a command name.
fn comm_matches(comm: &str, wanted: &str) -> bool {
    if wanted.len() <= 15 {
        comm == wanted
    } else {
        wanted.is_char_boundary(15) && comm == &wanted[..15]
    }
}

/// Base name of the program in `/proc/[pid]/cmdline` text (arguments are NUL-separated).
fn program_name(cmdline: &str) -> &str {
    let argv0 = cmdline.split('\0').next().unwrap_or("");
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// `(type, help)` of every host metric, for `/metrics`.
pub fn meta(name: &str) -> Option<(&'static str, &'static str)> {
    if MEMINFO.iter().any(|(_, n)| *n == name) {
        return Some((
            "gauge",
            "Memory information field from /proc/meminfo, in bytes.",
        ));
    }
    Some(match name {
        "node_cpu_seconds_total" => ("counter", "Seconds the CPUs spent in each mode."),
        "node_load1" => ("gauge", "1m load average."),
        "node_load5" => ("gauge", "5m load average."),
        "node_load15" => ("gauge", "15m load average."),
        "node_boot_time_seconds" => ("gauge", "Node boot time, in unixtime."),
        "node_procs_running" => ("gauge", "Number of processes in runnable state."),
        "node_procs_blocked" => (
            "gauge",
            "Number of processes blocked waiting for I/O to complete.",
        ),
        "node_context_switches_total" => ("counter", "Total number of context switches."),
        "node_forks_total" => ("counter", "Total number of forks."),
        "node_time_seconds" => ("gauge", "System time in seconds since epoch (1970)."),
        "node_network_receive_bytes_total" => {
            ("counter", "Network device statistic receive_bytes.")
        }
        "node_network_receive_packets_total" => {
            ("counter", "Network device statistic receive_packets.")
        }
        "node_network_receive_errs_total" => ("counter", "Network device statistic receive_errs."),
        "node_network_receive_drop_total" => ("counter", "Network device statistic receive_drop."),
        "node_network_transmit_bytes_total" => {
            ("counter", "Network device statistic transmit_bytes.")
        }
        "node_network_transmit_packets_total" => {
            ("counter", "Network device statistic transmit_packets.")
        }
        "node_network_transmit_errs_total" => {
            ("counter", "Network device statistic transmit_errs.")
        }
        "node_network_transmit_drop_total" => {
            ("counter", "Network device statistic transmit_drop.")
        }
        "node_filesystem_size_bytes" => ("gauge", "Filesystem size in bytes."),
        "node_filesystem_free_bytes" => ("gauge", "Filesystem free space in bytes."),
        "node_filesystem_avail_bytes" => (
            "gauge",
            "Filesystem space available to non-root users in bytes.",
        ),
        "node_filesystem_files" => ("gauge", "Filesystem total file nodes."),
        "node_filesystem_files_free" => ("gauge", "Filesystem total free file nodes."),
        "node_filesystem_readonly" => ("gauge", "Filesystem read-only status."),
        "node_filesystem_device_error" => (
            "gauge",
            "Whether an error occurred while getting statistics for the given device.",
        ),
        "node_disk_reads_completed_total" => (
            "counter",
            "The total number of reads completed successfully.",
        ),
        "node_disk_read_bytes_total" => ("counter", "The total number of bytes read successfully."),
        "node_disk_read_time_seconds_total" => {
            ("counter", "The total number of seconds spent by all reads.")
        }
        "node_disk_writes_completed_total" => (
            "counter",
            "The total number of writes completed successfully.",
        ),
        "node_disk_written_bytes_total" => {
            ("counter", "The total number of bytes written successfully.")
        }
        "node_disk_write_time_seconds_total" => (
            "counter",
            "This is the total number of seconds spent by all writes.",
        ),
        "node_disk_io_now" => ("gauge", "The number of I/Os currently in progress."),
        "node_disk_io_time_seconds_total" => ("counter", "Total seconds spent doing I/Os."),
        "node_processes_pids" => ("gauge", "Number of PIDs."),
        "node_processes_threads" => ("gauge", "Allocated threads in system."),
        "node_processes_state" => ("gauge", "Number of processes in each state."),
        "node_scrape_collector_success" => ("gauge", "Whether a collector succeeded."),
        "yunwei_process_present" => (
            "gauge",
            "Whether a process with this name runs (1) or not (0).",
        ),
        "yunwei_process_instances" => ("gauge", "Processes with this name."),
        "yunwei_process_resident_memory_bytes" => {
            ("gauge", "Resident memory of the processes with this name.")
        }
        "yunwei_process_cpu_seconds_total" => (
            "counter",
            "CPU time (user and system) of the processes with this name.",
        ),
        _ => return None,
    })
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts_ms: i64) -> Sample {
    Sample {
        name: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
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
                    ticks as f64 / user_hz(),
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

    #[test]
    fn mounts_are_unescaped_deduplicated_and_filtered() {
        let text = "sysfs /sys sysfs rw,nosuid 0 0\n\
                    proc /proc proc rw 0 0\n\
                    /dev/vda1 / ext4 rw,relatime 0 0\n\
                    /dev/vdb1 /data\\040disk xfs ro,noatime 0 0\n\
                    tmpfs /run tmpfs rw 0 0\n\
                    overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n\
                    /dev/vdc1 /run/credentials/x.service ext4 rw 0 0\n\
                    /dev/vda2 / ext4 rw 0 0\n";
        let mounts = parse_mounts(text);
        let c = Collector::new(CollectOptions::default());
        let kept: Vec<(&str, &str, bool)> = mounts
            .iter()
            .filter(|m| !c.excluded(m))
            .map(|m| (m.device.as_str(), m.mount_point.as_str(), m.readonly))
            .collect();
        assert_eq!(
            kept,
            [
                ("/dev/vdb1", "/data disk", true),
                ("tmpfs", "/run", false),
                ("/dev/vda2", "/", false),
            ]
        );
    }

    #[test]
    fn diskstats_whole_disks_in_bytes_and_seconds() {
        let text = "   8       0 sda 100 5 2048 30 200 7 4096 40 1 500 70 0 0 0 0\n\
                       8       1 sda1 1 0 8 0 2 0 8 0 0 0 0 0 0 0 0\n\
                       7       0 loop0 9 0 9 0 0 0 0 0 0 0 0\n\
                     259       0 nvme0n1 1 0 16 2 3 0 32 4 0 5 6\n\
                     259       1 nvme0n1p1 1 0 16 2 3 0 32 4 0 5 6\n\
                     253       0 dm-0 1 0 1 1 1 0 1 1 0 1 1\n";
        let mut out = Vec::new();
        parse_diskstats(text, TS, &mut out);
        let devices: std::collections::BTreeSet<&str> =
            out.iter().map(|s| s.labels["device"].as_str()).collect();
        assert_eq!(
            devices.into_iter().collect::<Vec<_>>(),
            ["dm-0", "nvme0n1", "sda"]
        );
        let get = |name: &str| {
            out.iter()
                .find(|s| s.name == name && s.labels["device"] == "sda")
                .unwrap()
                .value
        };
        assert_eq!(get("node_disk_read_bytes_total"), 2048.0 * 512.0);
        assert_eq!(get("node_disk_written_bytes_total"), 4096.0 * 512.0);
        assert_eq!(get("node_disk_io_time_seconds_total"), 0.5);
        assert_eq!(get("node_disk_reads_completed_total"), 100.0);
        for d in ["sda", "vdb", "xvda", "nvme0n1", "mmcblk0", "dm-3", "md0"] {
            assert!(!ignored_disk(d), "{d}");
        }
        for d in [
            "sda1",
            "vdb12",
            "xvda1",
            "nvme0n1p3",
            "mmcblk0p1",
            "loop7",
            "ram0",
            "zram0",
        ] {
            assert!(ignored_disk(d), "{d}");
        }
    }

    #[test]
    fn proc_stat_with_odd_command_names() {
        let text = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 \
                    12345 100000000 2000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0\n";
        let st = parse_proc_stat(text).unwrap();
        assert_eq!(
            st,
            ProcStat {
                comm: "my (odd) srv".into(),
                state: 'S',
                threads: 7,
                cpu_ticks: 300,
            }
        );
        assert_eq!(parse_proc_stat("1 (x"), None);
        assert_eq!(
            parse_status_rss("Name:\tnginx\nVmRSS:\t    5120 kB\nThreads:\t1\n"),
            Some(5 << 20)
        );
        assert_eq!(parse_status_rss("Name:\tkthreadd\n"), None);
        assert!(comm_matches("nginx", "nginx"));
        assert!(!comm_matches("nginx", "ngin"));
        assert!(comm_matches("very-long-proce", "very-long-process-name"));
        assert_eq!(
            program_name("/usr/sbin/very-long-process-name\0--flag\0"),
            "very-long-process-name"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_process_scan_finds_this_test() {
        let me = std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim()
            .to_string();
        let out = scan_processes(&[me.clone(), "no-such-process-x".into()], TS);
        let value = |name: &str, who: &str| {
            out.iter()
                .find(|s| s.name == name && s.labels.get("name").map(String::as_str) == Some(who))
                .unwrap()
                .value
        };
        assert_eq!(value("yunwei_process_present", &me), 1.0);
        assert!(value("yunwei_process_instances", &me) >= 1.0);
        assert!(value("yunwei_process_resident_memory_bytes", &me) > 1e6);
        assert_eq!(value("yunwei_process_present", "no-such-process-x"), 0.0);
        assert_eq!(value("yunwei_process_instances", "no-such-process-x"), 0.0);
        let pids = out
            .iter()
            .find(|s| s.name == "node_processes_pids")
            .unwrap();
        assert!(pids.value >= 1.0);
    }

    #[test]
    fn every_collected_metric_has_a_type_and_help() {
        let mut c = Collector::new(CollectOptions {
            process_scan_interval: Some(std::time::Duration::from_secs(60)),
            processes: vec!["init".into()],
            ..CollectOptions::default()
        });
        let mut out = Vec::new();
        if c.collect(TS, true, &mut out).is_ok() {
            for s in &out {
                assert!(meta(&s.name).is_some(), "{} has no metadata", s.name);
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_proc_passes_server_validation() {
        let samples = collect(TS).unwrap();
        assert!(
            samples
                .iter()
                .any(|s| s.name == "node_scrape_collector_success"
                    && s.labels["collector"] == "filesystem"
                    && s.value == 1.0),
            "filesystems are read"
        );
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
            probe_intervals_ms: Default::default(),
        };
        yunwei_proto::validate_batch(&batch, &yunwei_proto::Limits::default(), TS).unwrap();
    }
}
