//! End-to-end tests of `yunwei_agent::run` against a scripted HTTP server on `127.0.0.1:0`: what
//! the server saw (requests, headers, decoded batches, connections) is what is asserted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use yunwei_agent::AgentConfig;
use yunwei_agent::spool::{MonoClock, Spool, SpoolLimits};
use yunwei_agent::state::{State, load_state, save_state};
use yunwei_proto::{Batch, Event, Limits, decode_batch, validate_batch};

/// One request as the server received it; header names are lowercase.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn batch(&self) -> Batch {
        decode_batch(&self.body, 16 << 20).expect("ingest body decodes")
    }
}

/// `(status, extra headers, body)`.
type Reply = (u16, Vec<(&'static str, String)>, String);

struct FakeServer {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
}

impl FakeServer {
    /// Serves each request with `respond(request, index of the request among those to its path)`.
    fn start(respond: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let respond = Arc::new(respond);
        let (reqs, conns) = (requests.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                conns.fetch_add(1, Ordering::SeqCst);
                let (reqs, respond) = (reqs.clone(), respond.clone());
                std::thread::spawn(move || serve(stream, &reqs, &*respond));
            }
        });
        FakeServer {
            url,
            requests,
            connections,
        }
    }

    fn requests(&self, path: &str) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    fn wait_for(&self, path: &str, count: usize) -> Vec<Request> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reqs = self.requests(path);
            if reqs.len() >= count {
                return reqs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} {path} requests"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Serves HTTP/1.1 requests with a `Content-Length` body on one keep-alive connection.
fn serve(
    stream: TcpStream,
    reqs: &Mutex<Vec<Request>>,
    respond: &dyn Fn(&Request, usize) -> Reply,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        assert!(
            line.starts_with("POST "),
            "unexpected request line {line:?}"
        );
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let request = Request {
            path: path.clone(),
            headers,
            body,
        };
        let index = {
            let mut reqs = reqs.lock().unwrap();
            let index = reqs.iter().filter(|r| r.path == path).count();
            reqs.push(request.clone());
            index
        };
        let (status, extra, body) = respond(&request, index);
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes()).unwrap();
        out.write_all(body.as_bytes()).unwrap();
    }
}

fn ack(req: &Request) -> Reply {
    let batch = req.batch();
    validate_batch(&batch, &Limits::default(), batch.collected_at_ms).expect("batch is valid");
    (
        200,
        vec![],
        format!(
            r#"{{"seq":{},"duplicate":false,"samples":{}}}"#,
            batch.seq,
            batch.samples.len()
        ),
    )
}

fn enrolled() -> Reply {
    (
        200,
        vec![],
        r#"{"agent_id":"agent-7","token":"tok-123"}"#.into(),
    )
}

fn config(url: &str, state_dir: &Path) -> AgentConfig {
    AgentConfig {
        enrollment_secret: Some("s3cret".into()),
        interval_secs: 1,
        labels: BTreeMap::from([("system".into(), "门户".into())]),
        spool_max_bytes: 1 << 20,
        spool_max_age_secs: 3600,
        request_timeout_secs: 5,
        // Tests run side by side: no fixed port.
        metrics_listen: None,
        ..AgentConfig::new(url, state_dir)
    }
}

struct Running {
    shutdown: Arc<AtomicBool>,
    handle: JoinHandle<anyhow::Result<()>>,
}

fn start(config: AgentConfig) -> Running {
    let shutdown = Arc::new(AtomicBool::new(false));
    let flag = shutdown.clone();
    let handle = std::thread::spawn(move || yunwei_agent::run(config, flag));
    Running { shutdown, handle }
}

impl Running {
    /// Sets the shutdown flag and asserts that `run` returns promptly (after at most a short
    /// flush of the spool) and without error.
    fn stop(self) {
        let asked = Instant::now();
        self.shutdown.store(true, Ordering::Relaxed);
        self.handle.join().unwrap().unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(2500),
            "shutdown took {:?}",
            asked.elapsed()
        );
    }
}

