//! `/metrics`: the host metrics, the probe results and the agent's own metrics in the Prometheus
//! text format (version 0.0.4), so an existing Prometheus can scrape the agent like a
//! node_exporter. Served by a minimal blocking HTTP/1.1 server on one std thread: `GET` only,
//! one request per connection, no keep-alive; the host metrics are collected afresh for each
//! scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use yunwei_proto::Sample;

/// Type and help text of a metric family.
pub type Meta = (&'static str, &'static str);

/// Renders `samples` in the text format: grouped by name (in the order names first appear),
/// each family with `# HELP` and `# TYPE` from `meta` (untyped when unknown). Timestamps are left
/// out: the scraper stamps the scrape.
pub fn render(samples: &[Sample], meta: impl Fn(&str) -> Option<Meta>) -> String {
    let mut order: Vec<&str> = Vec::new();
    let mut families: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        families
            .entry(&s.name)
            .or_insert_with(|| {
                order.push(&s.name);
                Vec::new()
            })
            .push(s);
    }
    let mut out = String::with_capacity(samples.len() * 64);
    for name in order {
        let (kind, help) = meta(name).unwrap_or(("untyped", "Collected by yunwei-agent."));
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let mut seen = std::collections::BTreeSet::new();
        for s in &families[name] {
            // The text format forbids repeating a series; keep the first.
            if !seen.insert(&s.labels) {
                continue;
            }
            out.push_str(name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_value(v));
                }
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, s.value);
            out.push('\n');
        }
    }
    out
}

fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Produces the body of one scrape.
pub type Scrape = dyn Fn() -> String + Send + Sync;

/// A running `/metrics` server; stopped on [`MetricsServer::stop`] or drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and serves `GET /metrics` with `scrape()` on a thread of its own.
    pub fn start(addr: SocketAddr, scrape: Arc<Scrape>) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("metrics".into())
            .stack_size(256 << 10)
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    if let Ok(stream) = conn {
                        serve(stream, &*scrape);
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            handle: Some(handle),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answers one request on `stream`.
fn serve(mut stream: TcpStream, scrape: &Scrape) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // Read up to the end of the request head (8 KiB at most).
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 8192 {
            break;
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            scrape(),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><head><title>yunwei-agent</title></head><body><h1>yunwei-agent</h1>\
             <p><a href=\"/metrics\">Metrics</a></p></body></html>\n"
                .to_string(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    let _ = stream.write_all(&response);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            ts_ms: 0,
        }
    }

    #[test]
    fn families_are_grouped_typed_and_escaped() {
        let samples = [
            sample("a_total", &[("x", "1")], 1.0),
            sample("b", &[], 0.5),
            sample("a_total", &[("x", "q\"\\\n")], 2.0),
            sample("a_total", &[("x", "1")], 3.0),
            sample("c", &[], f64::NAN),
        ];
        let text = render(&samples, |n| (n == "a_total").then_some(("counter", "A.")));
        assert_eq!(
            text,
            "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n\
             a_total{x=\"q\\\"\\\\\\n\"} 2\n\
             # HELP b Collected by yunwei-agent.\n# TYPE b untyped\nb 0.5\n\
             # HELP c Collected by yunwei-agent.\n# TYPE c untyped\nc NaN\n"
        );
    }

    #[test]
    fn serves_get_metrics_and_refuses_the_rest() {
        let server = MetricsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(|| "m 1\n".to_string()),
        )
        .unwrap();
        let get = |req: &str| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nm 1\n"), "{ok}");
        assert!(get("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        server.stop();
    }
}
