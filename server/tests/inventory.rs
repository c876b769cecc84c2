//! Systems and probes on SQLite and PostgreSQL: `GET /api/v1/probes` lists each probe with its
//! current state from the stored intervals and the contract systems that select it;
//! `GET /api/v1/systems` applies each system's `down_when` rule to its hosts and probes; hosts
//! are up, down (silent after reporting) or unknown (never reported).

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::Harness;
use serde_json::Value;
use yunwei_proto::Sample;
use yunwei_tests::{Enrolled, batch, now_ms};

yunwei_tests::both_backends!(systems_and_probes_show_current_states_under_each_rule);

/// Two systems over the test hosts (`system: 政务服务网`, see `yunwei_tests::facts`): one down
/// when any probe fails, one only when every host is down.
const CONTRACT: &str = r#"id: inv
name: 清单测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, down_when: any_probe, probes: { system: 政务服务网 } }
  - { id: hosts, name: 主机层, tier: core, down_when: all_hosts, hosts: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9 }
scoring:
  base: 100
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 0 }
"#;

/// A batch at `t` from `e` with one result of the probe `home`, announcing `interval_ms`.
fn probe_batch(e: &Enrolled, seq: u64, t: i64, up: bool, interval_ms: u64) -> yunwei_proto::Batch {
    let mut b = batch(e, "portal-01", seq, t, 0);
    b.interval_ms = interval_ms;
    b.samples.push(Sample {
        name: "probe_success".into(),
        labels: BTreeMap::from([("probe".to_string(), "home".to_string())]).into(),
        value: if up { 1.0 } else { 0.0 },
        ts_ms: t,
    });
    b
}

fn by_id<'a>(list: &'a Value, key: &str, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x[key] == id)
        .unwrap_or_else(|| panic!("no {key} = {id} in {list}"))
}

async fn systems_and_probes_show_current_states_under_each_rule(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, CONTRACT).unwrap();
    let Some(h) = Harness::start(backend, move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
    })
    .await
    else {
        return;
    };
    let e = h.client.enroll("portal-01").await.unwrap();
    let never = h.client.enroll("spare-01").await.unwrap();
    // The probe is up for a minute, then fails.
    let t0 = now_ms() - 60_000;
    h.ok(&e, &probe_batch(&e, 1, t0, true, 15_000)).await;
    h.ok(&e, &probe_batch(&e, 2, t0 + 30_000, true, 15_000))
        .await;
    let failed_at = now_ms() - 1_000;
    h.ok(&e, &probe_batch(&e, 3, failed_at, false, 15_000))
        .await;

    let probes = h.client.get_json("/api/v1/probes").await.unwrap();
    let subject = format!("{}/home", e.agent_id);
    let p = by_id(&probes["probes"], "subject", &subject);
    assert_eq!(p["state"], "down", "{p}");
    // The observation time is corrected by the batch's age in transit (a few ms).
    let since = p["since"].as_i64().unwrap();
    assert!((since - failed_at).abs() < 5_000, "{p}");
    assert_eq!(p["hostname"], "portal-01");
    assert_eq!(p["probe"], "home");
    assert_eq!(p["systems"], serde_json::json!(["inv/portal"]), "{p}");
    assert!(p["down_ms_24h"].as_i64().unwrap() > 0, "{p}");
    let avail = p["availability_24h_percent"].as_f64().unwrap();
    assert!(avail > 50.0 && avail < 100.0, "{p}");
    assert_eq!(probes["probes"].as_array().unwrap().len(), 1, "{probes}");

    let systems = h.client.get_json("/api/v1/systems").await.unwrap();
    let portal = by_id(&systems["systems"], "id", "portal");
    assert_eq!(portal["state"], "down", "a failed probe: {portal}");
    assert_eq!(portal["contract_id"], "inv");
    assert_eq!(portal["probes"][0]["id"], subject.as_str());
    assert_eq!(portal["hosts"], serde_json::json!([]), "{portal}");
    let hosts = by_id(&systems["systems"], "id", "hosts");
    assert_eq!(hosts["state"], "up", "one host reports: {hosts}");
    assert_eq!(hosts["down_when"], "all_hosts");
    let members = hosts["hosts"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{hosts}");
    assert_eq!(by_id(&hosts["hosts"], "id", &e.agent_id)["state"], "up");
    assert_eq!(
        by_id(&hosts["hosts"], "id", &never.agent_id)["state"],
        "unknown"
    );

    // The probe recovers: the portal is up again.
    h.ok(&e, &probe_batch(&e, 4, now_ms(), true, 15_000)).await;
    let systems = h.client.get_json("/api/v1/systems").await.unwrap();
    assert_eq!(by_id(&systems["systems"], "id", "portal")["state"], "up");

    // The host now announces a 1 s interval and goes silent: the host list calls it down
    // (it stopped reporting); the host that never reported stays unknown. Its status intervals
    // end, so the system that counts hosts shows no data (unknown), as the SLA engine counts
    // silence: missing data, not downtime.
    h.ok(&e, &probe_batch(&e, 5, now_ms(), true, 1_000)).await;
    let missed = i64::from(h.state.config.ingest.unknown_after_missed_batches);
    tokio::time::sleep(Duration::from_millis((missed + 1) as u64 * 1_000 + 15_000)).await;
    let list = h.client.get_json("/api/v1/hosts").await.unwrap();
    assert_eq!(
        by_id(&list["hosts"], "agent_id", &e.agent_id)["status"],
        "down",
        "{list}"
    );
    assert_eq!(
        by_id(&list["hosts"], "agent_id", &never.agent_id)["status"],
        "unknown",
        "{list}"
    );
    let systems = h.client.get_json("/api/v1/systems").await.unwrap();
    assert_eq!(
        by_id(&systems["systems"], "id", "hosts")["state"],
        "unknown",
        "{systems}"
    );
    h.stop().await;
}
