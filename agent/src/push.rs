//! The agent's main loop: enroll once, then every interval collect a batch, queue it and send the
//! queue oldest first to `POST /api/v1/ingest` over one keep-alive HTTP client. Transient
//! failures are retried with exponential backoff and jitter; batches the server rejects are
//! dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use yunwei_proto::{
    Ack, Batch, CONTENT_ENCODING, CONTENT_TYPE, EnrollRequest, EnrollResponse, ErrorBody,
    PROTOCOL_VERSION, encode_batch,
};

use crate::collect::collect;
use crate::config::AgentConfig;
use crate::facts::host_facts;
use crate::queue::Queue;
use crate::state::{State, load_state, save_state, state_path};

/// Longest sleep between checks of the shutdown flag.
const SLEEP_STEP: Duration = Duration::from_millis(100);
/// Backoff delays double from this ...
const BACKOFF_START: Duration = Duration::from_secs(1);
/// ... up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A server's `Retry-After` is honoured up to this.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);
/// Response bodies read for logging are cut at this size.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// Runs the agent until `shutdown` is set: enrolls if there is no saved state, then collects and
/// pushes a batch every `interval_secs`. Blocks; returns within about 100 ms of `shutdown` being
/// set, or after the request in flight finishes. Batches still queued are lost on return (a later
/// version spools them to disk).
pub fn run(config: AgentConfig, shutdown: Arc<AtomicBool>) -> anyhow::Result<()> {
    let client = Client::new(&config);
    let Some(mut state) = enrolled_state(&config, &client, &shutdown)? else {
        return Ok(());
    };
    eprintln!(
        "info: agent {} pushing to {} every {} s",
        state.agent_id, config.server_url, config.interval_secs
    );
    let interval = config.interval();
    let mut queue = Queue::new(config.max_queue_batches);
    let mut backoff = Backoff::default();
    let mut stats = Stats::default();
    let mut next_collect = Instant::now();
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_collect {
            enqueue_batch(&config, &mut state, &mut queue);
            next_collect += interval;
            if next_collect <= now {
                // Fell behind (suspended host, slow disk): skip the missed collections.
                next_collect = now + interval;
            }
        } else if !queue.is_empty() && backoff.ready(now) {
            send_oldest(&client, &state.token, &mut queue, &mut backoff, &mut stats);
        } else {
            let wake = if queue.is_empty() {
                next_collect
            } else {
                next_collect.min(backoff.until)
            };
            sleep_until(wake, &shutdown);
        }
    }
    eprintln!(
        "info: stopping; sent {} batches, rejected {}, dropped {} (queue full), {} still queued",
        stats.sent,
        stats.rejected,
        queue.dropped_total(),
        queue.len()
    );
    Ok(())
}

/// Counters for the push loop (a later version exports them on `/metrics`).
#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    rejected: u64,
}

/// Loads the saved state, or enrolls and saves it. `None` if shut down before enrolling.
fn enrolled_state(
    config: &AgentConfig,
    client: &Client,
    shutdown: &AtomicBool,
) -> anyhow::Result<Option<State>> {
    if let Some(state) = load_state(&config.state_dir)? {
        return Ok(Some(state));
    }
    let secret = config.enrollment_secret.clone().with_context(|| {
        format!(
            "{} does not exist and enrollment_secret is not set, so the agent cannot enroll",
            state_path(&config.state_dir).display()
        )
    })?;
    // Fail on an unusable state folder before the server issues an identity we could not keep.
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state folder {}", config.state_dir.display()))?;
    let mut backoff = Backoff::default();
    while !shutdown.load(Ordering::Relaxed) {
        let request = EnrollRequest {
            secret: secret.clone(),
            host: host_facts(&config.labels),
        };
        match client.enroll(&request) {
            Ok(resp) => {
                let state = State {
                    agent_id: resp.agent_id,
                    token: resp.token,
                    next_seq: 1,
                };
                save_state(&config.state_dir, &state)?;
                eprintln!("info: enrolled as agent {}", state.agent_id);
                return Ok(Some(state));
            }
            Err(Failure::Retry {
                reason,
                retry_after,
            }) => {
                let delay = backoff.fail(Instant::now(), retry_after);
                eprintln!(
                    "warn: enrollment failed: {reason}; retrying in {:.1} s",
                    delay.as_secs_f64()
                );
                sleep_until(backoff.until, shutdown);
            }
            Err(Failure::Rejected { status, message }) => {
                anyhow::bail!("enrollment rejected by the server (http {status}): {message}");
            }
        }
    }
    Ok(None)
}

