//! Independent probes: the endpoints a contract's systems declare as `server_probes`, probed by
//! the server itself on their schedule — the office's own vantage, apart from what the vendor's
//! agents report. Each result goes to the writer as a status observation of kind
//! [`KIND_SERVER_PROBE`](crate::ingest::KIND_SERVER_PROBE) (source `server`, subject `<contract id>/<probe name>`), valid for the
//! probe's interval plus its timeout (the next result is due by then), so it is stored, merged
//! and kept like every other status interval.
//!
//! Destinations pass the webhooks' SSRF guard (`notify::deliver::checked_addr`): a name is
//! resolved once per run, every address it resolves to must be public or inside
//! `notify.allow_private_networks`, and the connection goes to the checked address only.
//! Redirects are not followed. `contracts.server_probe_source` sets the local address.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use tokio::sync::oneshot;
use yunwei_sla::contract::{ServerProbe, tcp_target_host};

use crate::{
    config::Cidr,
    contracts::Contracts,
    ingest::{Ingest, WriterMsg},
    notify::deliver::{checked_addr, guarded_client_with},
    now_ms,
};

/// The most of an HTTP body read for `expect_body`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The result of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub up: bool,
    /// Why it failed (`http status 503`, `destination … is internal …`).
    pub reason: Option<String>,
}

impl Outcome {
    fn down(reason: impl Into<String>) -> Outcome {
        Outcome {
            up: false,
            reason: Some(reason.into()),
        }
    }
}

/// Runs `p` once from `source` (none: the system's choice).
pub async fn probe_once(p: &ServerProbe, allow: &[Cidr], source: Option<IpAddr>) -> Outcome {
    let timeout = Duration::from_millis(p.timeout.0.max(1) as u64);
    if let Some(url) = &p.http {
        http(p, url, allow, source, timeout).await
    } else if let Some(target) = &p.tcp {
        tcp(target, allow, source, timeout).await
    } else {
        Outcome::down("neither http nor tcp")
    }
}

async fn http(
    p: &ServerProbe,
    url: &str,
    allow: &[Cidr],
    source: Option<IpAddr>,
    timeout: Duration,
) -> Outcome {
    let client = match guarded_client_with(url, allow, timeout, source).await {
        Ok(c) => c,
        Err(e) => return Outcome::down(e),
    };
    let mut resp = match client.get(url).send().await {
        Ok(r) => r,
        Err(e) => return Outcome::down(format!("request failed: {e}")),
    };
    let status = resp.status().as_u16();
    let status_ok = if p.expect_status.is_empty() {
        (200..300).contains(&status)
    } else {
        p.expect_status.contains(&status)
    };
    if !status_ok {
        return Outcome::down(format!("http status {status}"));
    }
    if let Some(want) = &p.expect_body {
        let mut body = Vec::new();
        while body.len() < MAX_BODY_BYTES {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                Ok(None) => break,
                Err(e) => return Outcome::down(format!("reading the body: {e}")),
            }
        }
        body.truncate(MAX_BODY_BYTES);
        if !String::from_utf8_lossy(&body).contains(want.as_str()) {
            return Outcome::down(format!("body does not contain {want:?}"));
        }
    }
    Outcome {
        up: true,
        reason: None,
    }
}

async fn tcp(target: &str, allow: &[Cidr], source: Option<IpAddr>, timeout: Duration) -> Outcome {
    let (Some(host), Some(port)) = (
        tcp_target_host(target),
        target
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok()),
    ) else {
        return Outcome::down("tcp target is not host:port");
    };
    let addr = match checked_addr(host, port, allow).await {
        Ok(a) => a,
        Err(e) => return Outcome::down(e),
    };
    let socket = match if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    } {
        Ok(s) => s,
        Err(e) => return Outcome::down(format!("socket: {e}")),
    };
    if let Some(ip) = source
        && let Err(e) = socket.bind((ip, 0).into())
    {
        return Outcome::down(format!("binding {ip}: {e}"));
    }
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(_)) => Outcome {
            up: true,
            reason: None,
        },
        Ok(Err(e)) => Outcome::down(format!("connect {addr}: {e}")),
        Err(_) => Outcome::down(format!("connect {addr}: timed out")),
    }
}

