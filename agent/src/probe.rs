//! Service probes with blackbox_exporter's metric names: HTTP(S), TCP connect, DNS resolution and
//! process presence. Each probe runs at its own interval on a small pool of worker threads
//! ([`Probes`]); results are queued
//! for the next batch and kept for `/metrics`. Every sample carries `probe="NAME"` and the
//! probe's labels. When a probe changes state (up → down, down → up, or is down at its first
//! run) a `ProbeState` event is queued and the main loop is woken to push it at once.
//!
//! HTTP is spoken here over `std::net` and rustls rather than through the push client, so that
//! the phases can be timed (resolve, connect, tls, processing, transfer) and the server's
//! certificate chain read.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::collections::BinaryHeap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use yunwei_proto::{Event, Sample};

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    Http(HttpProbe),
    /// Connect to `address` (`host:port`); optionally read until the banner contains a string.
    Tcp {
        address: String,
        expect_banner: Option<String>,
    },
    /// Resolve `name` with the system resolver.
    Dns {
        name: String,
    },
    /// A process with this command name runs.
    Process {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    pub url: String,
    /// Accepted status codes; empty means any 2xx.
    pub expect_status: Vec<u16>,
    /// A string the body must contain.
    pub expect_body: Option<String>,
    /// Redirects followed; 0 means a 3xx answer is the result.
    pub max_redirects: u32,
}

/// One configured probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub name: String,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Labels on every sample of the probe (e.g. `system`, `tier`).
    pub labels: BTreeMap<String, String>,
}

impl ProbeSpec {
    pub fn needs_tls(&self) -> bool {
        matches!(&self.kind, ProbeKind::Http(h) if h.url.starts_with("https://"))
    }
}

/// One metric of a probe run: name, an extra label (such as `phase`), value.
pub type ProbeMetric = (&'static str, Option<(&'static str, &'static str)>, f64);

/// The result of one probe run: success, why it failed, and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub success: bool,
    pub reason: Option<String>,
    pub metrics: Vec<ProbeMetric>,
}

impl Outcome {
    /// The value of an unlabelled metric of the outcome.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, l, _)| *n == name && l.is_none())
            .map(|m| m.2)
    }
}

/// `(type, help)` of every probe metric.
pub fn meta(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "probe_success" => ("gauge", "Displays whether or not the probe was a success."),
        "probe_duration_seconds" => (
            "gauge",
            "Returns how long the probe took to complete in seconds.",
        ),
        "probe_dns_lookup_time_seconds" => (
            "gauge",
            "Returns the time taken for probe dns lookup in seconds.",
        ),
        "probe_dns_answer_rrs" => (
            "gauge",
            "Returns number of entries in the answer resource record list.",
        ),
        "probe_http_status_code" => ("gauge", "Response HTTP status code."),
        "probe_http_duration_seconds" => (
            "gauge",
            "Duration of http request by phase, summed over all redirects.",
        ),
        "probe_http_content_length" => ("gauge", "Length of http content response."),
        "probe_http_redirects" => ("gauge", "The number of redirects."),
        "probe_http_ssl" => ("gauge", "Indicates if SSL was used for the final redirect."),
        "probe_ssl_earliest_cert_expiry" => ("gauge", "Returns last SSL chain expiry in unixtime."),
        "probe_failed_due_to_regex" => ("gauge", "Indicates if probe failed due to regex."),
        _ => return None,
    })
}

/// Runs one probe now. `tls` is needed for `https://` URLs.
pub fn run_probe(spec: &ProbeSpec, tls: Option<&Arc<rustls::ClientConfig>>) -> Outcome {
    let started = Instant::now();
    let deadline = started + spec.timeout;
    let mut out = match &spec.kind {
        ProbeKind::Http(h) => http_probe(h, tls, deadline),
        ProbeKind::Tcp {
            address,
            expect_banner,
        } => tcp_probe(address, expect_banner.as_deref(), deadline),
        ProbeKind::Dns { name } => dns_probe(name),
        ProbeKind::Process { name } => {
            let n = crate::collect::count_processes(name);
            Outcome {
                success: n > 0,
                reason: (n == 0).then(|| format!("no process named {name:?}")),
                metrics: vec![],
            }
        }
    };
    let took = started.elapsed();
    if out.success && took > spec.timeout {
        out.success = false;
        out.reason = Some(format!("timed out after {:.3} s", took.as_secs_f64()));
    }
    out.metrics
        .push(("probe_duration_seconds", None, took.as_secs_f64()));
    out.metrics
        .push(("probe_success", None, f64::from(u8::from(out.success))));
    out
}

