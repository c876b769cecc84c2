//! `--replicas N` (PostgreSQL only, issue 19): N `yunwei-server` replicas on one PostgreSQL
//! database, the agents spread round robin over them (agent i pushes to replica i mod N), at the
//! steady load shape of the single-server run. Measured inside the window: the CPU time of every
//! replica and of the PostgreSQL backends serving the database (CPU time, not wall time: the
//! machine may be shared), the database's growth and the WAL written (instance-wide), and at the
//! leader the lag of its live window behind the batches every replica commits —
//! `yunwei_ha_tail_lag_seconds`, observed per batch the leader's tail applies, from the batch's
//! arrival at its replica to its arrival in the leader's window (so it includes the storing
//! replica's own commit).

use std::{sync::Arc, time::Duration};

use anyhow::{Context, bail};
use sqlx::Connection;
use tokio::{
    sync::Semaphore,
    task::JoinSet,
    time::{Instant, MissedTickBehavior},
};
use yunwei_tests::{AgentClient, Db, PgDatabase, ServerProcess, process_cpu_micros};

use super::{
    Agent, Args, ENROLL_CONCURRENCY, PgWatch, Tally, Window, enroll_all, join_all, push_once,
};

/// The role `/readyz` states.
async fn role(client: &AgentClient) -> Option<String> {
    let body = client.get_text("/readyz").await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("role: "))
        .map(str::to_string)
}

/// A histogram's `_sum`, `_count` and cumulative buckets `(le, count)` from the text format.
fn histogram(text: &str, name: &str) -> (f64, f64, Vec<(f64, f64)>) {
    let mut sum = 0.0;
    let mut count = 0.0;
    let mut buckets = Vec::new();
    for l in text.lines() {
        let Some((key, value)) = l.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if key == format!("{name}_sum") {
            sum = v;
        } else if key == format!("{name}_count") {
            count = v;
        } else if let Some(rest) = key.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let le = rest.trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            buckets.push((le, v));
        }
    }
    (sum, count, buckets)
}

/// The upper bound of the bucket holding quantile `q` of the difference of two histograms.
fn quantile_bound(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let diff: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, c - b)
        })
        .collect();
    let total = diff.last()?.1;
    if total <= 0.0 {
        return None;
    }
    diff.iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
}

struct PgSizes {
    db_bytes: i64,
    wal_lsn: String,
}

async fn pg_sizes(conn: &mut sqlx::PgConnection) -> anyhow::Result<PgSizes> {
    let (db_bytes, wal_lsn): (i64, String) =
        sqlx::query_as("SELECT pg_database_size(current_database()), pg_current_wal_lsn()::text")
            .fetch_one(&mut *conn)
            .await?;
    Ok(PgSizes { db_bytes, wal_lsn })
}