/// Every server probe of the loaded contracts: (subject, probe).
fn scheduled(contracts: &Contracts) -> Vec<(String, ServerProbe)> {
    let mut out = Vec::new();
    for c in contracts.list() {
        for s in &c.contract.systems {
            for p in &s.server_probes {
                out.push((format!("{}/{}", c.contract.id, p.name), p.clone()));
            }
        }
    }
    out
}

/// Probes every contract's `server_probes` on their intervals until aborted. A probe whose
/// previous run has not finished is not started again.
pub async fn run(contracts: Arc<Contracts>, ingest: Arc<Ingest>) {
    let allow: Arc<[Cidr]> = contracts
        .config
        .notify
        .allow_private_networks
        .clone()
        .into();
    let source = contracts.config.contracts.server_probe_source;
    let mut next_due: HashMap<String, i64> = HashMap::new();
    let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = now_ms();
        running.retain(|_, h| !h.is_finished());
        for (subject, p) in scheduled(&contracts) {
            let due = *next_due.entry(subject.clone()).or_insert(now);
            if due > now || running.contains_key(&subject) {
                continue;
            }
            next_due.insert(subject.clone(), now + p.interval.0);
            let (allow, writer) = (allow.clone(), ingest.writer.clone());
            let key = subject.clone();
            running.insert(
                key,
                tokio::spawn(async move {
                    let outcome = probe_once(&p, &allow, source).await;
                    // Observed when the run ended, by the server's clock.
                    let t_ms = now_ms();
                    if let Some(reason) = &outcome.reason {
                        tracing::debug!(probe = %subject, reason, "server probe failed");
                    }
                    let (reply, done) = oneshot::channel();
                    let msg = WriterMsg::ServerProbe {
                        subject: subject.clone(),
                        t_ms,
                        up: outcome.up,
                        validity_ms: p.interval.0 + p.timeout.0,
                        reply,
                    };
                    if writer.send(msg).await.is_err() {
                        return;
                    }
                    if let Ok(Err(e)) = done.await {
                        tracing::error!(probe = %subject, error = %format!("{e:#}"), "storing a server probe result failed");
                    }
                }),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunwei_sla::contract::DurationMs;

    fn probe(http: Option<&str>, tcp: Option<&str>) -> ServerProbe {
        ServerProbe {
            name: "p".into(),
            http: http.map(str::to_string),
            tcp: tcp.map(str::to_string),
            expect_status: Vec::new(),
            expect_body: None,
            interval: DurationMs(60_000),
            timeout: DurationMs(1_000),
        }
    }

    /// The webhooks' SSRF guard: internal destinations are refused before any connection
    /// unless allow-listed.
    #[tokio::test]
    async fn internal_destinations_need_the_allow_list() {
        for p in [
            probe(Some("http://127.0.0.1:9/"), None),
            probe(Some("http://[::1]:9/"), None),
            probe(None, Some("10.1.2.3:5432")),
            probe(None, Some("169.254.169.254:80")),
        ] {
            let out = probe_once(&p, &[], None).await;
            assert!(!out.up, "{p:?}");
            assert!(
                out.reason.as_deref().is_some_and(
                    |r| r.contains("internal and not in notify.allow_private_networks")
                ),
                "{p:?}: {out:?}"
            );
        }
        // Allow-listed, the probe runs (and fails on the closed port, not on the guard).
        let allow = [Cidr::parse("127.0.0.0/8").unwrap()];
        let out = probe_once(&probe(None, Some("127.0.0.1:9")), &allow, None).await;
        assert!(!out.up);
        assert!(out.reason.unwrap().starts_with("connect "));
    }
}