fn fail(reason: String, metrics: Vec<ProbeMetric>) -> Outcome {
    Outcome {
        success: false,
        reason: Some(reason),
        metrics,
    }
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "timed out".to_string())
}

/// Resolves `host:port`, preferring IPv4 as blackbox_exporter does by default.
fn resolve(host_port: &str) -> Result<Vec<SocketAddr>, String> {
    let mut addrs: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host_port}: {e}"))?
        .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    if addrs.is_empty() {
        return Err(format!("{host_port} resolved to no address"));
    }
    Ok(addrs)
}

fn dns_probe(name: &str) -> Outcome {
    let t = Instant::now();
    let result = (name, 0u16).to_socket_addrs();
    let lookup = t.elapsed().as_secs_f64();
    match result {
        Ok(addrs) => {
            let n = addrs.count();
            Outcome {
                success: n > 0,
                reason: (n == 0).then(|| format!("{name} has no address")),
                metrics: vec![
                    ("probe_dns_lookup_time_seconds", None, lookup),
                    ("probe_dns_answer_rrs", None, n as f64),
                ],
            }
        }
        Err(e) => fail(
            format!("resolving {name}: {e}"),
            vec![
                ("probe_dns_lookup_time_seconds", None, lookup),
                ("probe_dns_answer_rrs", None, 0.0),
            ],
        ),
    }
}

fn tcp_probe(address: &str, expect: Option<&str>, deadline: Instant) -> Outcome {
    let t = Instant::now();
    let addrs = match resolve(address) {
        Ok(a) => a,
        Err(e) => return fail(e, vec![]),
    };
    let mut metrics = vec![(
        "probe_dns_lookup_time_seconds",
        None,
        t.elapsed().as_secs_f64(),
    )];
    let mut stream = match remaining(deadline)
        .and_then(|left| TcpStream::connect_timeout(&addrs[0], left).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => return fail(format!("connecting to {address}: {e}"), metrics),
    };
    let Some(expect) = expect else {
        return Outcome {
            success: true,
            reason: None,
            metrics,
        };
    };
    let mut banner = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if String::from_utf8_lossy(&banner).contains(expect) {
            metrics.push(("probe_failed_due_to_regex", None, 0.0));
            return Outcome {
                success: true,
                reason: None,
                metrics,
            };
        }
        let read = remaining(deadline).and_then(|left| {
            stream
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            stream.read(&mut buf).map_err(|e| e.to_string())
        });
        match read {
            Ok(n) if n > 0 && banner.len() < 64 << 10 => banner.extend_from_slice(&buf[..n]),
            _ => {
                metrics.push(("probe_failed_due_to_regex", None, 1.0));
                return fail(
                    format!("banner of {address} does not contain {expect:?}"),
                    metrics,
                );
            }
        }
    }
}

/// Parts of an `http(s)://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

/// Parses an absolute http(s) URL (IPv6 hosts in brackets); the fragment is dropped.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') {
        return Err("user information in the URL is not supported".into());
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed [ in host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
            None if after.is_empty() => default_port,
            None => return Err("garbage after ]".into()),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("bad port {p:?}"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if target.contains(char::is_whitespace) || host.contains(char::is_whitespace) {
        return Err("must not contain whitespace".into());
    }
    Ok(Url {
        https,
        host,
        port,
        target,
    })
}

/// Per-phase times, summed over redirects.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    resolve: f64,
    connect: f64,
    tls: f64,
    processing: f64,
    transfer: f64,
}

struct Response {
    status: u16,
    location: Option<String>,
    body: Vec<u8>,
    body_len: u64,
}

/// A TCP stream, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The most of a body kept for the keyword check.
const MAX_BODY: usize = 1 << 20;

