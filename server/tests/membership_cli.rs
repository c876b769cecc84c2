//! `yunwei-server membership list|assign|unassign` against an in-process server: a host whose
//! labels match a system but that automatic assignment left alone is listed as pending; a
//! reviewer assigns it and unassigns it from the command line (recorded with the token's user
//! and the reason); an operator's token may list but not change.

mod common;

use std::process::Command;

use common::Harness;
use yunwei_server::auth::Role;
use yunwei_tests::{batch, now_ms};

const CONTRACT: &str = r#"id: cli-contract
name: 命令行测试合同
parties: { buyer: 测试数据局, vendor: 测试运维公司 }
period: { start: 2020-01-01, end: 2099-12-31 }
systems:
  - { id: portal, name: 政务服务网, tier: core, hosts: { system: 政务服务网 }, probes: { system: 政务服务网 } }
objectives:
  availability:
    core: { target_percent: 99.9, min_outage: 1m, missing_data: excluded }
scoring:
  base: 100
  deductions:
    - { id: availability, name: 可用性未达标, name_en: Availability below target, kind: availability_short, per_pp: 0.1, points: 5, cap: 20 }
grades:
  - { id: pass, name: 合格, name_en: Pass, min_score: 60 }
  - { id: fail, name: 不合格, name_en: Fail, min_score: 0 }
"#;

fn cli(server: &str, token: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_yunwei-server"))
        .args(args.iter().take(1))
        .args(["--server", server])
        .env("YUNWEI_TOKEN", token)
        .args(&args[1..])
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_list_assign_and_unassign_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contract.yml");
    std::fs::write(&path, CONTRACT).unwrap();
    let h = Harness::start("sqlite", move |c| {
        c.contracts.files = vec![path];
        c.contracts.run_inspections = false;
        c.contracts.scheduled_reports = false;
        c.contracts.auto_assign_from_labels = false;
    })
    .await
    .unwrap();
    let base = h.client.base.clone();
    let e = h.client.enroll("web-01").await.unwrap();
    let (status, body) = h
        .client
        .push(&e.token, &batch(&e, "web-01", 1, now_ms() - 1000, 1))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let token = async |name: &str, role: Role| {
        yunwei_server::auth::users::create_token(&h.state.store, name, role, &[], None, now_ms())
            .await
            .unwrap()
    };
    let rev = token("office", Role::Reviewer).await;
    let op = token("vendor-op", Role::Operator).await;
    let agent = e.agent_id.as_str();

    // Pending: labels match, nobody assigned it.
    let (ok, out) = cli(&base, &op, &["membership", "list", "cli-contract"]);
    assert!(ok, "{out}");
    assert!(out.contains("auto_assign_from_labels=false"), "{out}");
    let pending = out.split("pending:").nth(1).unwrap();
    let current = out
        .split("current:")
        .nth(1)
        .unwrap()
        .split("pending:")
        .next()
        .unwrap();
    assert!(pending.contains(&format!("portal  host {agent}")), "{out}");
    assert!(!current.contains(agent), "{out}");

    // The operator may not assign; the reviewer does, with a reason.
    let assign = [
        "membership",
        "assign",
        "cli-contract",
        agent,
        "--system",
        "portal",
        "--reason",
        "工单 42",
    ];
    let (ok, out) = cli(&base, &op, &assign);
    assert!(!ok, "{out}");
    assert!(out.contains("403"), "{out}");
    let (ok, out) = cli(&base, &rev, &assign);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("assigned host {agent} in portal")),
        "{out}"
    );
    let (ok, out) = cli(&base, &op, &["membership", "list", "cli-contract"]);
    assert!(ok, "{out}");
    let current = out
        .split("current:")
        .nth(1)
        .unwrap()
        .split("pending:")
        .next()
        .unwrap();
    assert!(current.contains(agent), "{out}");
    assert!(current.contains("by token:office"), "{out}");
    assert!(current.contains("reason: 工单 42"), "{out}");
    assert!(
        !out.split("pending:")
            .nth(1)
            .unwrap()
            .split("history:")
            .next()
            .unwrap()
            .contains(agent),
        "{out}"
    );
    let rows = h.state.store.memberships("cli-contract").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].assigned_by, "token:office");

    // Unassign: the row ends, kept as history; a bad kind is refused by the CLI itself.
    let (ok, out) = cli(
        &base,
        &rev,
        &[
            "membership",
            "unassign",
            "cli-contract",
            agent,
            "--system",
            "portal",
            "--reason",
            "迁出",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("unassigned"), "{out}");
    let rows = h.state.store.memberships("cli-contract").await.unwrap();
    assert!(rows[0].to_ms.is_some(), "{rows:?}");
    assert_eq!(rows[0].ended_by.as_deref(), Some("token:office"));
    let (ok, out) = cli(&base, &rev, &["membership", "list", "cli-contract"]);
    assert!(ok, "{out}");
    let history = out.split("history:").nth(1).unwrap();
    assert!(history.contains("ended by token:office: 迁出"), "{out}");
    let (ok, out) = cli(
        &base,
        &rev,
        &[
            "membership",
            "assign",
            "cli-contract",
            agent,
            "--system",
            "portal",
            "--kind",
            "vm",
            "--reason",
            "x",
        ],
    );
    assert!(!ok, "{out}");
    let (ok, out) = cli(&base, &rev, &["membership", "list", "no-such-contract"]);
    assert!(!ok, "{out}");
    assert!(out.contains("404"), "{out}");
    drop(dir);
    h.stop().await;
}
