//! The web console in real headless Chromium (through chromedriver): logins for each role,
//! a reviewer refused an operator action with a visible 403, an operator allowed it, five wrong
//! passwords locking an account, and the English switch; then contracts, incidents, alert
//! groups, silences and maintenance requests with their role checks; the review pages (a
//! backdating request approved with its button, a pending host assigned). Screenshots of every page
//! in zh-CN and en land in `target/console-screenshots/`.

use std::path::PathBuf;

use yunwei_tests::{
    AgentClient, Db, ServerProcess, batch, cli_token, now_ms, webdriver::Browser, workspace_root,
};

fn screenshot_dir() -> PathBuf {
    // target/<profile>/deps/console-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .expect("a target dir")
        .join("console-screenshots")
}

/// Adds a user through the CLI and returns the generated password it prints once.
fn add_user(server: &ServerProcess, name: &str, role: &str) -> String {
    let out = server.cli(&["user", "add", name, "--role", role]).unwrap();
    out.split("password (shown once): ")
        .nth(1)
        .expect("the password is printed")
        .trim()
        .to_string()
}

async fn login(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/")).await.unwrap();
    b.fill("#login-user", user).await.unwrap();
    b.fill("#login-password", password).await.unwrap();
    b.click("#login-submit").await.unwrap();
}

