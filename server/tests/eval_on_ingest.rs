//! Evaluation on ingest (`rules.eval_on_ingest`): a rule group with a one-minute interval
//! raises its alert as soon as the batch carrying the failure is committed, not at the group's
//! next scheduled evaluation; `for` still counts real time. Run on SQLite and PostgreSQL.

use std::time::Duration;

use yunwei_proto::Sample;
mod common;

use common::Harness;
use yunwei_tests::{batch, now_ms};

yunwei_tests::both_backends!(alert_fires_when_the_data_arrives_not_at_the_next_interval);

const RULES: &str = "groups:
  - name: probes
    interval: 1m
    rules:
      - alert: ProbeDown
        expr: probe_success == 0
      - alert: ProbeDownForAnHour
        expr: probe_success == 0
        for: 1h
";

fn rfc3339_ms(v: &serde_json::Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .timestamp_millis()
}

/// (last evaluation, next scheduled evaluation) of the only group.
fn schedule(h: &Harness) -> (Option<i64>, i64) {
    let rules = h.state.rules.set.read().unwrap();
    let g = &rules.groups[0];
    (g.state.last_eval_ms, g.next_eval_ms)
}

async fn alert_fires_when_the_data_arrives_not_at_the_next_interval(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("probes.rules.yml");
    std::fs::write(&rules_path, RULES).unwrap();
    let Some(h) = Harness::start(backend, |c| {
        c.rules.files = vec![rules_path.clone()];
    })
    .await
    else {
        return;
    };
    assert!(h.state.config.rules.eval_on_ingest, "on by default");

    // The start-up evaluation, then the next scheduled one, at least 10 s ahead so that the
    // push below lands well before it.
    let next_tick = loop {
        match schedule(&h) {
            (Some(last), next) if last < next && next - now_ms() >= 10_000 => break next,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };

    let e = h.client.enroll("probe-host").await.unwrap();
    let t = now_ms();
    let mut b = batch(&e, "probe-host", 1, t, 0);
    b.samples = vec![Sample {
        name: "probe_success".into(),
        labels: [("probe".to_string(), "portal".to_string())].into(),
        value: 0.0,
        ts_ms: t,
    }];
    h.ok(&e, &b).await;

    // Without evaluation on ingest the alert would first appear at `next_tick`; wait past it so
    // that case fails on the assertion below rather than on a timeout.
    let alerts = loop {
        let v = h.client.get_json("/api/v1/alerts").await.unwrap();
        let alerts = v["data"]["alerts"].as_array().unwrap().clone();
        if alerts.len() == 2 || now_ms() > next_tick + 10_000 {
            break alerts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let find = |name: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .unwrap_or_else(|| panic!("no {name} alert in {alerts:?}"))
            .clone()
    };
    let down = find("ProbeDown");
    assert_eq!(down["state"], "firing", "{down}");
    assert_eq!(down["labels"]["probe"], "portal");
    let active_at = rfc3339_ms(&down["activeAt"]);
    assert!(
        active_at >= t && active_at < next_tick,
        "raised by an evaluation right after the push ({active_at}), not by the scheduled one at {next_tick}"
    );
    // `for` is measured in real time from that evaluation: an hour to go.
    let slow = find("ProbeDownForAnHour");
    assert_eq!(slow["state"], "pending", "{slow}");
    assert_eq!(rfc3339_ms(&slow["activeAt"]), active_at);
    // The early evaluation did not move the scheduled one (read before the clock: had the
    // schedule moved because the tick came, the clock is past it).
    let (_, next) = schedule(&h);
    if now_ms() < next_tick {
        assert_eq!(next, next_tick);
    }
    h.stop().await;
}
