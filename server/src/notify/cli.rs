//! `yunwei-server alerts ...` and `yunwei-server silences ...`: acknowledge, unacknowledge and
//! resolve alert groups and manage silences through a running server's API, authenticated with
//! an API token (`--token` or `YUNWEI_TOKEN`; create one with `yunwei-server token create`). The
//! server records the token's user as the one who acted.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// `alerts` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum AlertsCommand {
    /// List alert groups.
    List,
    /// Acknowledge a group: escalation stops.
    Ack {
        id: String,
        /// Kept for scripts; the server records the token's user.
        #[arg(long, default_value = "")]
        by: String,
    },
    /// Undo an acknowledgement: escalation resumes.
    Unack {
        id: String,
        /// Kept for scripts; the server records the token's user.
        #[arg(long, default_value = "")]
        by: String,
    },
    /// Mark a group's alerts resolved.
    Resolve {
        id: String,
        /// Kept for scripts; the server records the token's user.
        #[arg(long, default_value = "")]
        by: String,
    },
    /// Show the notification log (every delivery attempt).
    Log {
        #[arg(long)]
        group: Option<String>,
    },
}

/// `silences` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum SilencesCommand {
    List,
    /// Add a silence: `silences add 'instance="web1"' --for 2h --by 张三 --comment 升级`.
    Add {
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, e.g. 2h.
        #[arg(long = "for")]
        duration: String,
        /// Kept for scripts; the server records the token's user.
        #[arg(long, default_value = "")]
        by: String,
        #[arg(long)]
        comment: String,
    },
    /// End a silence now.
    Expire {
        id: String,
    },
}

/// An HTTP client sending `Authorization: Bearer TOKEN` when a token is given.
pub(crate) fn client(token: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
            .context("the token is not a valid header value")?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

pub(crate) async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = client.request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}",
            v["error"]["message"].as_str().unwrap_or("request failed")
        );
    }
    Ok(v)
}

/// Runs an `alerts` subcommand against `server` and prints the result.
pub async fn alerts(server: &str, token: Option<&str>, cmd: AlertsCommand) -> anyhow::Result<()> {
    let c = client(token)?;
    let base = server.trim_end_matches('/');
    let (action, id, by) = match cmd {
        AlertsCommand::List => {
            let v = call(
                &c,
                reqwest::Method::GET,
                format!("{base}/api/v1/notify/groups"),
                None,
            )
            .await?;
            for g in v["data"].as_array().into_iter().flatten() {
                println!(
                    "{}  {}  alerts={}  acked_by={}  labels={}",
                    g["id"].as_str().unwrap_or(""),
                    g["receiver"].as_str().unwrap_or(""),
                    g["alerts"].as_array().map_or(0, Vec::len),
                    g["ackedBy"].as_str().unwrap_or("-"),
                    g["groupLabels"]
                );
            }
            return Ok(());
        }
        AlertsCommand::Log { group } => {
            let q = group.map_or(String::new(), |g| format!("?group={g}"));
            let v = call(
                &c,
                reqwest::Method::GET,
                format!("{base}/api/v1/notify/log{q}"),
                None,
            )
            .await?;
            for r in v["data"].as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {}/{}  tier={}  {}  attempt={}  {}  {}",
                    super::message::local_time(r["attempted_ms"].as_i64().unwrap_or(0)),
                    r["group_id"].as_str().unwrap_or(""),
                    r["receiver"].as_str().unwrap_or(""),
                    r["channel"].as_str().unwrap_or(""),
                    r["tier"],
                    r["status"].as_str().unwrap_or(""),
                    r["attempt"],
                    if r["ok"] == true { "ok" } else { "FAILED" },
                    r["error"].as_str().unwrap_or("")
                );
            }
            return Ok(());
        }
        AlertsCommand::Ack { id, by } => ("ack", id, by),
        AlertsCommand::Unack { id, by } => ("unack", id, by),
        AlertsCommand::Resolve { id, by } => ("resolve", id, by),
    };
    call(
        &c,
        reqwest::Method::POST,
        format!("{base}/api/v1/notify/groups/{id}/{action}"),
        Some(json!({ "by": by })),
    )
    .await?;
    println!("{action}: {id}");
    Ok(())
}

/// Runs a `silences` subcommand against `server` and prints the result.
pub async fn silences(
    server: &str,
    token: Option<&str>,
    cmd: SilencesCommand,
) -> anyhow::Result<()> {
    let c = client(token)?;
    let base = server.trim_end_matches('/');
    match cmd {
        SilencesCommand::List => {
            let v = call(
                &c,
                reqwest::Method::GET,
                format!("{base}/api/v1/silences"),
                None,
            )
            .await?;
            for s in v["data"].as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {} .. {}  by {}  {}  {}",
                    s["id"].as_str().unwrap_or(""),
                    s["state"].as_str().unwrap_or(""),
                    super::message::local_time(s["starts_ms"].as_i64().unwrap_or(0)),
                    super::message::local_time(s["ends_ms"].as_i64().unwrap_or(0)),
                    s["created_by"].as_str().unwrap_or(""),
                    s["matchers"],
                    s["comment"].as_str().unwrap_or("")
                );
            }
        }
        SilencesCommand::Add {
            matchers,
            duration,
            by,
            comment,
        } => {
            let ms = super::config::parse_duration(&duration).map_err(anyhow::Error::msg)?;
            let v = call(
                &c,
                reqwest::Method::POST,
                format!("{base}/api/v1/silences"),
                Some(json!({
                    "matchers": matchers,
                    "ends_ms": crate::now_ms() + ms,
                    "by": by,
                    "comment": comment,
                })),
            )
            .await?;
            println!("{}", v["data"]["id"].as_str().unwrap_or(""));
        }
        SilencesCommand::Expire { id } => {
            call(
                &c,
                reqwest::Method::POST,
                format!("{base}/api/v1/silences/{id}/expire"),
                None,
            )
            .await?;
            println!("expired: {id}");
        }
    }
    Ok(())
}
