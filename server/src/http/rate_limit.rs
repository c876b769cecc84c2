//! Per-source request rate limits: token buckets keyed by the client's address
//! ([`super::ClientAddr`]), checked before a request reaches the store.
//!
//! Two classes, each with its own bucket per source:
//! - `login`: `POST /api/v1/auth/login`, every attempt (`http.rate_limit.login_per_minute`,
//!   `login_burst`), on top of the per-account lockout;
//! - `anonymous`: any other request that carries neither an `Authorization` header nor a
//!   session cookie (console pages, acknowledgement links, refused calls;
//!   `anonymous_per_sec`, `anonymous_burst`). Agent ingest and enrollment have their own
//!   authentication and limits and are not counted here.
//!
//! An empty bucket answers 429 `too_many_requests` with `Retry-After`, counted in
//! `yunwei_http_rate_limited_total{class}`. Authenticated requests never draw from a bucket.
//! The table is bounded ([`MAX_SOURCES`]): IPv6 clients are keyed by their /64, idle entries
//! (bucket full again) are dropped when it fills, and sources beyond the bound share one
//! overflow bucket per class.
//!
//! Each replica keeps its own table. On PostgreSQL, where several replicas may serve one
//! cluster, a login attempt that its replica's bucket lets through also draws from a bucket
//! shared in the store (`login_buckets`, one statement per attempt), so a client spreading
//! its guesses over N replicas behind a load balancer still gets the configured rate, not N
//! times it. The `anonymous` class stays per replica: it protects each replica's own CPU from a
//! flood, which a store round trip per request would defeat; behind a balancer a client may
//! send up to N times `anonymous_per_sec` to the cluster. A store error lets the attempt
//! through to the login, which needs the store anyway and reports it.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use axum::{
    extract::{Request, State as AxState},
    http::{Method, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;
use crate::{
    AppState,
    config::RateLimitConfig,
    now_ms,
    store::{Backend, Store},
};

/// How many sources the table tracks before new ones share the overflow bucket.
pub const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Login,
    Anonymous,
}

impl Class {
    /// Its `class` label, one of [`crate::metrics::RATE_LIMIT_CLASSES`].
    pub fn label(self) -> &'static str {
        match self {
            Class::Login => "login",
            Class::Anonymous => "anonymous",
        }
    }
}

/// A source as the table keys it: an IPv4 address, an IPv6 /64, or the overflow slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Addr(IpAddr),
    Overflow,
}

fn source_key(ip: IpAddr) -> Source {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Source::Addr(IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], 0, 0, 0, 0,
            )))
        }
        v4 => Source::Addr(v4),
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
}

/// A class's rate: tokens per millisecond and the bucket's size.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_ms: f64,
    burst: f64,
}

impl Rate {
    fn of(cfg: &RateLimitConfig, class: Class) -> Option<Rate> {
        let (per_ms, burst) = match class {
            Class::Login => (cfg.login_per_minute as f64 / 60_000.0, cfg.login_burst),
            Class::Anonymous => (cfg.anonymous_per_sec as f64 / 1000.0, cfg.anonymous_burst),
        };
        (per_ms > 0.0 && burst > 0).then_some(Rate {
            per_ms,
            burst: burst as f64,
        })
    }
}

/// The buckets of every source this server has seen recently.
pub struct RateLimiter {
    cfg: RateLimitConfig,
    max_sources: usize,
    buckets: Mutex<HashMap<(Source, Class), Bucket>>,
    /// When this replica last deleted refilled shared login buckets.
    shared_swept_ms: AtomicI64,
}

/// How often a replica deletes the shared login buckets that have filled up again.
const SHARED_SWEEP_EVERY_MS: i64 = 60_000;

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> RateLimiter {
        Self::with_capacity(cfg, MAX_SOURCES)
    }

    fn with_capacity(cfg: RateLimitConfig, max_sources: usize) -> RateLimiter {
        RateLimiter {
            cfg,
            max_sources,
            buckets: Mutex::new(HashMap::new()),
            shared_swept_ms: AtomicI64::new(0),
        }
    }

    /// Takes one token from `ip`'s login bucket shared by every replica (PostgreSQL), after
    /// the in-memory one let the attempt through: `Err(seconds until the next token)` when it
    /// was empty. Now and then deletes the shared buckets that have filled up again.
    pub async fn take_shared_login(
        &self,
        store: &Store,
        ip: IpAddr,
        now_ms: i64,
    ) -> Result<(), u64> {
        let Some(rate) = Rate::of(&self.cfg, Class::Login) else {
            return Ok(());
        };
        if store.backend() != Backend::Postgres {
            return Ok(());
        }
        let source = match source_key(ip) {
            Source::Addr(a) => a.to_string(),
            Source::Overflow => unreachable!("source_key gives an address"),
        };
        let last = self.shared_swept_ms.load(Ordering::Relaxed);
        if now_ms - last >= SHARED_SWEEP_EVERY_MS
            && self
                .shared_swept_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // A bucket untouched for the time it takes to fill from empty is full: its row
            // says nothing a new one would not.
            let full_after_ms = (rate.burst / rate.per_ms).ceil() as i64;
            if let Err(e) = store.forget_login_buckets(now_ms - full_after_ms).await {
                tracing::warn!(error = %e, "deleting refilled shared login buckets failed");
            }
        }
        match store
            .take_login_token(&source, rate.burst, rate.per_ms, now_ms)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(wait_ms)) => Err(((wait_ms as f64) / 1000.0).ceil().max(1.0) as u64),
            Err(e) => {
                tracing::warn!(error = %e, "the shared login bucket could not be read; the attempt goes through");
                Ok(())
            }
        }
    }

    /// Takes one token from `ip`'s bucket of `class` at `now_ms`: `Ok` when there was one,
    /// else `Err(seconds until the next token)`. A class whose rate is 0 is not limited.
    pub fn take(&self, ip: IpAddr, class: Class, now_ms: i64) -> Result<(), u64> {
        let Some(rate) = Rate::of(&self.cfg, class) else {
            return Ok(());
        };
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = (source_key(ip), class);
        if !map.contains_key(&key) && map.len() >= self.max_sources {
            // Drop the entries whose bucket has refilled: they hold nothing a new entry
            // would not.
            map.retain(|(_, c), b| {
                Rate::of(&self.cfg, *c).is_some_and(|r| {
                    b.tokens + (now_ms - b.last_ms).max(0) as f64 * r.per_ms < r.burst
                })
            });
            if map.len() >= self.max_sources {
                key = (Source::Overflow, class);
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: rate.burst,
            last_ms: now_ms,
        });
        let elapsed = (now_ms - b.last_ms).max(0) as f64;
        b.tokens = (b.tokens + elapsed * rate.per_ms).min(rate.burst);
        b.last_ms = b.last_ms.max(now_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = (1.0 - b.tokens) / rate.per_ms;
            Err((wait_ms / 1000.0).ceil().max(1.0) as u64)
        }
    }

    /// How many entries the table holds (for tests).
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which bucket `req` draws from, if any.
fn class_of(req: &Request) -> Option<Class> {
    let path = req.uri().path();
    if path == "/api/v1/auth/login" && req.method() == Method::POST {
        return Some(Class::Login);
    }
    if path == "/api/v1/ingest" || path == "/api/v1/enroll" {
        return None;
    }
    let h = req.headers();
    let has_session = super::authz::cookie_value(h, super::authz::COOKIE).is_some();
    (!h.contains_key(header::AUTHORIZATION) && !has_session).then_some(Class::Anonymous)
}

