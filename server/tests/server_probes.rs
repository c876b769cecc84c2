//! Independent probes (issue 21, item 3): a contract's `server_probes` are probed by the server
//! itself, and their results are stored apart from the agents' (kind `server_probe`, source
//! `server`). A real local HTTP service answers by source address — 200 to the agent's
//! (127.0.0.1), 503 to the server's (`contracts.server_probe_source: 127.0.0.2`) — and a real
//! `yunwei-agent` probes it too: the agent's evidence says up while the server's says down.
//! The contract's `availability_from` then decides whose view each system's availability
//! follows: `web` the agents' (up), `web-office` the server's (down), `web-both` either's
//! down (down); the reports say which vantage decided, and recompute from their evidence.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::time::{Duration, Instant};

use common::Harness;
use yunwei_server::config::Cidr;
use yunwei_server::ingest::{KIND_PROBE, KIND_SERVER_PROBE};
use yunwei_server::timeline::State;
use yunwei_tests::{SECRET, bin, now_ms, terminate_child};

yunwei_tests::both_backends!(server_and_agent_probes_are_separate_evidence);

/// An HTTP service answering `200 ok` to connections from 127.0.0.1 and `503` to any other
/// source address.
fn by_source_service() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let from_agent = c
                .peer_addr()
                .is_ok_and(|p| p.ip() == IpAddr::from([127, 0, 0, 1]));
            let mut buf = [0u8; 2048];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let resp: &[u8] = if from_agent {
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nstatus ok"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
            };
            let _ = c.write_all(resp);
        }
    });
    format!("http://{addr}/healthz")
}

async fn spans(h: &Harness, kind: &str, suffix: &str) -> Vec<(State, i64, i64)> {
    h.state
        .store
        .intervals_between(kind, now_ms() - 600_000, now_ms() + 600_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(subject, _)| subject.ends_with(suffix))
        .map(|(_, s)| (s.state, s.start, s.end))
        .collect()
}