/// Runs the replicated steady phase and prints its figures.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let n = args.replicas;
    eprintln!("== postgres, {n} replicas");
    let Some(pg) = PgDatabase::create().await else {
        bail!("no PostgreSQL reachable at {}", yunwei_tests::pg_base_url());
    };
    let db = Db::Postgres(pg.url.clone());
    let mut extra = "ha: {lease_secs: 10, renew_every_secs: 2}\n".to_string();
    if args.rules {
        let root = yunwei_tests::workspace_root();
        extra.push_str(&format!(
            "rules:\n  files: [{:?}, {:?}]\n  eval_on_ingest: true\n",
            root.join("rules/host.rules.yml"),
            root.join("rules/probe.rules.yml")
        ));
    }
    let mut servers = Vec::new();
    for i in 0..n {
        let s = ServerProcess::start_replica(&db, &extra, &format!("replica-{i}"))
            .await
            .with_context(|| format!("starting replica {i}"))?;
        if !s.addr.ip().is_loopback() {
            bail!("replica {i} listens on {}, not on loopback", s.addr);
        }
        servers.push(s);
    }
    let clients: Vec<AgentClient> = servers.iter().map(AgentClient::new).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        let mut found = None;
        for (i, c) in clients.iter().enumerate() {
            if role(c).await.as_deref() == Some("leader") {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break i;
        }
        if Instant::now() > deadline {
            bail!("no replica became the leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("  replica {leader} leads");
    let t = std::time::Instant::now();
    let agents = tokio::time::timeout(
        Duration::from_secs(300),
        enroll_all(&clients[0], args.agents),
    )
    .await
    .context("enrollment took more than 300 s")??;
    eprintln!(
        "  enrolled {} agents in {:.1} s",
        agents.len(),
        t.elapsed().as_secs_f64()
    );
    let agents: Arc<Vec<Agent>> = Arc::new(agents);
    let clients = Arc::new(clients);
    // First batches (series creation) through each agent's own replica, outside the window.
    let never = {
        let t = Instant::now();
        Window { start: t, end: t }
    };
    let sem = Arc::new(Semaphore::new(ENROLL_CONCURRENCY));
    let mut set = JoinSet::new();
    for i in 0..agents.len() {
        let (clients, agents, sem) = (clients.clone(), agents.clone(), sem.clone());
        let (interval_ms, samples) = (args.interval_secs * 1000, args.samples);
        set.spawn(async move {
            let mut tally = Tally::default();
            let Ok(_permit) = sem.acquire_owned().await else {
                return tally;
            };
            push_once(
                &clients[i % clients.len()],
                &agents[i],
                interval_ms,
                samples,
                &never,
                &mut tally,
            )
            .await;
            tally
        });
    }
    let primed = join_all(set, Instant::now() + Duration::from_secs(300)).await;
    eprintln!(
        "  primed; failures outside the window: {:?}",
        primed.errors_outside
    );

    // The steady phase, as the single-server one, each agent on its replica.
    let interval = Duration::from_secs(args.interval_secs);
    let start = Instant::now() + Duration::from_millis(200);
    let wstart = start + Duration::from_secs(args.warmup_secs);
    let window = Window {
        start: wstart,
        end: wstart + Duration::from_secs(args.duration_secs),
    };
    let count = agents.len();
    let mut set = JoinSet::new();
    for i in 0..count {
        let (clients, agents) = (clients.clone(), agents.clone());
        let (interval_ms, samples) = (args.interval_secs * 1000, args.samples);
        let offset = interval.mul_f64(i as f64 / count as f64);
        set.spawn(async move {
            let mut tally = Tally::default();
            let mut tick = tokio::time::interval_at(start + offset, interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let t = tick.tick().await;
                if t >= window.end {
                    break;
                }
                push_once(
                    &clients[i % clients.len()],
                    &agents[i],
                    interval_ms,
                    samples,
                    &window,
                    &mut tally,
                )
                .await;
            }
            tally
        });
    }
    eprintln!(
        "  steady: {count} agents over {n} replicas, one batch of {} samples every {} s each; \
         warmup {} s, measuring {} s",
        args.samples, args.interval_secs, args.warmup_secs, args.duration_secs
    );
    let mut watch = PgWatch {
        conn: sqlx::PgConnection::connect(&pg.url).await?,
    };
    let mut sizes_conn = sqlx::PgConnection::connect(&pg.url).await?;
    let cpu = |servers: &[ServerProcess]| -> Vec<u64> {
        servers
            .iter()
            .map(|s| process_cpu_micros(s.pid()).unwrap_or(0))
            .collect()
    };
    let lag = |text: &str| histogram(text, "yunwei_ha_tail_lag_seconds");
    // Batches the leader's tail stepped over, its own writer having added them already.
    let own = |text: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("yunwei_ha_tail_own_batches_total ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    };
    tokio::time::sleep_until(window.start).await;
    let cpu_before = cpu(&servers);
    let pg_before = watch.cpu().await?;
    let sizes_before = pg_sizes(&mut sizes_conn).await?;
    let (lag_before, own_before) = {
        let text = clients[leader].get_text("/metrics").await?;
        (lag(&text), own(&text))
    };
    // The window-lag gauge, sampled every second.
    let mut gauge = Vec::new();
    while Instant::now() < window.end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(text) = clients[leader].get_text("/metrics").await
            && let Some(v) = text.lines().find_map(|l| {
                l.strip_prefix("yunwei_ha_window_lag_seconds ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        {
            gauge.push(v);
        }
    }
    let cpu_after = cpu(&servers);
    let pg_after = watch.cpu().await?;
    let sizes_after = pg_sizes(&mut sizes_conn).await?;
    let (lag_after, own_after) = {
        let text = clients[leader].get_text("/metrics").await?;
        (lag(&text), own(&text))
    };
    let mut tally = join_all(set, window.end + Duration::from_secs(35)).await;
    tally.latencies_us.sort_unstable();
    let wal: i64 = sqlx::query_scalar(&format!(
        "SELECT pg_wal_lsn_diff('{}', '{}')::bigint",
        sizes_after.wal_lsn, sizes_before.wal_lsn
    ))
    .fetch_one(&mut sizes_conn)
    .await?;
    let still_leader = role(&clients[leader]).await;

    let samples = tally.acked_samples.max(1) as f64;
    let per = |us: u64| us as f64 / samples;
    let replica_us: Vec<u64> = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let pg_us: u64 = pg_after
        .iter()
        .map(|(pid, us)| us.saturating_sub(pg_before.get(pid).copied().unwrap_or(0)))
        .sum();
    let servers_us: u64 = replica_us.iter().sum();
    let pct = |v: &[u64], q: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1] as f64 / 1000.0)
    };
    let lag_n = lag_after.1 - lag_before.1;
    let lag_mean_ms = if lag_n > 0.0 {
        Some(1000.0 * (lag_after.0 - lag_before.0) / lag_n)
    } else {
        None
    };
    let fmt = |v: Option<f64>, p: usize| v.map_or_else(|| "-".into(), |v| format!("{v:.p$}"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "yunwei ingest benchmark, {n} replicas on one PostgreSQL: {} agents (agent i → replica i mod {n}), \
         {} s interval, {} samples/batch, {} s measured after {} s warmup; {cores} cores shared with the \
         load generator and other work, so CPU figures are CPU time (utime+stime from /proc), not wall time",
        args.agents, args.interval_secs, args.samples, args.duration_secs, args.warmup_secs
    );
    println!();
    println!(
        "| replicas | samples/s | replicas' CPU µs/sample | +PG backends µs/sample | per replica µs/sample (leader first) | p50 ms | p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|i| *i != leader);
    println!(
        "| {n} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
        tally.acked_samples as f64 / window.secs(),
        per(servers_us),
        per(servers_us + pg_us),
        order
            .iter()
            .map(|i| format!("{:.2}", per(replica_us[*i])))
            .collect::<Vec<_>>()
            .join(" / "),
        fmt(pct(&tally.latencies_us, 0.5), 1),
        fmt(pct(&tally.latencies_us, 0.99), 1),
        if tally.errors.is_empty() {
            "0".to_string()
        } else {
            format!("{:?}", tally.errors)
        },
    );
    println!();
    println!(
        "- window lag at the leader (yunwei_ha_tail_lag_seconds, per batch applied by its tail, arrival at \
         any replica → leader's window): {} batches, mean {} ms, p50 ≤ {} ms, p99 ≤ {} ms (bucket bounds); \
         the gauge yunwei_ha_window_lag_seconds sampled each second: max {} ms; {} batches of the leader's own \
         stepped over by its tail (its writer had added them)",
        lag_n,
        fmt(lag_mean_ms, 1),
        fmt(
            quantile_bound(&lag_before.2, &lag_after.2, 0.5).map(|s| s * 1000.0),
            0
        ),
        fmt(
            quantile_bound(&lag_before.2, &lag_after.2, 0.99).map(|s| s * 1000.0),
            0
        ),
        fmt(
            gauge.iter().cloned().reduce(f64::max).map(|s| s * 1000.0),
            0
        ),
        own_after - own_before,
    );
    println!(
        "- CPU in the window: replicas {:.2} s ({}), PostgreSQL backends {:.2} s; acked {} batches, {} samples",
        servers_us as f64 / 1e6,
        order
            .iter()
            .map(|i| format!(
                "{}{} {:.2} s",
                if *i == leader { "leader " } else { "" },
                i,
                replica_us[*i] as f64 / 1e6
            ))
            .collect::<Vec<_>>()
            .join(", "),
        pg_us as f64 / 1e6,
        tally.acked_batches,
        tally.acked_samples,
    );
    println!(
        "- database growth {:.1} MB ({:.1} bytes/sample, heap + indexes + TOAST); WAL written {:.1} MB \
         ({:.1} bytes/sample; instance-wide, so an upper bound if other databases were busy)",
        (sizes_after.db_bytes - sizes_before.db_bytes) as f64 / 1e6,
        (sizes_after.db_bytes - sizes_before.db_bytes) as f64 / samples,
        wal as f64 / 1e6,
        wal as f64 / samples,
    );
    println!(
        "- replica {leader} led throughout: {}",
        still_leader.as_deref() == Some("leader")
    );
    for e in &tally.error_samples {
        println!("  error sample: {e}");
    }
    for (i, s) in servers.iter().enumerate() {
        let bad = s
            .log()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .count();
        if bad > 0 {
            eprintln!("  replica {i}: {bad} WARN/ERROR lines in its log");
        }
    }
    drop(servers);
    drop(pg);
    Ok(())
}
