//! The web console in real headless Chromium (through chromedriver): logins for each role,
//! a reviewer refused an operator action with a visible 403, an operator allowed it, five wrong
//! passwords locking an account, and the English switch. Screenshots of every page in zh-CN
//! and en land in `target/console-screenshots/`.

use std::path::PathBuf;

use yunwei_tests::{AgentClient, Db, ServerProcess, batch, now_ms, webdriver::Browser};

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
        "/api/v1/series?match={sel}&from={}&source=rollup",
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
    let cards = b.wait_text("#overview-cards", "在线主机").await.unwrap();
    assert!(cards.contains("暂不可用"), "placeholders: {cards}");
    b.wait_text("#card-alerts", "critical").await.unwrap();
    shot("overview-zh").await;
    // No audit or users page for a reviewer.
    assert!(b.find("#nav-audit").await.unwrap().is_none());
    assert!(b.find("#nav-users").await.unwrap().is_none());

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