/// The middleware: answers 429 when the request's class bucket for its source is empty.
pub async fn limit(AxState(state): AxState<Arc<AppState>>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<super::ClientAddr>()
        .and_then(|c| c.0);
    let refused = match (class_of(&req), ip) {
        (Some(class), Some(ip)) => {
            let now = now_ms();
            match state.rate_limits.take(ip, class, now) {
                Err(secs) => Some((class, secs)),
                Ok(()) if class == Class::Login => state
                    .rate_limits
                    .take_shared_login(&state.store, ip, now)
                    .await
                    .err()
                    .map(|secs| (class, secs)),
                Ok(()) => None,
            }
        }
        _ => None,
    };
    if let Some((class, secs)) = refused {
        state
            .metrics
            .http_rate_limited
            .with_label_values(&[class.label()])
            .inc();
        let what = match class {
            Class::Login => "too many login attempts from this address",
            Class::Anonymous => "too many requests without credentials from this address",
        };
        return ApiError::too_many(&format!("{what}; try again in {secs} s"), secs).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RateLimitConfig {
        RateLimitConfig {
            login_per_minute: 6,
            login_burst: 3,
            anonymous_per_sec: 10,
            anonymous_burst: 5,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let l = RateLimiter::new(cfg());
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(l.take(a, Class::Login, 1_000).is_ok());
        }
        // 6 a minute: the next token comes 10 s after the bucket emptied.
        assert_eq!(l.take(a, Class::Login, 1_000), Err(10));
        assert_eq!(l.take(a, Class::Login, 6_000), Err(5));
        assert!(l.take(a, Class::Login, 11_000).is_ok());
        assert!(l.take(a, Class::Login, 11_000).is_err());
    }

    #[test]
    fn sources_and_classes_have_their_own_buckets() {
        let l = RateLimiter::new(cfg());
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..3 {
            l.take(a, Class::Login, 0).unwrap();
        }
        assert!(l.take(a, Class::Login, 0).is_err());
        assert!(l.take(b, Class::Login, 0).is_ok());
        assert!(l.take(a, Class::Anonymous, 0).is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let l = RateLimiter::new(cfg());
        for i in 0..3 {
            l.take(ip(&format!("2001:db8:1:2::{i}")), Class::Login, 0)
                .unwrap();
        }
        assert!(l.take(ip("2001:db8:1:2:ffff::9"), Class::Login, 0).is_err());
        assert!(l.take(ip("2001:db8:1:3::1"), Class::Login, 0).is_ok());
        // An IPv4-mapped address is the IPv4 client.
        for _ in 0..3 {
            l.take(ip("::ffff:192.0.2.7"), Class::Login, 0).unwrap();
        }
        assert!(l.take(ip("192.0.2.7"), Class::Login, 0).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_overflow_is_limited_too() {
        let l = RateLimiter::with_capacity(cfg(), 4);
        for i in 0..4 {
            l.take(ip(&format!("192.0.2.{i}")), Class::Login, 0)
                .unwrap();
        }
        // Full of busy entries: newcomers share the overflow bucket.
        for i in 10..13 {
            l.take(ip(&format!("192.0.2.{i}")), Class::Login, 0)
                .unwrap();
        }
        assert!(l.take(ip("192.0.2.20"), Class::Login, 0).is_err());
        assert!(l.len() <= 5);
        // A minute later every bucket has refilled: idle entries make room again.
        assert!(l.take(ip("192.0.2.30"), Class::Login, 60_000).is_ok());
        assert!(l.len() <= 2);
    }

    #[test]
    fn a_zero_rate_is_not_limited() {
        let l = RateLimiter::new(RateLimitConfig {
            login_per_minute: 0,
            ..cfg()
        });
        for _ in 0..1000 {
            l.take(ip("192.0.2.1"), Class::Login, 0).unwrap();
        }
        assert!(l.is_empty());
    }
}
