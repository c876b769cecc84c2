//! `yunwei-server membership list|assign|unassign`: which hosts and probes count for which
//! system of a contract, through a running server's API (`/api/v1/contracts/{id}/membership`),
//! authenticated with an API token (`--token` or `YUNWEI_TOKEN`) like `alerts`. Changes need a
//! reviewer's or admin's token; the server records the token's user and audits the change.

use serde_json::{Value, json};

use crate::notify::cli::{call, client};

/// `membership` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum MembershipCommand {
    /// Current members, the subjects pending assignment (matching labels, not assigned) and
    /// the history of a contract.
    List {
        /// Contract id.
        contract: String,
    },
    /// Assign a host (agent id) or probe (`AGENT_ID/PROBE`) to a system from now on.
    Assign(ChangeArgs),
    /// End a host's or probe's membership in a system from now on.
    Unassign(ChangeArgs),
}

/// What an assignment or unassignment names.
#[derive(clap::Args, Debug)]
pub struct ChangeArgs {
    /// Contract id.
    pub contract: String,
    /// The host's agent id, or `AGENT_ID/PROBE` with `--kind probe`.
    pub subject: String,
    /// The system's id in the contract.
    #[arg(long)]
    pub system: String,
    /// `host` or `probe`.
    #[arg(long, default_value = "host", value_parser = ["host", "probe"])]
    pub kind: String,
    /// Why (e.g. a ticket number); recorded with the change.
    #[arg(long)]
    pub reason: String,
    /// When it takes effect (UTC ms); default now, at most 5 minutes back.
    #[arg(long)]
    pub effective_from_ms: Option<i64>,
}

fn url(base: &str, contract: &str) -> String {
    let enc: String = contract
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!(
        "{}/api/v1/contracts/{enc}/membership",
        base.trim_end_matches('/')
    )
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("-")
}

fn time(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "-".to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

/// Runs a `membership` subcommand against `server` and prints the result.
pub async fn run(server: &str, token: Option<&str>, cmd: MembershipCommand) -> anyhow::Result<()> {
    let c = client(token)?;
    let (action, a) = match cmd {
        MembershipCommand::List { contract } => {
            let v = call(&c, reqwest::Method::GET, url(server, &contract), None).await?;
            println!(
                "contract {}  auto_assign_from_labels={}",
                s(&v, "contract"),
                v["auto_assign_from_labels"]
            );
            println!("current:");
            for m in v["current"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {} {}  from {}  by {}  reason: {}",
                    s(m, "system_id"),
                    s(m, "kind"),
                    s(m, "subject"),
                    time(&m["from_ms"]),
                    s(m, "assigned_by"),
                    s(m, "reason"),
                );
            }
            println!("pending:");
            for m in v["pending"].as_array().into_iter().flatten() {
                let labels: Vec<String> = m["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect();
                println!(
                    "  {}  {} {}  labels: {}",
                    s(m, "system"),
                    s(m, "kind"),
                    s(m, "subject"),
                    labels.join(",")
                );
            }
            println!("history:");
            for m in v["history"].as_array().into_iter().flatten() {
                println!(
                    "  #{}  {}  {} {}  {} .. {}  by {}  reason: {}{}",
                    m["id"],
                    s(m, "system_id"),
                    s(m, "kind"),
                    s(m, "subject"),
                    time(&m["from_ms"]),
                    time(&m["to_ms"]),
                    s(m, "assigned_by"),
                    s(m, "reason"),
                    m["ended_by"].as_str().map_or(String::new(), |e| format!(
                        "  ended by {e}: {}",
                        s(m, "end_reason")
                    )),
                );
            }
            return Ok(());
        }
        MembershipCommand::Assign(a) => ("assign", a),
        MembershipCommand::Unassign(a) => ("unassign", a),
    };
    let mut body = json!({
        "action": action, "system": a.system, "kind": a.kind, "subject": a.subject,
        "reason": a.reason,
    });
    if let Some(t) = a.effective_from_ms {
        body["effective_from_ms"] = json!(t);
    }
    let v = call(
        &c,
        reqwest::Method::POST,
        url(server, &a.contract),
        Some(body),
    )
    .await?;
    let row = &v["data"];
    println!(
        "{action}ed {} {} in {} (row {}, from {}{})",
        a.kind,
        a.subject,
        a.system,
        row["id"],
        time(&row["from_ms"]),
        row["to_ms"].as_i64().map_or(String::new(), |_| format!(
            ", until {}",
            time(&row["to_ms"])
        )),
    );
    Ok(())
}