fn http_probe(
    h: &HttpProbe,
    tls: Option<&Arc<rustls::ClientConfig>>,
    deadline: Instant,
) -> Outcome {
    let mut phases = Phases::default();
    let mut url = match parse_url(&h.url) {
        Ok(u) => u,
        Err(e) => return fail(format!("url {}: {e}", h.url), vec![]),
    };
    let mut redirects = 0u32;
    let mut cert_expiry: Option<i64> = None;
    let result = loop {
        match http_get(&url, tls, deadline, &mut phases, &mut cert_expiry) {
            Err(e) => break Err(e),
            Ok(resp) => {
                if (300..400).contains(&resp.status)
                    && redirects < h.max_redirects
                    && let Some(loc) = &resp.location
                {
                    match redirect_target(&url, loc) {
                        Ok(next) => {
                            redirects += 1;
                            url = next;
                            continue;
                        }
                        Err(e) => break Err(format!("redirect to {loc:?}: {e}")),
                    }
                }
                break Ok(resp);
            }
        }
    };
    let mut metrics = vec![
        ("probe_dns_lookup_time_seconds", None, phases.resolve),
        (
            "probe_http_duration_seconds",
            Some(("phase", "resolve")),
            phases.resolve,
        ),
        (
            "probe_http_duration_seconds",
            Some(("phase", "connect")),
            phases.connect,
        ),
        (
            "probe_http_duration_seconds",
            Some(("phase", "tls")),
            phases.tls,
        ),
        (
            "probe_http_duration_seconds",
            Some(("phase", "processing")),
            phases.processing,
        ),
        (
            "probe_http_duration_seconds",
            Some(("phase", "transfer")),
            phases.transfer,
        ),
        ("probe_http_redirects", None, f64::from(redirects)),
        ("probe_http_ssl", None, f64::from(u8::from(url.https))),
    ];
    if let Some(t) = cert_expiry {
        metrics.push(("probe_ssl_earliest_cert_expiry", None, t as f64));
    }
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            metrics.push(("probe_http_status_code", None, 0.0));
            return fail(e, metrics);
        }
    };
    metrics.push(("probe_http_status_code", None, f64::from(resp.status)));
    metrics.push(("probe_http_content_length", None, resp.body_len as f64));
    let status_ok = if h.expect_status.is_empty() {
        (200..300).contains(&resp.status)
    } else {
        h.expect_status.contains(&resp.status)
    };
    if !status_ok {
        return fail(format!("http status {}", resp.status), metrics);
    }
    if let Some(keyword) = &h.expect_body {
        let found = String::from_utf8_lossy(&resp.body).contains(keyword.as_str());
        metrics.push((
            "probe_failed_due_to_regex",
            None,
            f64::from(u8::from(!found)),
        ));
        if !found {
            return fail(format!("body does not contain {keyword:?}"), metrics);
        }
    }
    Outcome {
        success: true,
        reason: None,
        metrics,
    }
}

fn redirect_target(base: &Url, location: &str) -> Result<Url, String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return parse_url(location);
    }
    let target = if location.starts_with('/') {
        location.to_string()
    } else {
        let path = base.target.split('?').next().unwrap_or("/");
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{location}")
    };
    Ok(Url {
        target,
        ..base.clone()
    })
}