#[test]
fn enrolls_after_a_retry_then_pushes_sequenced_batches_on_one_connection() {
    let server = FakeServer::start(|req, i| match req.path.as_str() {
        "/api/v1/enroll" if i == 0 => (503, vec![("Retry-After", "1".into())], String::new()),
        "/api/v1/enroll" => enrolled(),
        _ => ack(req),
    });
    let dir = tempfile::tempdir().unwrap();
    let agent = start(config(&server.url, dir.path()));
    let ingests = server.wait_for("/api/v1/ingest", 3);
    agent.stop();

    let enrolls = server.requests("/api/v1/enroll");
    assert_eq!(enrolls.len(), 2);
    let enroll: serde_json::Value = serde_json::from_slice(&enrolls[1].body).unwrap();
    assert_eq!(enroll["secret"], "s3cret");
    assert_eq!(enroll["host"]["labels"]["system"], "门户");

    let seqs: Vec<u64> = ingests.iter().map(|r| r.batch().seq).collect();
    assert_eq!(seqs[..3], [1, 2, 3]);
    for r in &ingests {
        assert_eq!(r.headers["content-type"], yunwei_proto::CONTENT_TYPE);
        assert_eq!(r.headers["content-encoding"], "gzip");
        assert_eq!(r.headers["authorization"], "Bearer tok-123");
        let b = r.batch();
        assert_eq!(b.agent_id, "agent-7");
        assert_eq!(b.interval_ms, 1000);
        assert!(b.age_ms < 1000, "age_ms {}", b.age_ms);
        assert!(b.samples.iter().any(|s| s.name == "node_load1"));
        assert_eq!(b.host.labels["system"], "门户");
    }
    let gaps: Vec<_> = ingests
        .windows(2)
        .map(|w| w[1].batch().collected_at_ms - w[0].batch().collected_at_ms)
        .collect();
    assert!(
        gaps.iter().all(|g| (500..1600).contains(g)),
        "collection gaps {gaps:?}"
    );
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "one keep-alive connection"
    );

    let state = load_state(dir.path()).unwrap().unwrap();
    assert_eq!(state.agent_id, "agent-7");
    assert!(
        state.next_seq > *seqs.last().unwrap(),
        "next_seq saved before sending: {state:?}"
    );
}

#[test]
fn restart_continues_the_saved_sequence_without_enrolling() {
    let server = FakeServer::start(|req, _| ack(req));
    let dir = tempfile::tempdir().unwrap();
    let saved = State {
        agent_id: "agent-9".into(),
        token: "tok-9".into(),
        next_seq: 41,
    };
    save_state(dir.path(), &saved).unwrap();
    let agent = start(config(&server.url, dir.path()));
    let ingests = server.wait_for("/api/v1/ingest", 1);
    agent.stop();
    assert!(server.requests("/api/v1/enroll").is_empty());
    assert_eq!(ingests[0].batch().seq, 41);
    assert_eq!(ingests[0].headers["authorization"], "Bearer tok-9");
}

