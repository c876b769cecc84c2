//! `yunwei-server quickstart`: the server on SQLite under a local data directory, with a local
//! agent enrolled and reporting to it, so a newcomer sees live data at once.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use anyhow::Context;

use crate::{
    Server,
    config::{Overrides, ServerConfig},
};

/// Where quickstart keeps its data when `--data-dir` is not given.
pub const DEFAULT_DATA_DIR: &str = ".yunwei-data";

/// Reads the enrollment secret kept in the data dir, creating it on first use.
fn enrollment_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("enrollment.secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if s.len() >= 16 {
            return Ok(s);
        }
    }
    let secret = crate::secret::random_hex(24);
    std::fs::write(&path, format!("{secret}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(secret)
}

/// Writes the shipped rule files into `<data_dir>/rules/` (keeping any the user has edited)
/// and returns their paths.
fn install_shipped_rules(data_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = data_dir.join("rules");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    for (name, text) in yunwei_rules::SHIPPED_RULES {
        let path = dir.join(name);
        if !path.exists() {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        files.push(path);
    }
    Ok(files)
}

/// Writes the example contract into `<data_dir>/contracts/` (keeping an edited copy) and returns
/// its path.
fn install_example_contract(data_dir: &Path, now_ms: i64) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("contracts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (name, text) = yunwei_sla::EXAMPLE_CONTRACT;
    let path = dir.join(name);
    if !path.exists() {
        let text = example_contract_for(text, now_ms)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// The example contract with its `period:` line moved to cover last month and the rest of
/// this year (China time), so a quickstart started in any year assesses and reports the months
/// it can see instead of noting that they lie outside a contract that ended. The shipped
/// calendar's years are unchanged: for a year it has no data for, the assessment guesses
/// weekends and marks itself provisional.
fn example_contract_for(text: &str, now_ms: i64) -> anyhow::Result<String> {
    use chrono::Datelike;
    let today = (chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default()
        + chrono::Duration::hours(8))
    .date_naive();
    let last_month_year = if today.month() == 1 {
        today.year() - 1
    } else {
        today.year()
    };
    let re =
        regex::Regex::new(r"(?m)^period: \{ start: \d{4}-\d{2}-\d{2}, end: \d{4}-\d{2}-\d{2} \}")?;
    anyhow::ensure!(
        re.is_match(text),
        "the example contract has no one-line `period:` to move"
    );
    let period = format!(
        "period: {{ start: {last_month_year}-01-01, end: {}-12-31 }}",
        today.year()
    );
    Ok(re.replace(text, period.as_str()).into_owned())
}

/// Creates user `admin` with a generated password when there is no user yet; returns the
/// line to print (the password is shown only this once).
async fn first_admin(store: &crate::store::Store) -> anyhow::Result<String> {
    use crate::auth::{Role, users};
    if !users::users(store).await?.is_empty() {
        return Ok("(log in with your user; `yunwei-server user passwd NAME --data-dir ...` resets a password)".into());
    }
    let password = users::generate_password();
    users::add_user(store, "admin", Role::Admin, &password, crate::now_ms()).await?;
    Ok(format!(
        "user: admin  password: {password}  (shown once; change it with `yunwei-server user passwd admin --data-dir ...`)"
    ))
}

/// Runs the server and a local agent until `shutdown` completes.
pub async fn run(
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    agent_interval_secs: u64,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_demo(listen, data_dir, agent_interval_secs, false, shutdown).await
}

/// Seeds clearly labelled simulated history (see [`crate::demo`]) for the example contract's
/// systems, from the start of the previous month until now, so that `report generate` works
/// for last month at once.
pub async fn seed_demo(
    config: &ServerConfig,
    now_ms: i64,
) -> anyhow::Result<crate::demo::DemoSummary> {
    use chrono::Datelike;
    let today = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .date_naive();
    let (y, m) = if today.month() == 1 {
        (today.year() - 1, 12)
    } else {
        (today.year(), today.month() - 1)
    };
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(today);
    // A day earlier than the UTC month start covers zones east of UTC (China: UTC+8).
    let from_ms = first
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
        - 86_400_000;
    let store =
        crate::store::Store::open(&config.database_url, config.ingest.sqlite_synchronous_full)
            .await
            .context("opening the store")?;
    let spec = crate::demo::DemoSpec {
        systems: vec![
            ("quickstart".into(), 2, 2),
            ("approval".into(), 3, 1),
            ("oa".into(), 2, 0),
        ],
        from_ms,
        to_ms: now_ms,
    };
    let summary = crate::demo::seed(&store, &spec).await;
    store.close().await;
    summary
}

/// [`run`], optionally seeding simulated history first (`--demo`).
pub async fn run_with_demo(
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    agent_interval_secs: u64,
    demo: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    crate::private_files::private_dir(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let mut config = ServerConfig::from_overrides(&Overrides {
        listen,
        data_dir: Some(data_dir.clone()),
        database_url: None,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    config.enrollment_secret = Some(enrollment_secret(&data_dir)?);
    config.rules.files = install_shipped_rules(&data_dir)?;
    config.contracts.files = vec![install_example_contract(&data_dir, crate::now_ms())?];
    let db = config.database_url.clone();
    if demo {
        let s = seed_demo(&config, crate::now_ms()).await?;
        if s.already_seeded {
            println!("--demo: the SIMULATED history is already in {db}");
        } else {
            println!(
                "--demo: seeded SIMULATED history (label simulated=true, hosts named sim-*): \
                 {} hosts, {} probes, {} status intervals, {} hourly rollups",
                s.hosts, s.probes, s.intervals, s.rollups
            );
        }
    }
    let server = Server::bind(config.clone()).await?;
    let (contract_id, month) = server
        .state()
        .contracts
        .list()
        .first()
        .map(|c| {
            let month = crate::contracts::current_month(&c.contract, crate::now_ms());
            (c.contract.id.clone(), month.label)
        })
        .unwrap_or_default();
    let addr = server.local_addr();
    let login = first_admin(&server.state().store).await?;

    // The local agent talks to the server over loopback (plain http is refused elsewhere), also
    // when the server listens on every address.
    let agent_addr = if addr.ip().is_unspecified() {
        let lo: std::net::IpAddr = if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        std::net::SocketAddr::new(lo, addr.port())
    } else {
        addr
    };
    let agent_yaml = format!(
        "server_url: http://{agent_addr}\nenrollment_secret: {secret}\nstate_dir: {state}\ninterval_secs: {agent_interval_secs}\n\
         labels:\n  system: quickstart\n  environment: demo\n\
         probes:\n  - name: yunwei-server-health\n    http: http://{agent_addr}/healthz\n    interval_secs: 15\n",
        secret = config.enrollment_secret.as_deref().unwrap_or_default(),
        state = data_dir.join("agent").display(),
    );
    let agent_config =
        yunwei_agent::config::parse_config(&agent_yaml, "<quickstart agent>", &data_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("agent".into())
            .spawn(move || yunwei_agent::run(agent_config, stop))?
    };

    println!(
        "\nyunwei quickstart is running (server + local agent reporting every {agent_interval_secs} s)\n\n  \
         data:     {data} (store: {db})\n  \
         hosts:    http://{addr}/api/v1/hosts\n  \
         series:   http://{addr}/api/v1/yunwei/series?match=node_load1\n  \
         rules:    http://{addr}/api/v1/rules ({rules})\n  \
         alerts:   http://{addr}/api/v1/alerts\n  \
         contract: http://{addr}/api/v1/contracts/{contract}/status ({contract_file})\n  \
         metrics:  http://{addr}/metrics\n  \
         health:   http://{addr}/readyz\n\n  \
         console:  http://{addr}/  {login}\n\n  \
         report (this month so far, from another terminal; also on the console's Reports page):\n    \
         yunwei-server report generate --data-dir {data} --contract-file {contract_file} \\\n      \
         --contract {contract} --period {month} --format html,pdf,xlsx,json --out reports\n\n\
         Enroll more agents with the secret in {data}/enrollment.secret. Press Ctrl-C to stop.\n",
        data = data_dir.display(),
        rules = data_dir.join("rules").display(),
        contract = contract_id,
        contract_file = config.contracts.files[0].display(),
    );

    let result = server.run(shutdown).await;
    stop.store(true, Ordering::SeqCst);
    match agent.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "local agent stopped with an error")
        }
        Err(_) => tracing::error!("local agent panicked"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn ms(y: i32, m: u32, d: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    }

    fn period_of(now_ms: i64) -> (NaiveDate, NaiveDate) {
        let text = example_contract_for(yunwei_sla::EXAMPLE_CONTRACT.1, now_ms).unwrap();
        let c = yunwei_sla::contract::parse_contract(&text, "example").unwrap();
        (c.period.start, c.period.end)
    }

    #[test]
    fn the_installed_example_contract_covers_last_month_and_this_year() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        assert_eq!(period_of(ms(2027, 3, 15)), (d(2027, 1, 1), d(2027, 12, 31)));
        // In January, last month (December) belongs to the previous year.
        assert_eq!(period_of(ms(2027, 1, 10)), (d(2026, 1, 1), d(2027, 12, 31)));
        // 2026-12-31 20:00 UTC is already 2027-01-01 in China.
        let new_year_eve_utc = ms(2026, 12, 31) + 8 * 3_600_000;
        assert_eq!(
            period_of(new_year_eve_utc),
            (d(2026, 1, 1), d(2027, 12, 31))
        );
    }
}