/// One `GET` over a fresh connection (`Connection: close`), timing each phase.
fn http_get(
    url: &Url,
    tls: Option<&Arc<rustls::ClientConfig>>,
    deadline: Instant,
    phases: &mut Phases,
    cert_expiry: &mut Option<i64>,
) -> Result<Response, String> {
    let t = Instant::now();
    let host_port = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let addrs = resolve(&host_port)?;
    phases.resolve += t.elapsed().as_secs_f64();

    let t = Instant::now();
    let tcp = TcpStream::connect_timeout(&addrs[0], remaining(deadline)?)
        .map_err(|e| format!("connecting to {host_port}: {e}"))?;
    phases.connect += t.elapsed().as_secs_f64();
    let left = remaining(deadline)?;
    tcp.set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);

    let mut conn = if url.https {
        let config = tls.ok_or("https needs a CA bundle, and none could be loaded")?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("server name {:?}: {e}", url.host))?;
        let t = Instant::now();
        let client =
            rustls::ClientConnection::new(config.clone(), name).map_err(|e| format!("tls: {e}"))?;
        let mut stream = rustls::StreamOwned::new(client, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| format!("tls handshake with {host_port}: {e}"))?;
        }
        phases.tls += t.elapsed().as_secs_f64();
        if let Some(chain) = stream.conn.peer_certificates() {
            let earliest = chain
                .iter()
                .filter_map(|c| crate::tls::cert_not_after(c))
                .min();
            if let Some(e) = earliest {
                *cert_expiry = Some(cert_expiry.map_or(e, |c| c.min(e)));
            }
        }
        Conn::Tls(Box::new(stream))
    } else {
        Conn::Plain(tcp)
    };

    let t = Instant::now();
    let host_header = if url.port == if url.https { 443 } else { 80 } {
        url.host.clone()
    } else {
        host_port.clone()
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: yunwei-agent/{}\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        url.target,
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(request.as_bytes())
        .and_then(|()| conn.flush())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = vec![0u8; 16 << 10];
    let mut data = Vec::new();
    let n = read_some(&mut conn, &mut buf)?;
    if n == 0 {
        return Err("connection closed without a response".into());
    }
    phases.processing += t.elapsed().as_secs_f64();

    let t = Instant::now();
    data.extend_from_slice(&buf[..n]);
    let head_end = loop {
        if let Some(i) = find(&data, b"\r\n\r\n") {
            break i + 4;
        }
        if data.len() > 64 << 10 {
            return Err("response head longer than 64 KiB".into());
        }
        let n = read_some(&mut conn, &mut buf)?;
        if n == 0 {
            return Err("connection closed inside the response head".into());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut location = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = v.parse().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "location" => location = Some(v.to_string()),
            _ => {}
        }
    }
    let mut raw = data[head_end..].to_vec();
    let mut total = raw.len() as u64;
    // Read the body: to its length, to the end of the chunks, or to the end of the connection.
    loop {
        let complete = match (chunked, content_length) {
            (true, _) => dechunk(&raw).is_some(),
            (false, Some(len)) => total >= len,
            (false, None) => false,
        };
        if complete || status == 204 || status == 304 || (100..200).contains(&status) {
            break;
        }
        let n = match read_some(&mut conn, &mut buf) {
            Ok(n) => n,
            // Without a length the end of the body is the end of the connection; some servers
            // end TLS without close_notify.
            Err(_) if content_length.is_none() && !chunked && total > 0 => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if content_length.is_some() || chunked {
                return Err("connection closed inside the body".into());
            }
            break;
        }
        total += n as u64;
        if raw.len() < MAX_BODY * 2 {
            raw.extend_from_slice(&buf[..n]);
        }
    }
    phases.transfer += t.elapsed().as_secs_f64();
    let mut body = if chunked {
        dechunk(&raw).unwrap_or_default()
    } else {
        raw
    };
    let body_len = if chunked { body.len() as u64 } else { total };
    body.truncate(MAX_BODY);
    Ok(Response {
        status,
        location,
        body,
        body_len,
    })
}

fn read_some(conn: &mut Conn, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        match conn.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(format!("reading the response: {e}")),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The decoded body if `raw` holds a complete chunked body.
fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + find(&raw[at..], b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return Some(out);
        }
        let end = at.checked_add(size)?;
        out.extend_from_slice(raw.get(at..end)?);
        at = end + 2;
        if at > raw.len() {
            return None;
        }
    }
}

/// Probe results shared between the probe threads, the main loop and `/metrics`.
#[derive(Debug, Default)]
pub struct ProbeHub {
    inner: Mutex<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
    pending_samples: Vec<Sample>,
    pending_events: Vec<Event>,
    latest: BTreeMap<String, Vec<Sample>>,
    up: BTreeMap<String, bool>,
}

impl ProbeHub {
    /// Records an outcome at `ts_ms`; returns true when it is a state change to push at once.
    pub fn record(&self, spec: &ProbeSpec, outcome: &Outcome, ts_ms: i64) -> bool {
        let mut base = spec.labels.clone();
        base.insert("probe".into(), spec.name.clone());
        let samples: Vec<Sample> = outcome
            .metrics
            .iter()
            .map(|(name, extra, value)| {
                let mut labels = base.clone();
                if let Some((k, v)) = extra {
                    labels.insert((*k).to_string(), (*v).to_string());
                }
                Sample {
                    name: (*name).to_string(),
                    labels: labels.into(),
                    value: *value,
                    ts_ms,
                }
            })
            .collect();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: if batches stop being made (they never should), keep the newest results.
        if inner.pending_samples.len() > 100_000 {
            inner.pending_samples.drain(..50_000);
        }
        inner.pending_samples.extend(samples.iter().cloned());
        inner.latest.insert(spec.name.clone(), samples);
        let previous = inner.up.insert(spec.name.clone(), outcome.success);
        let changed = match previous {
            Some(was) => was != outcome.success,
            None => !outcome.success,
        };
        if changed {
            inner.pending_events.push(Event::ProbeState {
                probe: spec.name.clone(),
                labels: spec.labels.clone(),
                up: outcome.success,
                ts_ms,
                reason: outcome.reason.clone(),
            });
        }
        changed
    }