#[test]
fn server_errors_are_retried_and_rejected_batches_are_dropped() {
    let server = FakeServer::start(|req, i| match i {
        0 => (
            503,
            vec![("Retry-After", "2".into())],
            r#"{"error":{"kind":"overloaded","message":"busy"}}"#.into(),
        ),
        2 => (
            400,
            vec![],
            r#"{"error":{"kind":"invalid_batch","field":"seq","message":"no"}}"#.into(),
        ),
        _ => ack(req),
    });
    let dir = tempfile::tempdir().unwrap();
    let saved = State {
        agent_id: "a".into(),
        token: "t".into(),
        next_seq: 1,
    };
    save_state(dir.path(), &saved).unwrap();
    let started = Instant::now();
    let agent = start(config(&server.url, dir.path()));
    let ingests = server.wait_for("/api/v1/ingest", 5);
    agent.stop();
    let seqs: Vec<u64> = ingests.iter().map(|r| r.batch().seq).collect();
    // 1 is retried after Retry-After (2 s), then sent before the newer 2 and 3; 2 is rejected and
    // not sent again.
    assert_eq!(seqs[..5], [1, 1, 2, 3, 4], "{seqs:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    // The retried batch has aged by the delay, measured on the monotonic clock.
    assert!(
        ingests[1].batch().age_ms >= 1900,
        "age_ms {}",
        ingests[1].batch().age_ms
    );
}

#[test]
fn a_failing_replica_is_left_for_the_next_in_server_urls() {
    // Replica A answers 503 to everything (its database is gone); B acknowledges.
    let a = FakeServer::start(|_, _| {
        (
            503,
            vec![],
            r#"{"error":{"kind":"unavailable","message":"database unreachable"}}"#.into(),
        )
    });
    let b = FakeServer::start(|req, _| ack(req));
    let dir = tempfile::tempdir().unwrap();
    save_state(
        dir.path(),
        &State {
            agent_id: "a".into(),
            token: "t".into(),
            next_seq: 1,
        },
    )
    .unwrap();
    let agent = start(AgentConfig {
        server_urls: vec![a.url.clone(), b.url.clone()],
        ..config(&a.url, dir.path())
    });
    let at_b = b.wait_for("/api/v1/ingest", 3);
    agent.stop();
    assert_eq!(a.requests("/api/v1/ingest").len(), 1, "A tried once");
    let seqs: Vec<u64> = at_b.iter().map(|r| r.batch().seq).collect();
    // The batch A failed is redelivered to B first, then the agent stays with B.
    assert_eq!(seqs[..3], [1, 2, 3], "{seqs:?}");
}

/// Fills the spool of the agent in `dir` (identity `a`/`t`) with `n` batches of `samples`
/// samples collected `age` ago, as an earlier run that could not reach the server would have;
/// stops early when the spool is within 512 bytes of `max_bytes`.
fn prefill_spool(dir: &Path, n: usize, samples: usize, age: Duration, max_bytes: u64) {
    save_state(
        dir,
        &State {
            agent_id: "a".into(),
            token: "t".into(),
            next_seq: 1,
        },
    )
    .unwrap();
    let limits = SpoolLimits {
        max_bytes,
        max_age: Duration::from_secs(3600),
    };
    let mut spool = Spool::open(&dir.join("spool"), limits, 1, MonoClock::new()).unwrap();
    let at = yunwei_tests_now_ms() - age.as_millis() as i64;
    for k in 0..n {
        if spool.bytes() + 512 > max_bytes {
            break;
        }
        let mut b = Batch {
            version: 1,
            agent_id: "a".into(),
            seq: 0,
            interval_ms: 1000,
            collected_at_ms: at,
            age_ms: 0,
            host: yunwei_proto::HostFacts {
                hostname: "h".into(),
                ..Default::default()
            },
            samples: (0..samples)
                .map(|i| yunwei_proto::Sample {
                    name: "filler".into(),
                    labels: BTreeMap::from([("i".to_string(), format!("{k}-{i}"))]).into(),
                    value: i as f64,
                    ts_ms: at,
                })
                .collect(),
            events: vec![],
            probe_intervals_ms: Default::default(),
        };
        let collected = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        spool.append(&mut b, collected, at).unwrap();
    }
}

fn yunwei_tests_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The first spool gap event among `batches`: `(dropped_batches, first_seq, reason)`.
fn first_gap(batches: &[Batch]) -> Option<(u64, u64, String)> {
    batches
        .iter()
        .flat_map(|b| &b.events)
        .find_map(|e| match e {
            Event::SpoolGap {
                dropped_batches,
                first_seq,
                reason,
                ..
            } => Some((*dropped_batches, *first_seq, reason.clone())),
            _ => None,
        })
}

#[test]
fn a_full_spool_drops_the_oldest_batches_and_reports_them() {
    let server = FakeServer::start(|req, _| ack(req));
    let dir = tempfile::tempdir().unwrap();
    // An earlier run filled the spool to its bound; the first new batch needs room.
    prefill_spool(dir.path(), 1000, 40, Duration::from_secs(60), 64 << 10);
    let agent = start(AgentConfig {
        spool_max_bytes: 64 << 10,
        ..config(&server.url, dir.path())
    });
    // Wait for the agent's own first batch (the prefilled ones go first).
    let deadline = Instant::now() + Duration::from_secs(20);
    let batches = loop {
        let batches: Vec<Batch> = server
            .requests("/api/v1/ingest")
            .iter()
            .map(Request::batch)
            .collect();
        if batches
            .iter()
            .any(|b| b.samples.iter().any(|s| s.name == "node_load1"))
        {
            break batches;
        }
        assert!(Instant::now() < deadline, "no batch of the agent's own");
        std::thread::sleep(Duration::from_millis(20));
    };
    agent.stop();
    let (dropped, first_seq, reason) = first_gap(&batches).expect("a spool gap event was sent");
    assert!(dropped >= 1);
    assert_eq!(first_seq, 1);
    assert_eq!(reason, "spool full");
    assert!(
        batches[0].seq > dropped,
        "the dropped batches are not sent: {}",
        batches[0].seq
    );
}

#[test]
fn batches_older_than_the_spool_age_bound_are_dropped_and_reported() {
    let server = FakeServer::start(|req, _| ack(req));
    let dir = tempfile::tempdir().unwrap();
    prefill_spool(dir.path(), 3, 5, Duration::from_secs(7200), 1 << 20);
    let agent = start(AgentConfig {
        spool_max_age_secs: 3600,
        ..config(&server.url, dir.path())
    });
    let ingests = server.wait_for("/api/v1/ingest", 1);
    agent.stop();
    let batches: Vec<Batch> = ingests.iter().map(Request::batch).collect();
    assert_eq!(batches[0].seq, 4, "1..=3 are too old to send");
    assert_eq!(
        first_gap(&batches),
        Some((3, 1, "spool max age".to_string()))
    );
}

#[test]
fn spooled_batches_survive_a_restart_and_are_sent_with_their_real_age() {
    let dir = tempfile::tempdir().unwrap();
    prefill_spool(dir.path(), 2, 5, Duration::from_secs(30), 1 << 20);
    let server = FakeServer::start(|req, _| ack(req));
    let agent = start(config(&server.url, dir.path()));
    let ingests = server.wait_for("/api/v1/ingest", 3);
    agent.stop();
    let batches: Vec<Batch> = ingests.iter().map(Request::batch).collect();
    let seqs: Vec<u64> = batches.iter().map(|b| b.seq).collect();
    assert_eq!(seqs[..3], [1, 2, 3]);
    assert_eq!(batches[0].samples[0].name, "filler");
    assert!(
        (29_000..40_000).contains(&batches[0].age_ms),
        "age {}",
        batches[0].age_ms
    );
    assert!(batches[2].samples.iter().any(|s| s.name == "node_load1"));
}

#[test]
fn a_rejected_enrollment_ends_run_with_the_servers_message() {
    let server = FakeServer::start(|_, _| {
        (
            401,
            vec![],
            r#"{"error":{"kind":"unauthorized","message":"wrong enrollment secret"}}"#.into(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let err = yunwei_agent::run(
        config(&server.url, dir.path()),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("http 401") && err.contains("wrong enrollment secret"),
        "{err}"
    );
    assert_eq!(load_state(dir.path()).unwrap(), None);
}

#[test]
fn shutdown_interrupts_enrollment_retries_against_an_unreachable_server() {
    // A port that was just free: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(config(&format!("http://127.0.0.1:{port}"), dir.path()));
    std::thread::sleep(Duration::from_millis(1500));
    agent.stop();
    assert_eq!(load_state(dir.path()).unwrap(), None);
}

/// Runs `openssl` in `dir`; false when openssl is missing.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A test PKI in `dir`: `ca.pem` (server CA), `srv.pem`/`srv.key` for localhost, and a client
/// certificate `cli.pem`/`cli.key` from `cli-ca.pem`. False when openssl is not available.
fn make_pki(dir: &Path) -> bool {
    std::fs::write(dir.join("srv.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    std::fs::write(
        dir.join("cli.cnf"),
        "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:agent\n",
    )
    .unwrap();
    let steps: [&[&str]; 6] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=server CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "srv.cnf",
        ],
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "cli-ca.key",
            "-out",
            "cli-ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=client CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "cli.key",
            "-out",
            "cli.csr",
            "-subj",
            "/CN=agent",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "cli.csr",
            "-CA",
            "cli-ca.pem",
            "-CAkey",
            "cli-ca.key",
            "-CAcreateserial",
            "-out",
            "cli.pem",
            "-days",
            "2",
            "-extfile",
            "cli.cnf",
        ],
    ];
    steps.iter().all(|args| openssl(dir, args))
}

/// An HTTPS server requiring a client certificate from `cli-ca.pem`; acknowledges everything
/// and counts requests and the client certificates it saw.
fn tls_server(dir: &Path) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("cli-ca.pem")).unwrap() {
        client_roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        client_roots.into(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("srv.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("srv.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let (requests, client_certs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (reqs, certs) = (requests.clone(), client_certs.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let (config, reqs, certs) = (config.clone(), reqs.clone(), certs.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut reader = BufReader::new(&mut tls);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    reqs.fetch_add(1, Ordering::SeqCst);
                    let stream = reader.get_mut();
                    if stream
                        .conn
                        .peer_certificates()
                        .is_some_and(|c| !c.is_empty())
                    {
                        certs.fetch_add(1, Ordering::SeqCst);
                    }
                    let reply = if path == "/api/v1/enroll" {
                        r#"{"agent_id":"agent-tls","token":"tok"}"#.to_string()
                    } else {
                        let b = decode_batch(&body, 16 << 20).unwrap();
                        format!(r#"{{"seq":{},"duplicate":false,"samples":0}}"#, b.seq)
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    if stream.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, requests, client_certs)
}

#[test]
fn pushes_over_https_with_a_configured_ca_and_client_certificate() {
    let pki = tempfile::tempdir().unwrap();
    if !make_pki(pki.path()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and openssl is not installed"
        );
        eprintln!("SKIP: openssl not available");
        return;
    }
    let (url, requests, client_certs) = tls_server(pki.path());
    let p = |f: &str| Some(pki.path().join(f));

    // Without the client certificate the server refuses the handshake: nothing gets through.
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&url, dir.path());
    c.tls.ca_file = p("ca.pem");
    let agent = start(c.clone());
    std::thread::sleep(Duration::from_millis(1500));
    agent.stop();
    assert_eq!(requests.load(Ordering::SeqCst), 0);

    c.tls.client_cert_file = p("cli.pem");
    c.tls.client_key_file = p("cli.key");
    let agent = start(c);
    let deadline = Instant::now() + Duration::from_secs(20);
    while requests.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "no requests over https");
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.stop();
    assert_eq!(
        client_certs.load(Ordering::SeqCst),
        requests.load(Ordering::SeqCst),
        "every request came with the client certificate"
    );
    assert_eq!(
        load_state(dir.path()).unwrap().unwrap().agent_id,
        "agent-tls"
    );

    // A CA that did not sign the server's certificate: refused.
    let dir = tempfile::tempdir().unwrap();
    let before = requests.load(Ordering::SeqCst);
    let mut c = config(&url, dir.path());
    c.tls.ca_file = p("cli-ca.pem");
    c.tls.client_cert_file = p("cli.pem");
    c.tls.client_key_file = p("cli.key");
    let agent = start(c);
    std::thread::sleep(Duration::from_millis(1500));
    agent.stop();
    assert_eq!(requests.load(Ordering::SeqCst), before);
}

#[test]
fn a_missing_ca_file_fails_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config("https://localhost:1", dir.path());
    c.tls.ca_file = Some(dir.path().join("nope.pem"));
    let err = yunwei_agent::run(c, Arc::new(AtomicBool::new(false))).unwrap_err();
    assert!(format!("{err:#}").contains("nope.pem"), "{err:#}");
}