async fn server_and_agent_probes_are_separate_evidence(backend: &str) {
    let url = by_source_service();
    let dir = tempfile::tempdir().unwrap();
    let contract = dir.path().join("contract.yml");
    std::fs::write(
        &contract,
        format!(
            "id: office\nname: 独立拨测\nparties: {{ buyer: 甲方单位, vendor: 乙方单位 }}\n\
             period: {{ start: 2020-01-01, end: 2099-12-31 }}\nsystems:\n  - id: web\n    \
             name: 门户\n    tier: core\n    probes: {{ system: e2e }}\n    server_probes:\n      \
             - {{ name: web-home, http: \"{url}\", expect_status: [200], expect_body: ok, \
             interval: 5s, timeout: 2s }}\n  - id: web-office\n    name: 门户（服务端判定）\n    \
             tier: core\n    probes: {{ system: e2e }}\n    availability_from: server_probes\n    \
             server_probes:\n      - {{ name: office-home, http: \"{url}\", expect_body: ok, \
             interval: 5s, timeout: 2s }}\n  - id: web-both\n    name: 门户（双方判定）\n    \
             tier: core\n    probes: {{ system: e2e }}\n    availability_from: both\n    \
             server_probes:\n      - {{ name: both-home, http: \"{url}\", expect_body: ok, \
             interval: 5s, timeout: 2s }}\nobjectives:\n  availability:\n    core: {{ \
             target_percent: 99.9, min_coverage_percent: 0 }}\nscoring: {{}}\ngrades:\n  \
             - {{ id: pass, name: 合格, name_en: Pass, min_score: 0 }}\n"
        ),
    )
    .unwrap();
    let Some(h) = Harness::start(backend, |c| {
        c.contracts.files = vec![contract.clone()];
        c.contracts.scheduled_reports = false;
        c.contracts.run_inspections = false;
        c.contracts.server_probe_source = Some(IpAddr::from([127, 0, 0, 2]));
        c.notify.allow_private_networks = vec![Cidr::parse("127.0.0.0/8").unwrap()];
    })
    .await
    else {
        return;
    };
    let agent_config = dir.path().join("agent.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "server_url: {}\nenrollment_secret: {SECRET}\nstate_dir: state\ninterval_secs: 1\n\
             metrics_listen: \"off\"\nprocess_scan_interval_secs: 0\nlabels:\n  system: e2e\n\
             probes:\n  - name: web-home\n    http: {url}\n    expect_body: ok\n    \
             interval_secs: 1\n    timeout_secs: 1\n",
            h.client.base()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let mut agent = std::process::Command::new(bin("yunwei-agent"))
        .args(["run", "--config"])
        .arg(&agent_config)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let (agent_spans, server_spans) = loop {
        let a = spans(&h, KIND_PROBE, "/web-home").await;
        let s = spans(&h, KIND_SERVER_PROBE, "office/web-home").await;
        let covered = |v: &[(State, i64, i64)]| v.iter().map(|(_, a, b)| b - a).sum::<i64>();
        // Two server runs (5 s apart) joined into one span, and agent results over it.
        if covered(&s) >= 10_000 && covered(&a) >= 10_000 {
            break (a, s);
        }
        assert!(
            Instant::now() < deadline,
            "timed out: agent {a:?}, server {s:?}; agent log: {}",
            std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // While the agent runs, the probe list shows the server's probe beside the agent's.
    let v = h.client.get_json("/api/v1/probes").await.unwrap();
    let probes = v["probes"].as_array().unwrap();
    let of = |source: &str| {
        probes
            .iter()
            .find(|p| p["source"] == source && p["probe"] == "web-home")
            .unwrap_or_else(|| panic!("no {source} probe in {v}"))
    };
    assert_eq!(of("agent")["state"], "up", "{v}");
    assert_eq!(of("server")["state"], "down", "{v}");
    assert_eq!(of("server")["subject"], "office/web-home", "{v}");

    let status = terminate_child(&mut agent);
    assert!(status.success(), "{status}");
    assert!(
        agent_spans.iter().all(|(s, _, _)| *s == State::Up),
        "the agent's probe (from 127.0.0.1) sees 200: {agent_spans:?}"
    );
    assert!(
        server_spans.iter().all(|(s, _, _)| *s == State::Down),
        "the server's probe (from 127.0.0.2) sees 503: {server_spans:?}"
    );

    // The assessment lists the disagreement with its minutes: the agents say up, the server
    // down. (A two-day custom period around now, so no month boundary splits it.)
    let tz = h.state.contracts.list()[0].contract.time_zone;
    let today = yunwei_sla::assess::local_date(now_ms(), tz);
    let period = format!(
        "{}..{}",
        today.pred_opt().unwrap(),
        today.succ_opt().unwrap()
    );
    let a = h
        .client
        .get_json(&format!(
            "/api/v1/contracts/office/assessment?period={period}"
        ))
        .await
        .unwrap();
    let list: Vec<serde_json::Value> = a["disagreements"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d["system"] == "web")
        .collect();
    assert!(!list.is_empty(), "{a}");
    let mut total_ms = 0;
    for d in &list {
        assert_eq!(d["system"], "web", "{d}");
        assert_eq!(d["probe"], "web-home", "{d}");
        assert_eq!(d["agents"], "up", "{d}");
        assert_eq!(d["server"], "down", "{d}");
        let (from, to) = (d["from_ms"].as_i64().unwrap(), d["to_ms"].as_i64().unwrap());
        let minutes = ((to - from) as f64 / 60_000.0 * 100.0).round() / 100.0;
        assert_eq!(d["minutes"].as_f64().unwrap(), minutes, "{d}");
        assert!(
            d["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e.as_str().unwrap().starts_with("interval:server_probe:")),
            "{d}"
        );
        total_ms += to - from;
    }
    assert!(total_ms >= 5_000, "{list:?}");

    // Whose view decides: the agents' for `web` (up: no downtime), the server's for
    // `web-office` and either's down for `web-both` (down: the server's outage, resting on
    // its intervals), each named in the assessment.
    let system = |id: &str| {
        a["systems"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["system"] == id)
            .unwrap_or_else(|| panic!("no system {id} in {a}"))
            .clone()
    };
    let web = system("web");
    assert!(web.get("decided_by").is_none(), "{web}");
    assert_eq!(web["downtime_minutes"].as_f64().unwrap(), 0.0, "{web}");
    assert_eq!(web["actual_percent"].as_f64().unwrap(), 100.0, "{web}");
    for (id, vantage, probe) in [
        ("web-office", "server_probes", "office-home"),
        ("web-both", "both", "both-home"),
    ] {
        let s = system(id);
        assert_eq!(s["decided_by"], vantage, "{s}");
        // The server's down time is the system's downtime: the stored server intervals, up to
        // the instant assessed (they have grown since, and reach past it by their validity).
        let until = a["assessed_until_ms"].as_i64().unwrap();
        let server_ms: i64 = spans(&h, KIND_SERVER_PROBE, &format!("office/{probe}"))
            .await
            .iter()
            .filter(|(st, _, _)| *st == State::Down)
            .map(|(_, a, b)| (*b).min(until) - a)
            .filter(|ms| *ms > 0)
            .sum();
        assert!(server_ms >= 5_000, "{id}: {server_ms}");
        let down = s["downtime_minutes"].as_f64().unwrap();
        assert!(
            (down - server_ms as f64 / 60_000.0).abs() < 0.02,
            "{id}: downtime {down} min, server down {server_ms} ms: {s}"
        );
        assert_eq!(s["met"], false, "{s}");
        let outages = s["outages"].as_array().unwrap();
        assert!(!outages.is_empty(), "{s}");
        for o in outages {
            let ev = o["evidence"].as_array().unwrap();
            assert!(
                !ev.is_empty()
                    && ev
                        .iter()
                        .all(|e| e.as_str().unwrap().starts_with("interval:server_probe:")),
                "{id}: {o}"
            );
        }
    }

    // And in the report, in English and Chinese, with the server interval in the appendix.
    // The report says which vantage decided, and recomputes from its evidence file.
    let key = yunwei_server::report_keys::load_public(
        &yunwei_server::report_keys::public_key_path(&h.state.config.data_dir),
    )
    .unwrap();
    for (lang, heading, decided) in [
        (
            "en",
            "Independent probes disagreeing with the agents",
            "Availability decided by (the contract's availability_from): 门户（服务端判定）: the \
             server's own probes; 门户（双方判定）: agents and server probes (down when either \
             says down); other systems by the vendor's agents.",
        ),
        (
            "zh-CN",
            "独立拨测与代理结论不一致",
            "可用性判定依据（合同 availability_from）：门户（服务端判定）: 服务端独立拨测；\
             门户（双方判定）: 代理与服务端拨测（任一方判为中断即中断）；其余系统按运维方代理的监测数据判定。",
        ),
    ] {
        let resp = h
            .client
            .api(reqwest::Method::POST, "/api/v1/reports")
            .json(&serde_json::json!({
                "contract": "office", "period": period, "formats": ["html", "json"], "lang": lang,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let archived: serde_json::Value = resp.json().await.unwrap();
        let html = h
            .client
            .get_text(&format!("/api/v1/reports/{}/html", archived["id"]))
            .await
            .unwrap();
        let at = html
            .find(heading)
            .unwrap_or_else(|| panic!("{lang}: no {heading}"));
        let table = &html[at..at + html[at..].find("</table>").unwrap()];
        assert!(table.contains("web-home"), "{table}");
        assert!(table.contains("interval:server_probe:"), "{table}");
        let summary = if lang == "en" {
            "server probe web-home: down"
        } else {
            "服务端拨测 web-home: 中断"
        };
        assert!(
            html.contains(summary),
            "{lang}: the appendix describes the server interval"
        );
        assert!(
            html.contains(&yunwei_reports::html::esc(decided)),
            "{lang}: no vantage line"
        );
        let id = archived["id"].as_i64().unwrap();
        let json_file = yunwei_server::reports::file(
            &h.state.store,
            id,
            yunwei_server::reports::ReportFormat::Json,
        )
        .await
        .unwrap()
        .unwrap();
        let checked = yunwei_reports::verify(&json_file, &key).unwrap();
        let evidence = h
            .state
            .store
            .report_file(id, yunwei_server::reports::EVIDENCE)
            .await
            .unwrap()
            .expect("the evidence file is archived");
        let outcome = yunwei_reports::recompute::recompute(&checked.report, &evidence).unwrap();
        assert!(
            outcome.differences.is_empty(),
            "{lang}: does not recompute: {:?}",
            outcome.differences
        );
        let office = checked
            .report
            .availability
            .iter()
            .find(|s| s.system_id == "web-office")
            .unwrap();
        assert_eq!(
            office.decided_by,
            Some(yunwei_reports::model::DecidedBy::ServerProbes)
        );
    }
    h.stop().await;
}