    /// Takes the samples and events waiting for a batch.
    pub fn drain(&self) -> (Vec<Sample>, Vec<Event>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::take(&mut inner.pending_samples),
            std::mem::take(&mut inner.pending_events),
        )
    }

    /// Whether state changes wait to be pushed.
    pub fn has_events(&self) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        !inner.pending_events.is_empty()
    }

    /// The latest result of every probe, for `/metrics`.
    pub fn latest(&self) -> Vec<Sample> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.latest.values().flatten().cloned().collect()
    }

    /// Forgets probes no longer configured (after a reload).
    pub fn retain(&self, names: &[&str]) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.latest.retain(|k, _| names.contains(&k.as_str()));
        inner.up.retain(|k, _| names.contains(&k.as_str()));
    }
}

/// The running probes: a few worker threads sharing one schedule. Probes mostly wait on the
/// network, so a thread per probe would spend memory (stacks, allocator arenas) for nothing;
/// there are as many workers as it takes to run every probe on time even when all of them run
/// into their timeouts (`Σ timeout / interval`, at least 2, at most 16).
pub struct Probes {
    shared: Arc<(Mutex<Schedule>, Condvar)>,
    handles: Vec<JoinHandle<()>>,
}

/// Probe indexes by next run time, earliest first.
struct Schedule {
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    stopped: bool,
}