/// Collects a batch and queues it, after saving the sequence number that follows it.
fn enqueue_batch(config: &AgentConfig, state: &mut State, queue: &mut Queue) {
    let collected = Instant::now();
    let ts_ms = unix_ms();
    let samples = collect(ts_ms).unwrap_or_else(|e| {
        // The batch still goes out: it is the host's heartbeat.
        eprintln!("error: collecting host metrics: {e}");
        Vec::new()
    });
    let seq = state.next_seq;
    state.next_seq += 1;
    if let Err(e) = save_state(&config.state_dir, state) {
        // Never send a sequence number that a restart could hand out again.
        eprintln!("error: not sending batch {seq}: saving the sequence number failed: {e:#}");
        return;
    }
    let batch = Batch {
        version: PROTOCOL_VERSION,
        agent_id: state.agent_id.clone(),
        seq,
        interval_ms: config.interval_secs * 1000,
        collected_at_ms: ts_ms,
        age_ms: 0,
        host: host_facts(&config.labels),
        samples,
        events: Vec::new(),
    };
    queue.push(batch, collected);
}

/// Sends the oldest queued batch and removes it unless the failure is worth a retry.
fn send_oldest(
    client: &Client,
    token: &str,
    queue: &mut Queue,
    backoff: &mut Backoff,
    stats: &mut Stats,
) {
    let Some(item) = queue.front_mut() else {
        return;
    };
    item.batch.age_ms = u64::try_from(item.collected.elapsed().as_millis()).unwrap_or(u64::MAX);
    let seq = item.batch.seq;
    match client.ingest(&encode_batch(&item.batch), token) {
        Ok(ack) => {
            if ack.seq != seq {
                eprintln!("warn: server acknowledged seq {} for batch {seq}", ack.seq);
            }
            queue.pop_front();
            stats.sent += 1;
            if backoff.failures > 0 {
                eprintln!(
                    "info: ingest recovered after {} failed attempts",
                    backoff.failures
                );
            }
            backoff.reset();
        }
        Err(Failure::Retry {
            reason,
            retry_after,
        }) => {
            let delay = backoff.fail(Instant::now(), retry_after);
            eprintln!(
                "warn: sending batch {seq} failed: {reason}; {} queued, retrying in {:.1} s",
                queue.len(),
                delay.as_secs_f64()
            );
        }
        Err(Failure::Rejected { status, message }) => {
            // A retry cannot fix what the server refuses; drop the batch and go on.
            queue.pop_front();
            stats.rejected += 1;
            eprintln!("error: server rejected batch {seq} (http {status}), dropping it: {message}");
        }
    }
}

/// Why a request did not succeed.
#[derive(Debug)]
enum Failure {
    /// Connection error, timeout, 408, 429 or 5xx: try again later.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Any other status: the request itself is wrong.
    Rejected { status: u16, message: String },
}

/// The HTTP client, one connection pool kept for the agent's lifetime.
struct Client {
    http: ureq::Agent,
    enroll_url: String,
    ingest_url: String,
}

impl Client {
    fn new(config: &AgentConfig) -> Self {
        let http = ureq::Agent::config_builder()
            // Statuses are handled here, so 4xx/5xx must not become errors before the headers
            // and body can be read.
            .http_status_as_error(false)
            .timeout_global(Some(config.request_timeout()))
            // Keep the connection between pushes.
            .max_idle_age(config.interval() + Duration::from_secs(30))
            .user_agent(format!("yunwei-agent/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            http,
            enroll_url: format!("{}/api/v1/enroll", config.server_url),
            ingest_url: format!("{}/api/v1/ingest", config.server_url),
        }
    }

    fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse, Failure> {
        let body = serde_json::to_vec(request).expect("an enroll request always serializes");
        let resp = self
            .http
            .post(&self.enroll_url)
            .header("Content-Type", "application/json")
            .send(&body[..]);
        let body = check_response(resp)?;
        let resp: EnrollResponse = serde_json::from_str(&body).map_err(|e| Failure::Retry {
            reason: format!("unreadable enroll response: {e}"),
            retry_after: None,
        })?;
        if resp.agent_id.is_empty() || resp.token.is_empty() {
            return Err(Failure::Retry {
                reason: "enroll response has an empty agent_id or token".into(),
                retry_after: None,
            });
        }
        Ok(resp)
    }

    fn ingest(&self, body: &[u8], token: &str) -> Result<Ack, Failure> {
        let resp = self
            .http
            .post(&self.ingest_url)
            .header("Content-Type", CONTENT_TYPE)
            .header("Content-Encoding", CONTENT_ENCODING)
            .header("Authorization", format!("Bearer {token}"))
            .send(body);
        let body = check_response(resp)?;
        // The server acknowledged a durable commit; an unreadable ack body does not undo that.
        Ok(serde_json::from_str(&body).unwrap_or_else(|e| {
            eprintln!("warn: unreadable ack ({e}): {}", truncate(&body, 200));
            Ack {
                seq: 0,
                duplicate: false,
                samples: 0,
            }
        }))
    }
}

/// Sorts a response into success (its body), retry or rejection.
fn check_response(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<String, Failure> {
    let mut resp = resp.map_err(|e| Failure::Retry {
        reason: e.to_string(),
        retry_after: None,
    })?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_string()
        .unwrap_or_else(|e| format!("(unreadable body: {e})"));
    match status {
        200..=299 => Ok(body),
        408 | 429 | 500..=599 => Err(Failure::Retry {
            reason: format!("http {status}: {}", error_message(&body)),
            retry_after,
        }),
        _ => Err(Failure::Rejected {
            status,
            message: error_message(&body),
        }),
    }
}

/// The server's error body as `kind: field: message`, or the raw body if it is not one.
fn error_message(body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { error: e }) => match e.field {
            Some(field) => format!("{}: {field}: {}", e.kind, e.message),
            None => format!("{}: {}", e.kind, e.message),
        },
        Err(_) => truncate(body.trim(), 500).to_string(),
    }
}