async fn logout(b: &Browser) {
    b.click("#logout").await.unwrap();
    b.wait("#login-form").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_roles_lockout_and_languages_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("console.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: console\n    rules:\n      - alert: TestMetricHigh\n        expr: test_metric > 0\n        labels:\n          severity: critical\n        annotations:\n          summary: test metric is high\n",
    )
    .unwrap();
    let server = ServerProcess::start(
        &Db::Sqlite,
        &format!(
            "auth:\n  lockout_secs: 4\nretention:\n  run_every_secs: 1\nrules:\n  evaluation_interval_secs: 1\n  files: [{}]\n",
            rules.display()
        ),
    )
    .await
    .unwrap();
    let base = server.url("");
    let reviewer = add_user(&server, "wang.reviewer", "reviewer");
    let operator = add_user(&server, "li.operator", "operator");
    let admin = add_user(&server, "zhou.admin", "admin");
    let auditor = add_user(&server, "zhao.auditor", "auditor");
    let victim = add_user(&server, "sun.locked", "operator");

    // A host with six hours of data (rollups) and a fresh batch (up, alert firing).
    let client = AgentClient::new(&server);
    let e = client.enroll("web-01").await.unwrap();
    let now = now_ms();
    for (i, hours_ago) in (0..=6).rev().enumerate() {
        let ts = now - hours_ago * 3_600_000 - 5_000;
        let (status, body) = client
            .push(&e.token, &batch(&e, "web-01", i as u64 + 1, ts, 1))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }

    // Wait for the maintenance pass to roll up the closed hours.
    let sel = "test_metric{instance=\"web-01\"}";
    let path = format!(
        "/api/v1/yunwei/series?match={sel}&from={}&source=rollup",
        (now - 24 * 3_600_000) / 1000
    );
    let mut hours = 0;
    for _ in 0..100 {
        let v = client.get_json(&path).await.unwrap();
        hours = v["data"]["result"][0]["values"]
            .as_array()
            .map_or(0, |a| a.len());
        if hours >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(hours >= 5, "rollups of the closed hours: {hours}");

    let dir = screenshot_dir();
    let shot = async |name: &str| {
        b.screenshot(&dir.join(format!("{name}.png")))
            .await
            .unwrap();
    };

    // The login page, zh-CN by default.
    b.goto(&format!("{base}/")).await.unwrap();
    b.wait_text("#login-form", "登录").await.unwrap();
    shot("login-zh").await;

    // A reviewer logs in and sees the overview.
    login(&b, &base, "wang.reviewer", &reviewer).await;
    b.wait_text("#overview-cards", "在线主机").await.unwrap();
    // This server has no contract loaded and no incident open.
    b.wait_text("#card-contracts", "没有加载合同")
        .await
        .unwrap();
    assert_eq!(
        b.text("#card-incidents .value").await.unwrap(),
        "0",
        "no open incident"
    );
    b.wait_text("#card-alerts", "critical").await.unwrap();
    shot("overview-zh").await;
    // No audit or users page for a reviewer.
    assert!(b.find("#nav-audit").await.unwrap().is_none());
    assert!(b.find("#nav-users").await.unwrap().is_none());
    // A reviewer has the reports permission.
    assert!(b.find("#nav-reportsPage").await.unwrap().is_some());

    // Hosts, filtered by labels, and the host detail with a rollup chart.
    b.goto(&format!("{base}/#/hosts")).await.unwrap();
    b.wait_text("#hosts-table", "web-01").await.unwrap();
    b.fill("#host-filter", "system=没有这个系统").await.unwrap();
    b.click("#host-filter-apply").await.unwrap();
    b.wait_text("#hosts-table", "没有匹配的主机").await.unwrap();
    b.fill("#host-filter", "system=政务服务网").await.unwrap();
    b.click("#host-filter-apply").await.unwrap();
    b.wait_text("#hosts-table", "web-01").await.unwrap();
    shot("hosts-zh").await;
    b.click("#hosts-table a").await.unwrap();
    b.wait("#chart-metric").await.unwrap();
    b.exec("const s = document.getElementById('chart-metric'); s.value = 'test_metric'; s.dispatchEvent(new Event('change'));")
        .await
        .unwrap();
    b.click("#chart-load").await.unwrap();
    b.wait("#host-chart svg polyline").await.unwrap();
    let points = b
        .exec("return document.querySelectorAll('#host-chart svg circle').length")
        .await
        .unwrap();
    assert_eq!(
        points.as_u64().unwrap(),
        hours as u64,
        "one point per rolled-up hour"
    );
    shot("host-zh").await;

    // The reviewer tries an operator action and is shown the 403.
    b.goto(&format!("{base}/#/rules")).await.unwrap();
    b.wait_text("#rules-table", "TestMetricHigh").await.unwrap();
    b.click("#reload-rules").await.unwrap();
    let msg = b.wait_text("#rules-msg", "403").await.unwrap();
    assert!(msg.contains("权限不足"), "{msg}");
    shot("rules-403-zh").await;
    logout(&b).await;

    // An operator performs it.
    login(&b, &base, "li.operator", &operator).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/rules")).await.unwrap();
    b.click("#reload-rules").await.unwrap();
    b.wait_text("#rules-msg", "规则已重新加载").await.unwrap();
    shot("rules-operator-zh").await;
    logout(&b).await;

    // Five wrong passwords lock the account; the right one is then refused until it expires.
    for i in 1..=5 {
        login(&b, &base, "sun.locked", "Wrong-Password-1").await;
        let want = if i < 5 {
            "登录失败"
        } else {
            "账户已锁定"
        };
        b.wait_text("#login-msg", want).await.unwrap();
    }
    login(&b, &base, "sun.locked", &victim).await;
    b.wait_text("#login-msg", "账户已锁定").await.unwrap();
    shot("login-locked-zh").await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    login(&b, &base, "sun.locked", &victim).await;
    b.wait("#overview-cards").await.unwrap();
    logout(&b).await;

    // An auditor sees only the audit log, which recorded the lockout.
    login(&b, &base, "zhao.auditor", &auditor).await;
    let audit = b.wait_text("#audit-table", "lockout").await.unwrap();
    assert!(audit.contains("sun.locked"), "{audit}");
    assert!(b.find("#nav-overview").await.unwrap().is_none());
    // No reports for an auditor: no menu entry, and the address falls back to the audit log.
    assert!(b.find("#nav-reportsPage").await.unwrap().is_none());
    b.goto(&format!("{base}/#/reportsPage")).await.unwrap();
    b.wait("#audit-table").await.unwrap();
    assert!(b.find("#reports-verify").await.unwrap().is_none());
    shot("audit-zh").await;
    logout(&b).await;

    // An admin: users page, then every page again in English.
    login(&b, &base, "zhou.admin", &admin).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/users")).await.unwrap();
    b.wait_text("#users-table", "wang.reviewer").await.unwrap();
    // The admin adds a user from the console; a weak password is refused with the policy.
    b.fill("#new-user", "qian.operator").await.unwrap();
    b.fill("#new-password", "weakpass").await.unwrap();
    b.click("#add-user").await.unwrap();
    b.wait_text("#users-msg", "密码不符合要求").await.unwrap();
    b.fill("#new-password", "Strong-Pass-2026").await.unwrap();
    b.click("#add-user").await.unwrap();
    b.wait_text("#users-table", "qian.operator").await.unwrap();
    b.wait_text("#users-msg", "已保存").await.unwrap();
    // ... and resets its password.
    b.exec("document.getElementById('reset-user').value = 'qian.operator';")
        .await
        .unwrap();
    b.fill("#reset-password", "Another-Pass-2026")
        .await
        .unwrap();
    b.exec("document.getElementById('users-msg').replaceChildren();")
        .await
        .unwrap();
    b.click("#reset-submit").await.unwrap();
    b.wait_text("#users-msg", "已保存").await.unwrap();
    shot("users-zh").await;
    b.click("#lang").await.unwrap();
    b.wait_text("#users-table", "Reviewer").await.unwrap();
    shot("users-en").await;
    for (page, css, needle) in [
        ("overview", "#overview-cards", "Hosts up"),
        ("hosts", "#hosts-table", "web-01"),
        ("rules", "#rules-table", "TestMetricHigh"),
        ("audit", "#audit-table", "lockout"),
    ] {
        b.goto(&format!("{base}/#/{page}")).await.unwrap();
        b.wait_text(css, needle).await.unwrap();
        assert_eq!(b.text("#nav-overview").await.unwrap(), "Overview");
        shot(&format!("{page}-en")).await;
    }
    b.goto(&format!("{base}/#/hosts/{}", e.agent_id))
        .await
        .unwrap();
    b.wait("#host-chart").await.unwrap();
    b.exec("const s = document.getElementById('chart-metric'); s.value = 'test_metric';")
        .await
        .unwrap();
    b.click("#chart-load").await.unwrap();
    b.wait("#host-chart svg polyline").await.unwrap();
    b.wait_text("#main", "Hourly rollups").await.unwrap();
    shot("host-en").await;
    logout(&b).await;
    b.wait_text("#login-form", "Log in").await.unwrap();
    shot("login-en").await;
    // The user the admin made logs in with the password the admin set.
    login(&b, &base, "qian.operator", "Another-Pass-2026").await;
    b.wait_text("#overview-cards", "Hosts up").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_contracts_incidents_and_maintenance_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let contract = workspace_root().join("sla/examples/contract.example.yml");
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("console.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: console\n    rules:\n      - alert: TestMetricHigh\n        expr: test_metric > 0\n        labels:\n          severity: warning\n",
    )
    .unwrap();
    // Alerts are grouped for a webhook receiver nobody listens on (deliveries fail; the
    // group is there to acknowledge). The report schedule is off: on its first start after a
    // period closed it would archive that period's report, and this test generates its own
    // (the schedule is tested with its own clock in server/tests/reports.rs).
    let server = ServerProcess::start(
        &Db::Sqlite,
        &format!(
            "contracts:\n  files: [{}]\n  run_inspections: false\n  scheduled_reports: false\nrules:\n  evaluation_interval_secs: 1\n  files: [{}]\n\
             notify:\n  receivers: [{{name: hook, webhook: [{{url: 'http://127.0.0.1:9/x'}}]}}]\n  \
             route: {{receiver: hook, group_by: [alertname], group_wait: 0s}}\n  \
             allow_private_networks: [127.0.0.1/32]\n",
            contract.display(),
            rules.display()
        ),
    )
    .await
    .unwrap();
    let client = AgentClient::new(&server);
    let e = client.enroll("web-01").await.unwrap();
    let (status, body) = client
        .push(&e.token, &batch(&e, "web-01", 1, now_ms() - 1000, 1))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // One failed probe result, for the systems and probes page.
    let mut probe = batch(&e, "web-01", 2, now_ms() - 500, 0);
    probe.samples.push(yunwei_proto::Sample {
        name: "probe_success".into(),
        labels: std::collections::BTreeMap::from([("probe".to_string(), "home".to_string())])
            .into(),
        value: 0.0,
        ts_ms: now_ms() - 500,
    });
    let (status, body) = client.push(&e.token, &probe).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let base = server.url("");
    let reviewer = add_user(&server, "wang.reviewer", "reviewer");
    let operator = add_user(&server, "li.operator", "operator");
    let dir = screenshot_dir();
    let shot = async |name: &str| {
        b.screenshot(&dir.join(format!("{name}.png")))
            .await
            .unwrap();
    };

    // A fault reported by phone, opened through the API with an operator's token.
    let phone = AgentClient::for_base(&base)
        .with_token(&cli_token(&server.config_path, "hotline", "operator").unwrap());
    let r = phone
        .api(reqwest::Method::POST, "/api/v1/incidents")
        .json(&serde_json::json!({
            "title": "政务服务网无法登录（电话报障）",
            "level": 2,
            "labels": {"system": "portal"},
            "detected_ms": now_ms() - 10 * 60_000,
            "note": "市民热线 12345 转来",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let incident = r.json::<serde_json::Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A maintenance request filed after its window began (flagged as late).
    let late_from = now_ms() - 2 * 3_600_000;
    let r = phone
        .api(reqwest::Method::POST, "/api/v1/exclusions")
        .json(&serde_json::json!({
            "kind": "maintenance",
            "matchers": ["system=\"portal\""],
            "from_ms": late_from,
            "to_ms": late_from + 3_600_000,
            "reason": "数据库紧急补丁",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The reviewer: overview with the open incident and the contract's score per system.
    login(&b, &base, "wang.reviewer", &reviewer).await;
    b.wait_text("#card-incidents", "无法登录").await.unwrap();
    assert_eq!(b.text("#card-incidents .value").await.unwrap(), "1");
    let contracts = b
        .wait_text("#card-contracts", "某市政务云平台运维服务项目")
        .await
        .unwrap();
    assert!(contracts.contains("剩余故障预算"), "{contracts}");
    shot("overview-ops-zh").await;

    // The contract's live status: one row per system of the contract file.
    b.goto(&format!("{base}/#/contractsPage")).await.unwrap();
    let table = b
        .wait_text(
            "#contract-gov-cloud-om-2026 .contract-systems",
            "剩余故障预算",
        )
        .await
        .unwrap();
    let rows = b
        .exec("return document.querySelectorAll('#contract-gov-cloud-om-2026 .contract-systems tr').length")
        .await
        .unwrap();
    let status = phone
        .get_json("/api/v1/contracts/gov-cloud-om-2026/status")
        .await
        .unwrap();
    let systems = status["systems"].as_array().unwrap();
    assert!(!systems.is_empty());
    assert_eq!(
        rows.as_u64().unwrap() as usize,
        systems.len() + 1,
        "{table}"
    );
    for s in systems {
        assert!(table.contains(s["name"].as_str().unwrap()), "{table}");
    }
    b.wait_text("#main", "巡检记录").await.unwrap();
    shot("contracts-zh").await;

    // Systems and probes: every system of the contract with its rule, and the failed probe.
    b.goto(&format!("{base}/#/systemsPage")).await.unwrap();
    let table = b.wait_text("#systems-table", "政务服务门户").await.unwrap();
    assert!(table.contains("任一拨测失败或全部主机故障"), "{table}");
    // The test host is not in the example's systems: each is flagged as selecting nothing.
    let flagged = b
        .exec("return document.querySelectorAll('#systems-table .selects-nothing').length")
        .await
        .unwrap();
    assert_eq!(flagged.as_u64().unwrap() as usize, systems.len(), "{table}");
    let rows = b
        .exec("return document.querySelectorAll('#systems-table tr[data-state]').length")
        .await
        .unwrap();
    assert_eq!(rows.as_u64().unwrap() as usize, systems.len(), "{table}");
    let probes = b.wait_text("#probes-table", "web-01").await.unwrap();
    assert!(probes.contains("home"), "{probes}");
    let api_probes = phone.get_json("/api/v1/probes").await.unwrap();
    let state = api_probes["probes"][0]["state"]
        .as_str()
        .unwrap()
        .to_string();
    let cell = b
        .exec("return document.querySelector('#probes-table tr[data-subject]').dataset.state")
        .await
        .unwrap();
    assert!(
        cell == state.as_str() || cell == "unknown",
        "the page shows the API's state (or its later expiry): {cell} vs {state}"
    );
    shot("systems-zh").await;

    // The reviewer tries to acknowledge the incident and is refused with the 403 shown.
    b.goto(&format!("{base}/#/incidentsPage")).await.unwrap();
    b.wait_text("#incidents-table", "无法登录").await.unwrap();
    shot("incidents-zh").await;
    b.goto(&format!("{base}/#/incidentsPage/{incident}"))
        .await
        .unwrap();
    b.wait_text("#incident-events", "12345").await.unwrap();
    b.click("#incident-ack-btn").await.unwrap();
    let msg = b.wait_text("#incident-msg", "403").await.unwrap();
    assert!(msg.contains("权限不足"), "{msg}");
    assert_eq!(b.text("#incident-ack").await.unwrap(), "—");
    shot("incident-403-zh").await;
    // Alert groups: the reviewer may not acknowledge one, nor create a silence.
    b.goto(&format!("{base}/#/alertsPage")).await.unwrap();
    let mut grouped = false;
    for _ in 0..60 {
        if b.find("#groups-table").await.unwrap().is_some() {
            grouped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        b.goto(&format!("{base}/#/overview")).await.unwrap();
        b.goto(&format!("{base}/#/alertsPage")).await.unwrap();
        b.wait("#main h2").await.unwrap();
    }
    assert!(grouped, "an alert group formed");
    b.wait_text("#groups-table", "TestMetricHigh")
        .await
        .unwrap();
    b.click("#group-ack-0").await.unwrap();
    let msg = b.wait_text("#alerts-msg", "403").await.unwrap();
    assert!(msg.contains("权限不足"), "{msg}");
    assert!(
        !b.text("#groups-table")
            .await
            .unwrap()
            .contains("wang.reviewer")
    );
    shot("alerts-403-zh").await;
    b.fill("#silence-matchers", "alertname=\"X\"")
        .await
        .unwrap();
    b.fill("#silence-comment", "试试").await.unwrap();
    b.click("#silence-create").await.unwrap();
    b.wait_text("#alerts-msg", "403").await.unwrap();
    logout(&b).await;

    // The operator acknowledges the incident; the page shows who and when.
    login(&b, &base, "li.operator", &operator).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/incidentsPage/{incident}"))
        .await
        .unwrap();
    b.wait("#incident-ack-btn").await.unwrap();
    b.click("#incident-ack-btn").await.unwrap();
    let acked = b.wait_text("#incident-ack", "li.operator").await.unwrap();
    assert!(acked.starts_with("20"), "a time: {acked}");
    b.wait_text("#incident-msg", "已保存").await.unwrap();
    assert!(b.find("#incident-ack-btn").await.unwrap().is_none());
    b.fill("#incident-note", "已联系数据库厂商").await.unwrap();
    b.click("#incident-note-btn").await.unwrap();
    b.wait_text("#incident-events", "已联系数据库厂商")
        .await
        .unwrap();
    let d = phone
        .get_json(&format!("/api/v1/incidents/{incident}"))
        .await
        .unwrap();
    assert_eq!(d["data"]["incident"]["acknowledged_by"], "li.operator");
    shot("incident-zh").await;

    // The operator acknowledges the alert group; a silence made and expired from the console.
    b.goto(&format!("{base}/#/alertsPage")).await.unwrap();
    b.wait_text("#groups-table", "TestMetricHigh")
        .await
        .unwrap();
    b.click("#group-ack-0").await.unwrap();
    b.wait_text("#groups-table", "li.operator").await.unwrap();
    b.fill(
        "#silence-matchers",
        "alertname=\"DiskFull\",instance=\"db-01\"",
    )
    .await
    .unwrap();
    b.fill("#silence-comment", "更换磁盘").await.unwrap();
    b.click("#silence-create").await.unwrap();
    b.wait_text("#silences-table", "生效中").await.unwrap();
    shot("alerts-zh").await;
    b.click("#silences-table button").await.unwrap();
    b.wait_text("#silences-table", "已失效").await.unwrap();

    // The operator files a maintenance request; it may not approve it.
    b.goto(&format!("{base}/#/maintenancePage")).await.unwrap();
    b.wait("#exclusions-table").await.unwrap();
    b.fill("#excl-matchers", "system=\"portal\"").await.unwrap();
    b.fill("#excl-reason", "周六凌晨升级操作系统补丁")
        .await
        .unwrap();
    b.click("#excl-submit").await.unwrap();
    b.wait_text("#exclusions-table", "周六凌晨升级")
        .await
        .unwrap();
    let list = phone.get_json("/api/v1/exclusions").await.unwrap();
    let mine = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["reason"] == "周六凌晨升级操作系统补丁")
        .expect("the request was filed")
        .clone();
    assert_eq!(mine["requested_by"], "li.operator");
    let id = mine["id"].as_str().unwrap().to_string();
    b.click(&format!("#exclusion-approve-{id}")).await.unwrap();
    b.wait_text("#maint-msg", "403").await.unwrap();
    logout(&b).await;

    // The reviewer approves it; the late one is flagged.
    login(&b, &base, "wang.reviewer", &reviewer).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/maintenancePage")).await.unwrap();
    let row = b
        .wait_text(&format!("#exclusion-{id}"), "待审核")
        .await
        .unwrap();
    assert!(!row.contains("事后补报"), "filed ahead: {row}");
    let late = b.wait_text("#exclusions-table", "事后补报").await.unwrap();
    assert_eq!(late.matches("事后补报").count(), 1, "{late}");
    b.click(&format!("#exclusion-approve-{id}")).await.unwrap();
    let row = b
        .wait_text(&format!("#exclusion-{id}"), "已批准")
        .await
        .unwrap();
    assert!(row.contains("wang.reviewer"), "{row}");
    let list = phone.get_json("/api/v1/exclusions").await.unwrap();
    let approved = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["reviewed_by"], "wang.reviewer");
    shot("maintenance-zh").await;

    // Reports: the reviewer generates this month's report twice; both versions stay listed.
    b.goto(&format!("{base}/#/reportsPage")).await.unwrap();
    b.wait_text("#reports-verify", "yunwei-server report verify")
        .await
        .unwrap();
    b.wait_text("#main", "尚未生成报告").await.unwrap();
    let period = b
        .exec("return document.getElementById('report-period').value")
        .await
        .unwrap();
    let period = period.as_str().unwrap().to_string();
    assert_eq!(period.len(), 7, "current month YYYY-MM: {period}");
    let row_version = |v: i64| {
        format!(
            "#reports-table tr[data-contract='gov-cloud-om-2026'][data-period='{period}'][data-version='{v}']"
        )
    };
    b.click("#report-generate").await.unwrap();
    b.wait_text("#reports-msg", "第 1 版").await.unwrap();
    let v1 = b.wait_text(&row_version(1), "v1").await.unwrap();
    assert!(v1.contains("控制台/API"), "{v1}");
    assert!(v1.contains("中文"), "{v1}");
    b.click("#report-generate").await.unwrap();
    b.wait_text("#reports-msg", "第 2 版").await.unwrap();
    b.wait_text(&row_version(2), "v2").await.unwrap();
    b.wait_text(&row_version(1), "v1").await.unwrap();
    let rows = b
        .exec("return document.querySelectorAll('#reports-table tr[data-version]').length")
        .await
        .unwrap();
    assert_eq!(rows, 2);
    // Only the requested formats are offered, and the JSON link downloads the signed
    // report with the browser's session.
    let links = b
        .exec(&format!(
            "return Array.from(document.querySelectorAll(\"{} a.dl:not(.dl-evidence)\")).map(a => a.textContent).join(',')",
            row_version(2)
        ))
        .await
        .unwrap();
    assert_eq!(links, "html,json");
    // Beside them, the evidence file the version was computed from (`report recompute`).
    let evidence = b
        .exec(&format!(
            "const a = document.querySelector(\"{} a.dl-evidence\"); return a ? [a.textContent, a.getAttribute('href')] : null;",
            row_version(2)
        ))
        .await
        .unwrap();
    assert_eq!(evidence[0], "证据文件", "{evidence}");
    assert!(
        evidence[1]
            .as_str()
            .is_some_and(|h| h.ends_with("/evidence")),
        "{evidence}"
    );
    let got = b
        .exec(&format!(
            "const a = document.querySelector(\"{} a.dl-json\"); const x = new XMLHttpRequest(); \
             x.open('GET', a.href, false); x.send(); return [x.status, x.getResponseHeader('Content-Type'), x.responseText];",
            row_version(2)
        ))
        .await
        .unwrap();
    assert_eq!(got[0], 200, "{got}");
    assert_eq!(got[1], "application/json", "{got}");
    let doc: serde_json::Value = serde_json::from_str(got[2].as_str().unwrap()).unwrap();
    let listed = phone
        .get_json("/api/v1/reports?contract=gov-cloud-om-2026")
        .await
        .unwrap();
    let v2 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == 2)
        .unwrap()
        .clone();
    // The version-2 file, with the digest the archive lists for it (version 1's differs).
    assert_eq!(doc["integrity"]["sha256"], v2["sha256"], "{doc}");
    shot("reports-zh").await;

    // Every new page in English.
    b.click("#lang").await.unwrap();
    for (page, css, needle) in [
        ("overview", "#card-contracts", "Error budget left"),
        ("contractsPage", "#main", "Inspections"),
        ("systemsPage", "#probes-table", "Availability (24 h)"),
        ("reportsPage", "#reports-table", "console/API"),
        ("incidentsPage", "#incidents-table", "Acknowledged"),
        ("alertsPage", "#silences-table", "expired"),
        (
            "maintenancePage",
            "#exclusions-table",
            "filed after the fact",
        ),
    ] {
        b.goto(&format!("{base}/#/{page}")).await.unwrap();
        b.wait_text(css, needle).await.unwrap();
        shot(&format!("ops-{page}-en")).await;
    }
    b.goto(&format!("{base}/#/incidentsPage/{incident}"))
        .await
        .unwrap();
    b.wait_text("#incident-facts", "li.operator").await.unwrap();
    b.wait_text("#main", "History").await.unwrap();
    shot("incident-en").await;
    logout(&b).await;
}

/// A contract whose one system selects the test hosts (`system=政务服务网`).
const REVIEW_CONTRACT: &str = r#"id: review-contract
name: 审核页面测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 }, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
  incidents:
    - { id: P3, aliases: [三级], response: 2h, restore: 1h, window: always }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

/// The review pages: a backdated restore waits on the requests page and a reviewer's button
/// approves it; a host whose labels match a system but that nobody assigned (automatic
/// assignment off) is listed as pending on the membership page and assigned from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_incident_requests_and_membership_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let cdir = tempfile::tempdir().unwrap();
    let contract = cdir.path().join("contract.yml");
    std::fs::write(&contract, REVIEW_CONTRACT).unwrap();
    let server = ServerProcess::start(
        &Db::Sqlite,
        &format!(
            "contracts:\n  files: [{}]\n  run_inspections: false\n  scheduled_reports: false\n  auto_assign_from_labels: false\n",
            contract.display()
        ),
    )
    .await
    .unwrap();
    let client = AgentClient::new(&server);
    let e = client.enroll("web-01").await.unwrap();
    let (status, body) = client
        .push(&e.token, &batch(&e, "web-01", 1, now_ms() - 1000, 1))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let base = server.url("");
    let reviewer = add_user(&server, "wang.reviewer", "reviewer");
    let dir = screenshot_dir();
    let shot = async |name: &str| {
        b.screenshot(&dir.join(format!("{name}.png")))
            .await
            .unwrap();
    };

    // The vendor's operator opens an incident and stamps it restored two hours back.
    let vendor = AgentClient::for_base(&base)
        .with_token(&cli_token(&server.config_path, "vendor-op", "operator").unwrap());
    let detected = now_ms() - 3 * 3_600_000;
    let r = vendor
        .api(reqwest::Method::POST, "/api/v1/incidents")
        .json(&serde_json::json!({
            "title": "门户无法访问", "level": 3, "labels": {"system": "政务服务网"},
            "detected_ms": detected,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let incident = r.json::<serde_json::Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = vendor
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/incidents/{incident}/restore"),
        )
        .json(&serde_json::json!({"at_ms": detected + 600_000, "reason": "夜间恢复后忘记登记"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["data"]["pending"], true, "{v}");
    let req = v["data"]["request"].as_str().unwrap().to_string();

    // The reviewer sees it pending, with the requester, clock, times and reason.
    login(&b, &base, "wang.reviewer", &reviewer).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/requestsPage")).await.unwrap();
    let row = b
        .wait_text(&format!("#request-{req}"), "待审核")
        .await
        .unwrap();
    for w in [
        "vendor-op",
        "时间补录",
        "恢复",
        "夜间恢复后忘记登记",
        "当前按记录时间计",
    ] {
        assert!(row.contains(w), "{w:?} in {row}");
    }
    let claimed = b.text(&format!("#request-{req} .claimed")).await.unwrap();
    let recorded = b.text(&format!("#request-{req} .recorded")).await.unwrap();
    assert!(claimed.starts_with("20"), "a time: {claimed}");
    assert!(!recorded.starts_with(&claimed), "{claimed} vs {recorded}");
    shot("requests-zh").await;
    b.click(&format!("#request-approve-{req}")).await.unwrap();
    let row = b
        .wait_text(&format!("#request-{req}"), "已批准")
        .await
        .unwrap();
    assert!(row.contains("wang.reviewer"), "{row}");
    assert!(
        b.find(&format!("#request-approve-{req}"))
            .await
            .unwrap()
            .is_none()
    );
    let d = vendor
        .get_json(&format!("/api/v1/incidents/{incident}"))
        .await
        .unwrap();
    assert_eq!(
        d["data"]["incident"]["restored_ms"],
        detected + 600_000,
        "{d}"
    );
    assert_eq!(
        d["data"]["requests"][0]["reviewed_by"], "wang.reviewer",
        "{d}"
    );

    // Membership: the host matches the system's labels but is not assigned.
    b.goto(&format!("{base}/#/membershipPage/review-contract"))
        .await
        .unwrap();
    let pending = b
        .wait_text("#membership-pending", &e.agent_id)
        .await
        .unwrap();
    assert!(pending.contains("portal"), "{pending}");
    b.wait_text("#membership-auto", "已关闭").await.unwrap();
    assert!(b.find("#membership-current").await.unwrap().is_none());
    shot("membership-zh").await;
    b.fill("#membership-reason", "工单 2026-001").await.unwrap();
    b.click("#membership-assign-0").await.unwrap();
    let current = b
        .wait_text("#membership-current", &e.agent_id)
        .await
        .unwrap();
    assert!(current.contains("wang.reviewer"), "{current}");
    assert!(current.contains("工单 2026-001"), "{current}");
    let m = vendor
        .get_json("/api/v1/contracts/review-contract/membership")
        .await
        .unwrap();
    assert_eq!(m["current"][0]["subject"], e.agent_id.as_str(), "{m}");
    assert_eq!(m["pending"].as_array().unwrap().len(), 0, "{m}");

    // In English.
    b.click("#lang").await.unwrap();
    b.goto(&format!("{base}/#/requestsPage")).await.unwrap();
    let row = b
        .wait_text(&format!("#request-{req}"), "approved")
        .await
        .unwrap();
    assert!(row.contains("backdate"), "{row}");
    assert!(row.contains("restored"), "{row}");
    shot("requests-en").await;
    b.goto(&format!("{base}/#/membershipPage/review-contract"))
        .await
        .unwrap();
    b.wait_text("#main", "Current members").await.unwrap();
    b.wait_text("#membership-history", "Assigned by")
        .await
        .unwrap();
    shot("membership-en").await;
    logout(&b).await;
}

const APPEALS_CONTRACT: &str = r#"id: appeals-contract
name: 申诉页面测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_coverage_percent: 0 }
scoring:
  base: 100
  deductions:
    - { id: notice, name: 被主管部门通报, name_en: Reported by an authority, kind: manual, category: authority_notice, points: 5 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
lifecycle:
  appeal_window_working_days: 3
"#;

/// The appeals page for both roles: the vendor's operator files an appeal with an attachment
/// against the draft (the decide buttons dimmed for them), the office's reviewer overturns it
/// (the file button dimmed for them); screenshots in zh-CN and English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_appeals_for_operator_and_reviewer_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    let cdir = tempfile::tempdir().unwrap();
    let contract = cdir.path().join("contract.yml");
    std::fs::write(&contract, APPEALS_CONTRACT).unwrap();
    let server = ServerProcess::start(
        &Db::Sqlite,
        &format!(
            "contracts:\n  files: [{}]\n  run_inspections: false\n  scheduled_reports: false\n",
            contract.display()
        ),
    )
    .await
    .unwrap();
    let base = server.url("");
    let office = AgentClient::for_base(&base)
        .with_token(&cli_token(&server.config_path, "office-api", "reviewer").unwrap());
    let admin = AgentClient::for_base(&base)
        .with_token(&cli_token(&server.config_path, "admin-api", "admin").unwrap());
    // A 通报 this month, then the draft.
    let r = office
        .api(
            reqwest::Method::POST,
            "/api/v1/contracts/appeals-contract/events",
        )
        .json(&serde_json::json!({"category": "authority_notice", "evidence": "通报〔2026〕3号"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let event = r.json::<serde_json::Value>().await.unwrap()["data"]["id"]
        .as_i64()
        .unwrap();
    let contracts = admin.get_json("/api/v1/contracts").await.unwrap();
    let period = contracts["contracts"][0]["current_period"]
        .as_str()
        .or_else(|| contracts["contracts"][0]["current_period"]["label"].as_str())
        .expect("the server's current period")
        .to_string();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = admin
        .api(reqwest::Method::POST, "/api/v1/reports")
        .json(&serde_json::json!({"contract": "appeals-contract", "period": period, "formats": ["json"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    let operator = add_user(&server, "li.operator", "operator");
    let reviewer = add_user(&server, "wang.reviewer", "reviewer");
    let dir = screenshot_dir();
    let shot = async |name: &str| {
        b.screenshot(&dir.join(format!("{name}.png")))
            .await
            .unwrap();
    };
    let letter = cdir.path().join("correction.txt");
    std::fs::write(&letter, "更正函：通报对象有误。").unwrap();

    // The operator files the appeal with the correction letter attached.
    login(&b, &base, "li.operator", &operator).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/appealsPage")).await.unwrap();
    b.wait_text("#main", "提出申诉").await.unwrap();
    b.fill("#appeal-item", "notice").await.unwrap();
    b.fill("#appeal-subject", &format!("event:{event}"))
        .await
        .unwrap();
    b.fill("#appeal-why", "通报对象为其他单位").await.unwrap();
    b.fill("#appeal-files", &letter.display().to_string())
        .await
        .unwrap();
    b.click("#appeal-submit").await.unwrap();
    let table = b.wait_text("#appeals-table", "待复核").await.unwrap();
    for w in [
        "li.operator",
        "通报对象为其他单位",
        "correction.txt",
        &format!("notice: event:{event}"),
    ] {
        assert!(table.contains(w), "{w:?} in {table}");
    }
    let list = admin.get_json("/api/v1/appeals").await.unwrap();
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(list["data"][0]["attachments"][0]["name"], "correction.txt");
    // The operator sees the decide buttons dimmed.
    let class = b
        .exec(&format!(
            "return document.getElementById('appeal-overturn-{id}').className"
        ))
        .await
        .unwrap();
    assert!(class.as_str().unwrap().contains("noperm"), "{class}");
    shot("appeals-operator-zh").await;
    b.click("#lang").await.unwrap();
    b.wait_text("#appeals-table", "pending review")
        .await
        .unwrap();
    shot("appeals-operator-en").await;
    b.click("#lang").await.unwrap();
    // The reports page says where the draft stands.
    b.goto(&format!("{base}/#/reportsPage")).await.unwrap();
    let row = b
        .wait_text("#reports-table tr[data-version='1'] td.state", "申诉期至")
        .await
        .unwrap();
    assert!(
        row.contains("初稿") && row.contains("1 项申诉待复核"),
        "{row}"
    );
    logout(&b).await;

    // The reviewer overturns it with a reason.
    login(&b, &base, "wang.reviewer", &reviewer).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/appealsPage")).await.unwrap();
    b.wait(&format!("#appeal-{id}")).await.unwrap();
    let class = b
        .exec("return document.getElementById('appeal-submit').className")
        .await
        .unwrap();
    assert!(class.as_str().unwrap().contains("noperm"), "{class}");
    b.fill(&format!("#appeal-reason-{id}"), "更正函属实")
        .await
        .unwrap();
    b.click(&format!("#appeal-overturn-{id}")).await.unwrap();
    // The pending row already offers a button labelled 撤销扣分: wait for the decision itself
    // (the reviewer's name appears only then).
    let row = b
        .wait_text(&format!("#appeal-{id}"), "wang.reviewer")
        .await
        .unwrap();
    assert!(
        row.contains("撤销扣分") && row.contains("更正函属实") && !row.contains("待复核"),
        "{row}"
    );
    shot("appeals-reviewer-zh").await;
    b.click("#lang").await.unwrap();
    b.wait_text(&format!("#appeal-{id}"), "overturned")
        .await
        .unwrap();
    shot("appeals-reviewer-en").await;
    b.click("#lang").await.unwrap();

    // Both parties sign the draft off; the last signature makes the final version (终稿). The
    // reports page marks it, and the draft as superseded with its sign-offs.
    let vendor = AgentClient::for_base(&base)
        .with_token(&cli_token(&server.config_path, "vendor-api", "operator").unwrap());
    let draft_id = admin.get_json("/api/v1/reports").await.unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    for party in [&vendor, &office] {
        let r = party
            .api(
                reqwest::Method::POST,
                &format!("/api/v1/reports/{draft_id}/sign-off"),
            )
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    b.goto(&format!("{base}/#/reportsPage")).await.unwrap();
    b.wait_text("#reports-table tr[data-version='2'] td.state", "终稿")
        .await
        .unwrap();
    let old = b
        .wait_text(
            "#reports-table tr[data-version='1'] td.state",
            "已被第 2 版取代",
        )
        .await
        .unwrap();
    assert!(
        old.contains("运维人员 token:vendor-api 已签认")
            && old.contains("审核人员 token:office-api 已签认"),
        "{old}"
    );
    shot("reports-lifecycle-zh").await;
    b.click("#lang").await.unwrap();
    let old = b
        .wait_text(
            "#reports-table tr[data-version='1'] td.state",
            "superseded by version 2",
        )
        .await
        .unwrap();
    assert!(
        old.contains("signed off by token:office-api (Reviewer)"),
        "{old}"
    );
    shot("reports-lifecycle-en").await;
    logout(&b).await;
}

/// A contract whose system's availability follows the server's own probe (an HTTP service
/// that always answers 503), while the agents' probe of it says up.
fn vantage_contract(url: &str) -> String {
    format!(
        "id: vantage-contract\nname: 独立拨测页面测试合同\nparties: {{ buyer: 测试数据局, vendor: 测试运维公司 }}\n\
         period: {{ start: 2020-01-01, end: 2099-12-31 }}\nsystems:\n  - id: portal\n    name: 政务服务网\n    \
         tier: core\n    probes: {{ system: 政务服务网 }}\n    availability_from: server_probes\n    \
         server_probes:\n      - {{ name: office-home, http: \"{url}\", interval: 5s, timeout: 2s }}\n\
         objectives:\n  availability:\n    core: {{ target_percent: 99.9, min_coverage_percent: 0 }}\n\
         scoring: {{}}\ngrades:\n  - {{ id: pass, name: 合格, name_en: Pass, min_score: 0 }}\n"
    )
}

/// The assessment page says which vantage decided each system and lists the spans in which
/// the server's own probe and the agents disagree, in Chinese and in English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_vantage_and_disagreements_in_chromium() {
    let Some(b) = Browser::start().await else {
        return;
    };
    // The service the server probes: 503 to everyone.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", l.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 2048];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
            );
        }
    });
    let cdir = tempfile::tempdir().unwrap();
    let contract = cdir.path().join("contract.yml");
    std::fs::write(&contract, vantage_contract(&url)).unwrap();
    let server = ServerProcess::start(
        &Db::Sqlite,
        &format!(
            "contracts:\n  files: [{}]\n  run_inspections: false\n  scheduled_reports: false\n\
             notify:\n  allow_private_networks: [127.0.0.1/32]\n",
            contract.display()
        ),
    )
    .await
    .unwrap();
    let base = server.url("");
    let reviewer = add_user(&server, "wang.reviewer", "reviewer");
    let api = AgentClient::for_base(&base)
        .with_token(&cli_token(&server.config_path, "viewer", "reviewer").unwrap());
    // The agents' probe says up, again every second, until the server's probe (down) and it
    // overlap and the assessment lists the disagreement.
    let client = AgentClient::new(&server);
    let e = client.enroll("web-01").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seq = 1;
    let status = loop {
        let mut probe = batch(&e, "web-01", seq, now_ms() - 200, 0);
        probe.samples.push(yunwei_proto::Sample {
            name: "probe_success".into(),
            labels: std::collections::BTreeMap::from([("probe".to_string(), "home".to_string())])
                .into(),
            value: 1.0,
            ts_ms: now_ms() - 200,
        });
        let (code, body) = client.push(&e.token, &probe).await.unwrap();
        assert_eq!(code, 200, "{body}");
        seq += 1;
        let s = api
            .get_json("/api/v1/contracts/vantage-contract/status")
            .await
            .unwrap();
        if s["disagreements"].as_array().is_some_and(|d| !d.is_empty()) {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no disagreement: {s}");
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    };
    assert_eq!(
        status["systems"][0]["decided_by"], "server_probes",
        "{status}"
    );
    let dir = screenshot_dir();

    login(&b, &base, "wang.reviewer", &reviewer).await;
    b.wait("#overview-cards").await.unwrap();
    b.goto(&format!("{base}/#/contractsPage")).await.unwrap();
    let row = b
        .wait_text(
            "#contract-vantage-contract .contract-systems tr[data-system='portal'] .decided-by",
            "服务端独立拨测",
        )
        .await
        .unwrap();
    assert_eq!(row.trim(), "服务端独立拨测");
    let table = b
        .wait_text(
            "#contract-vantage-contract .contract-disagreements",
            "office-home",
        )
        .await
        .unwrap();
    // The agents say up (正常), the server down (中断), with the server interval's id.
    for w in ["政务服务网", "正常", "中断", "interval:server_probe:"] {
        assert!(table.contains(w), "{w:?} in {table}");
    }
    let section = b.text("#contract-vantage-contract").await.unwrap();
    assert!(section.contains("独立拨测与代理结论不一致"), "{section}");
    b.screenshot(&dir.join("contracts-vantage-zh.png"))
        .await
        .unwrap();

    b.click("#lang").await.unwrap();
    b.goto(&format!("{base}/#/contractsPage")).await.unwrap();
    b.wait_text(
        "#contract-vantage-contract .contract-systems .decided-by",
        "the server's own probes",
    )
    .await
    .unwrap();
    let table = b
        .wait_text(
            "#contract-vantage-contract .contract-disagreements",
            "Agents",
        )
        .await
        .unwrap();
    for w in ["office-home", "up", "down", "interval:server_probe:"] {
        assert!(table.contains(w), "{w:?} in {table}");
    }
    let section = b.text("#contract-vantage-contract").await.unwrap();
    assert!(
        section.contains("Independent probes disagreeing with the agents"),
        "{section}"
    );
    b.screenshot(&dir.join("contracts-vantage-en.png"))
        .await
        .unwrap();
    logout(&b).await;
}