impl Probes {
    /// Starts the workers. A state change sends on `wake`.
    pub fn start(
        specs: &[ProbeSpec],
        hub: &Arc<ProbeHub>,
        tls: Option<Arc<rustls::ClientConfig>>,
        wake: &Sender<()>,
    ) -> Probes {
        let now = Instant::now();
        let shared = Arc::new((
            Mutex::new(Schedule {
                due: (0..specs.len()).map(|i| Reverse((now, i))).collect(),
                stopped: false,
            }),
            Condvar::new(),
        ));
        let load: f64 = specs
            .iter()
            .map(|s| s.timeout.as_secs_f64() / s.interval.as_secs_f64())
            .sum();
        let workers = (load.ceil() as usize).clamp(2, 16).min(specs.len());
        let specs: Arc<[ProbeSpec]> = specs.into();
        let mut handles = Vec::new();
        for i in 0..workers {
            let (specs, hub, tls, wake, shared) = (
                specs.clone(),
                hub.clone(),
                tls.clone(),
                wake.clone(),
                shared.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("probes-{i}"))
                .stack_size(512 << 10)
                .spawn(move || worker(&specs, &hub, tls.as_ref(), &wake, &shared));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => eprintln!("error: starting a probe worker: {e}"),
            }
        }
        Probes { shared, handles }
    }

    /// Stops the workers; probes in flight finish first (bounded by their timeouts).
    pub fn stop(self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        cv.notify_all();
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn worker(
    specs: &[ProbeSpec],
    hub: &ProbeHub,
    tls: Option<&Arc<rustls::ClientConfig>>,
    wake: &Sender<()>,
    shared: &(Mutex<Schedule>, Condvar),
) {
    let (lock, cv) = shared;
    loop {
        // Take the next due probe, or wait for it.
        let (scheduled, i) = {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if s.stopped {
                    return;
                }
                let now = Instant::now();
                match s.due.peek().copied() {
                    Some(Reverse((at, i))) if at <= now => {
                        s.due.pop();
                        break (at, i);
                    }
                    Some(Reverse((at, _))) => {
                        s = cv
                            .wait_timeout(s, at - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    None => s = cv.wait(s).unwrap_or_else(|e| e.into_inner()),
                }
            }
        };
        let spec = &specs[i];
        let outcome = run_probe(spec, tls);
        if hub.record(spec, &outcome, crate::push::unix_ms()) {
            let _ = wake.send(());
        }
        let now = Instant::now();
        let mut next = scheduled + spec.interval;
        if next < now {
            // Fell behind: skip the missed runs rather than running them back to back.
            next = now + spec.interval;
        }
        lock.lock()
            .unwrap_or_else(|e| e.into_inner())
            .due
            .push(Reverse((next, i)));
        cv.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn spec(kind: ProbeKind) -> ProbeSpec {
        ProbeSpec {
            name: "p".into(),
            kind,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
        }
    }

    /// Serves each connection with the next canned response.
    fn serve(responses: Vec<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for (resp, conn) in responses.into_iter().zip(l.incoming()) {
                let mut c = conn.unwrap();
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while find(&got, b"\r\n\r\n").is_none() {
                    let n = c.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                c.write_all(resp.as_bytes()).unwrap();
            }
        });
        addr
    }

    fn http(url: String) -> HttpProbe {
        HttpProbe {
            url,
            expect_status: vec![],
            expect_body: None,
            max_redirects: 5,
        }
    }

    #[test]
    fn urls() {
        let u = parse_url("https://a.example:8443/x/y?q=1#frag").unwrap();
        assert_eq!(
            u,
            Url {
                https: true,
                host: "a.example".into(),
                port: 8443,
                target: "/x/y?q=1".into()
            }
        );
        assert_eq!(parse_url("http://h").unwrap().target, "/");
        assert_eq!(parse_url("http://h?x").unwrap().target, "/?x");
        assert_eq!(parse_url("http://[::1]:81/").unwrap().host, "::1");
        assert_eq!(parse_url("http://[::1]/").unwrap().port, 80);
        assert!(parse_url("ftp://h").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:x/").is_err());
        let base = parse_url("http://h/a/b?c").unwrap();
        assert_eq!(redirect_target(&base, "d").unwrap().target, "/a/d");
        assert_eq!(redirect_target(&base, "/e").unwrap().target, "/e");
        assert!(redirect_target(&base, "https://o/").unwrap().https);
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert_eq!(dechunk(b"3\r\nabc\r\n"), None);
    }

    #[test]
    fn http_follows_redirects_checks_status_and_body_and_times_phases() {
        let addr = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /ok\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        ]);
        let out = run_probe(
            &spec(ProbeKind::Http(HttpProbe {
                expect_body: Some("o wor".into()),
                ..http(format!("http://{addr}/start"))
            })),
            None,
        );
        assert!(out.success, "{out:?}");
        assert_eq!(out.value("probe_http_status_code"), Some(200.0));
        assert_eq!(out.value("probe_http_redirects"), Some(1.0));
        assert_eq!(out.value("probe_http_content_length"), Some(11.0));
        assert_eq!(out.value("probe_failed_due_to_regex"), Some(0.0));
        assert_eq!(out.value("probe_http_ssl"), Some(0.0));
        let phases: Vec<&str> = out
            .metrics
            .iter()
            .filter(|(n, _, _)| *n == "probe_http_duration_seconds")
            .map(|(_, l, _)| l.unwrap().1)
            .collect();
        assert_eq!(
            phases,
            ["resolve", "connect", "tls", "processing", "transfer"]
        );
        assert!(out.value("probe_duration_seconds").unwrap() > 0.0);
    }

    #[test]
    fn http_failures_name_the_reason() {
        let addr = serve(vec![
            "HTTP/1.1 503 Unavailable\r\nContent-Length: 4\r\n\r\nbusy",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            "HTTP/1.1 301 Moved\r\nLocation: http://elsewhere.invalid/\r\n\r\n",
        ]);
        let url = format!("http://{addr}/");
        let out = run_probe(&spec(ProbeKind::Http(http(url.clone()))), None);
        assert!(!out.success);
        assert_eq!(out.reason.as_deref(), Some("http status 503"));
        assert_eq!(out.value("probe_success"), Some(0.0));
        let out = run_probe(
            &spec(ProbeKind::Http(HttpProbe {
                expect_body: Some("bye".into()),
                ..http(url.clone())
            })),
            None,
        );
        assert_eq!(out.reason.as_deref(), Some("body does not contain \"bye\""));
        assert_eq!(out.value("probe_failed_due_to_regex"), Some(1.0));
        // Redirects not followed: the 301 is the answer, accepted when expected.
        let out = run_probe(
            &spec(ProbeKind::Http(HttpProbe {
                expect_status: vec![301],
                max_redirects: 0,
                ..http(url)
            })),
            None,
        );
        assert!(out.success, "{out:?}");
        assert_eq!(out.value("probe_http_status_code"), Some(301.0));
    }

    #[test]
    fn tcp_connect_banner_and_refusal() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().take(2) {
                let _ = c.unwrap().write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
            }
        });
        let ok = run_probe(
            &spec(ProbeKind::Tcp {
                address: addr.to_string(),
                expect_banner: Some("SSH-2.0".into()),
            }),
            None,
        );
        assert!(ok.success, "{ok:?}");
        let wrong = run_probe(
            &spec(ProbeKind::Tcp {
                address: addr.to_string(),
                expect_banner: Some("220 ".into()),
            }),
            None,
        );
        assert!(!wrong.success);
        let free = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let refused = run_probe(
            &spec(ProbeKind::Tcp {
                address: free.to_string(),
                expect_banner: None,
            }),
            None,
        );
        assert!(!refused.success);
        assert!(refused.reason.unwrap().contains("connecting"));
    }

    #[test]
    fn dns_and_process() {
        let ok = run_probe(
            &spec(ProbeKind::Dns {
                name: "localhost".into(),
            }),
            None,
        );
        assert!(ok.success, "{ok:?}");
        assert!(ok.value("probe_dns_answer_rrs").unwrap() >= 1.0);
        let bad = run_probe(
            &spec(ProbeKind::Dns {
                name: "no-such-host.invalid".into(),
            }),
            None,
        );
        assert!(!bad.success);
        if cfg!(target_os = "linux") {
            let me = std::fs::read_to_string("/proc/self/comm").unwrap();
            let ok = run_probe(
                &spec(ProbeKind::Process {
                    name: me.trim().into(),
                }),
                None,
            );
            assert!(ok.success, "{ok:?}");
        }
        let gone = run_probe(
            &spec(ProbeKind::Process {
                name: "no-such-proc".into(),
            }),
            None,
        );
        assert!(!gone.success);
    }

    #[test]
    fn state_changes_become_events_and_samples_carry_the_probe_label() {
        let hub = ProbeHub::default();
        let s = spec(ProbeKind::Dns { name: "x".into() });
        let up = Outcome {
            success: true,
            reason: None,
            metrics: vec![("probe_success", None, 1.0)],
        };
        let down = Outcome {
            success: false,
            reason: Some("http status 503".into()),
            metrics: vec![("probe_success", None, 0.0)],
        };
        assert!(!hub.record(&s, &up, 1), "first result up: no event");
        assert!(!hub.record(&s, &up, 2));
        assert!(hub.record(&s, &down, 3));
        assert!(!hub.record(&s, &down, 4));
        assert!(hub.record(&s, &up, 5));
        let (samples, events) = hub.drain();
        assert_eq!(samples.len(), 5);
        assert!(
            samples
                .iter()
                .all(|x| x.labels["probe"] == "p" && x.labels["tier"] == "web")
        );
        let ups: Vec<(bool, i64)> = events
            .iter()
            .map(|e| match e {
                Event::ProbeState { up, ts_ms, .. } => (*up, *ts_ms),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ups, [(false, 3), (true, 5)]);
        assert_eq!(hub.drain().0.len(), 0);
        assert_eq!(hub.latest().len(), 1);
        let fresh = ProbeHub::default();
        assert!(fresh.record(&s, &down, 1), "first result down: an event");
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    #[test]
    fn probes_run_at_their_own_intervals_on_few_threads_and_stop_promptly() {
        let hub = Arc::new(ProbeHub::default());
        let (tx, _rx) = std::sync::mpsc::channel();
        let spec = |name: &str, ms: u64| ProbeSpec {
            name: name.into(),
            kind: ProbeKind::Dns {
                name: "localhost".into(),
            },
            interval: Duration::from_millis(ms),
            timeout: Duration::from_millis(ms / 2),
            labels: BTreeMap::new(),
        };
        let specs = [spec("fast", 100), spec("slow", 400)];
        let probes = Probes::start(&specs, &hub, None, &tx);
        assert_eq!(probes.handles.len(), 2);
        std::thread::sleep(Duration::from_millis(850));
        let t = Instant::now();
        probes.stop();
        assert!(t.elapsed() < Duration::from_millis(500));
        let (samples, _) = hub.drain();
        let runs = |name: &str| {
            samples
                .iter()
                .filter(|s| s.name == "probe_success" && s.labels["probe"] == name)
                .count()
        };
        assert!(
            (7..=10).contains(&runs("fast")),
            "fast ran {}",
            runs("fast")
        );
        assert!((2..=3).contains(&runs("slow")), "slow ran {}", runs("slow"));
    }
}