fn truncate(s: &str, max_bytes: usize) -> &str {
    let mut end = s.len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Exponential backoff with jitter for consecutive failures.
#[derive(Debug)]
struct Backoff {
    failures: u32,
    /// No attempt before this.
    until: Instant,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            failures: 0,
            until: Instant::now(),
        }
    }
}

impl Backoff {
    fn ready(&self, now: Instant) -> bool {
        now >= self.until
    }

    fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure at `now` and returns the delay before the next attempt: the server's
    /// `Retry-After` if it sent one, else the jittered exponential delay.
    fn fail(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = match retry_after {
            Some(d) => d.min(RETRY_AFTER_CAP),
            None => backoff_delay(self.failures, jitter()),
        };
        self.until = now + delay;
        delay
    }
}

/// Delay after `failures` consecutive failures: 1 s, 2 s, 4 s, ... capped at 60 s, scaled by
/// `0.5 + jitter / 2` (`jitter` in `[0, 1)`) so that agents that failed together spread out.
fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let base = BACKOFF_START.saturating_mul(1 << exp).min(BACKOFF_CAP);
    base.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// A number in `[0, 1)` from the clock's sub-second nanoseconds; enough to spread retries
/// without a random number generator.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Multiplicative hashing, so that clocks with coarse resolution still vary in the high bits.
    let mixed = nanos.wrapping_mul(0x9E37_79B9);
    f64::from(mixed >> 8) / f64::from(1u32 << 24)
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sleeps until `deadline` in steps of at most [`SLEEP_STEP`], returning early on shutdown.
fn sleep_until(deadline: Instant, shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(SLEEP_STEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_a_minute() {
        let secs: Vec<f64> = (1..=9)
            .map(|n| backoff_delay(n, 0.999_999).as_secs_f64().round())
            .collect();
        assert_eq!(secs, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]);
        assert_eq!(backoff_delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(u32::MAX, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let values: Vec<f64> = (0..200)
            .map(|_| {
                std::thread::sleep(Duration::from_micros(50));
                jitter()
            })
            .collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let distinct = values
            .iter()
            .map(|v| v.to_bits())
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 100, "{} distinct values", distinct.len());
    }

    #[test]
    fn retry_after_overrides_the_exponential_delay() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert_eq!(
            b.fail(now, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(!b.ready(now + Duration::from_secs(6)));
        assert!(b.ready(now + Duration::from_secs(7)));
        assert_eq!(
            b.fail(now, Some(Duration::from_secs(1 << 20))),
            RETRY_AFTER_CAP
        );
        let d = b.fail(now, None);
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_secs(4),
            "{d:?}"
        );
        b.reset();
        assert!(b.fail(now, None) <= Duration::from_secs(1));
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = r#"{"error":{"kind":"invalid_batch","field":"samples[3].value","message":"non-finite value NaN"}}"#;
        assert_eq!(
            error_message(body),
            "invalid_batch: samples[3].value: non-finite value NaN"
        );
        assert_eq!(
            error_message("<html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
        assert_eq!(truncate("运维", 4), "运");
    }
}
