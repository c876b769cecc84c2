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
        server_url: url.to_string(),
        enrollment_secret: Some("s3cret".into()),
        state_dir: state_dir.to_path_buf(),
        interval_secs: 1,
        labels: BTreeMap::from([("system".into(), "门户".into())]),
        max_queue_batches: 100,
        request_timeout_secs: 5,
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
    /// Sets the shutdown flag and asserts that `run` returns promptly and without error.
    fn stop(self) {
        let asked = Instant::now();
        self.shutdown.store(true, Ordering::Relaxed);
        self.handle.join().unwrap().unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(1500),
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
fn an_overflowing_queue_reports_the_dropped_batches() {
    let server = FakeServer::start(|req, i| match i {
        0 => (503, vec![("Retry-After", "4".into())], String::new()),
        _ => ack(req),
    });
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
        max_queue_batches: 2,
        ..config(&server.url, dir.path())
    });
    // Batches 1..=5 are collected during the 4 s wait; only two fit.
    let ingests = server.wait_for("/api/v1/ingest", 3);
    agent.stop();
    let batches: Vec<Batch> = ingests.iter().map(Request::batch).collect();
    let gap = batches
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
        });
    let (dropped, first_seq, reason) = gap.expect("a spool gap event was sent");
    assert!(dropped >= 1);
    assert_eq!(first_seq, 1);
    assert_eq!(reason, "queue full");
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
