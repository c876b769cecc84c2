//! `yunwei-server`: command-line entry point. The program lives in the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use yunwei_server::config::{Overrides, ServerConfig};

/// mimalloc instead of glibc's malloc: ingest allocates and frees many small strings per sample,
/// where glibc's malloc took about 21 % of the server's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "yunwei-server",
    version,
    about = "yunwei O&M monitoring and SLA assessment server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// YAML configuration file (see server/server.example.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: OverrideArgs,
    },
    /// Run the server on SQLite with a local agent reporting to it.
    Quickstart {
        /// Address to listen on.
        #[arg(long, default_value = yunwei_server::config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// Where to keep the database and the agent's state.
        #[arg(long, default_value = yunwei_server::quickstart::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Seconds between the local agent's batches.
        #[arg(long, default_value_t = 5)]
        agent_interval_secs: u64,
        /// Seed clearly labelled SIMULATED history (last month until now, hosts `sim-*` with
        /// label simulated=true) so that `report generate` works for last month at once.
        #[arg(long)]
        demo: bool,
    },
    /// Check or unit-test Prometheus rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Check O&M contract files.
    Contract {
        #[command(subcommand)]
        command: ContractCommand,
    },
    /// Performance-assessment reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Alert groups: list, ack, unack, resolve, log (through a running server's API).
    Alerts {
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        server: String,
        /// API token (operator role); also read from YUNWEI_TOKEN.
        #[arg(long, env = "YUNWEI_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: yunwei_server::notify::cli::AlertsCommand,
    },
    /// Silences: list, add, expire (through a running server's API).
    Silences {
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        server: String,
        /// API token (operator role); also read from YUNWEI_TOKEN.
        #[arg(long, env = "YUNWEI_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: yunwei_server::notify::cli::SilencesCommand,
    },
    /// System membership of hosts and probes: list, assign, unassign (through a running
    /// server's API; changes need a reviewer's or admin's token).
    Membership {
        #[arg(long, default_value = "http://127.0.0.1:9470")]
        server: String,
        /// API token; also read from YUNWEI_TOKEN.
        #[arg(long, env = "YUNWEI_TOKEN", hide_env_values = true)]
        token: Option<String>,
        #[command(subcommand)]
        command: yunwei_server::membership_cli::MembershipCommand,
    },
    /// Validate a configuration file (and the rule files it names) without starting anything.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Manage console users.
    User {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens for automation.
    Token {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// List enrolled agents or revoke an agent's token.
    Agent {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Make, list or revoke Prometheus remote-write senders (`POST /api/v1/write`).
    RemoteWrite {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: RemoteWriteCommand,
    },
    /// Rotate the secret new agents enroll with.
    Enrollment {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: EnrollmentCommand,
    },
    /// Check the audit trail.
    Audit {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// Which store a management command works on.
#[derive(clap::Args)]
struct StoreArgs {
    /// The server's YAML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (the SQLite file lives here).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. Without --password-stdin a password is generated and printed once.
    Add {
        name: String,
        /// admin, operator, reviewer or auditor.
        #[arg(long)]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (generated and printed unless --password-stdin); clears a lockout.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable a user and end their sessions.
    Disable { name: String },
    /// Re-enable a disabled user.
    Enable { name: String },
    /// Clear a login lockout.
    Unlock { name: String },
    /// List users.
    List,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token and print it once.
    Create {
        /// A unique name for the token.
        #[arg(long)]
        name: String,
        /// admin, operator, reviewer or auditor (a user's token has the user's role).
        #[arg(long, required_unless_present = "user")]
        role: Option<String>,
        /// The console user the token belongs to: it stops working as soon as the user is
        /// disabled or deleted. Without it the token is a service token of no user.
        #[arg(long)]
        user: Option<String>,
        /// Limit the token to some of its role's permissions (comma-separated: read, operate,
        /// approve, reports, audit, admin, metrics).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Days until the token expires (never when not given).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// Revoke a token by name.
    Revoke { name: String },
    /// List tokens (never their secrets).
    List,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// List agents: id, hostname, enrolled, last seen, revoked.
    List,
    /// Revoke an agent's token: its next batch is refused (401), on a running server too.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum RemoteWriteCommand {
    /// Make a sender (a Prometheus, vmagent or Grafana Agent feeding /api/v1/write) and print
    /// its token once: the bearer token or basic-auth password of its `remote_write`.
    Add { name: String },
    /// List senders: name, made, by whom, revoked, hosts their feeds made.
    List,
    /// Revoke a sender's token: its next request is refused (401), on a running server too.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum EnrollmentCommand {
    /// Make a new random enrollment secret and print it once. From then on only it enrolls
    /// new agents (running servers included); `enrollment_secret` in the config file is
    /// ignored. Enrolled agents keep their tokens.
    Rotate,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and check its signed checkpoints with the report key's public half
    /// (DATA_DIR/report-signing.pub) and DATA_DIR/audit-checkpoint; exit 1 naming the first
    /// changed or deleted row, or the checkpoint a rewrite broke.
    Verify,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rule files like `promtool check rules`; exit 1 on any problem.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule unit tests in promtool's format (`promtool test rules`); exit 1 on failure.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ContractCommand {
    /// Validate contract files (and the calendar files they name); exit 1 with every problem
    /// as file:line:col.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Generate, sign and archive a contract's report for a period and write the files.
    /// Safe while the server runs on the same store.
    Generate {
        /// YAML configuration file of the server (store, data dir, contracts).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Contract file(s), in addition to those of --config.
        #[arg(long)]
        contract_file: Vec<PathBuf>,
        /// Contract id.
        #[arg(long)]
        contract: String,
        /// 2026-10, 2026-Q3, 2026, or 2026-10-01..2026-10-15.
        #[arg(long)]
        period: String,
        /// Comma-separated formats.
        #[arg(long, default_value = "html,pdf,xlsx,json")]
        format: String,
        /// zh-CN or en.
        #[arg(long, default_value = "zh-CN")]
        lang: String,
        /// Output folder.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// PDF font (TrueType/OpenType with Chinese); default the Debian fonts-noto-cjk file.
        #[arg(long)]
        font: Option<PathBuf>,
    },
    /// Verify a report file (HTML, PDF, XLSX or JSON): its signature, and that the figures it
    /// shows are the signed ones. Exit 1 when it does not verify.
    Verify {
        file: PathBuf,
        /// Public key file (64 hex digits); default: DATA_DIR/report-signing.pub.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Data directory holding report-signing.pub.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// CJK font the PDF was rendered with, to compare its pages too (default: the Noto
        /// Sans CJK collection of Debian's fonts-noto-cjk when installed).
        #[arg(long, conflicts_with = "no_font")]
        font: Option<PathBuf>,
        /// Do not use the default font either: a PDF's pages are not compared, as on a machine
        /// without the font (so such a PDF does not verify without --allow-uncompared-pages).
        #[arg(long)]
        no_font: bool,
        /// Accept a PDF whose pages cannot be compared with the signed data (no font): only
        /// its embedded signed data is checked. Without it such a PDF does not verify (exit 1).
        #[arg(long)]
        allow_uncompared_pages: bool,
    },
    /// Recompute a report from its evidence file, without server or database: verify the
    /// report file (HTML, PDF, XLSX or JSON) as `verify` does, check the evidence file it names
    /// by SHA-256 (CONTRACT-PERIOD-vN.evidence.json beside it), compute every figure again and
    /// print OK, or each figure that differs (exit 1). Exit 2 when it cannot be recomputed
    /// (signature, missing or other evidence file).
    Recompute {
        file: PathBuf,
        /// The evidence file (default: the name the report gives it, beside FILE).
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Public key file (64 hex digits); default: DATA_DIR/report-signing.pub.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Data directory holding report-signing.pub.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// CJK font the PDF was rendered with, to compare its pages too.
        #[arg(long)]
        font: Option<PathBuf>,
        /// Accept a PDF whose pages cannot be compared with the signed data (no font).
        #[arg(long)]
        allow_uncompared_pages: bool,
    },
}

#[derive(clap::Args)]
struct OverrideArgs {
    /// Listen address (default 127.0.0.1:9470).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (the SQLite file lives here).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long)]
    database_url: Option<String>,
}

impl From<OverrideArgs> for Overrides {
    fn from(a: OverrideArgs) -> Overrides {
        Overrides {
            listen: a.listen,
            data_dir: a.data_dir,
            database_url: a.database_url,
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("yunwei-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Alerts {
            server,
            token,
            command,
        } => {
            rt.block_on(yunwei_server::notify::cli::alerts(
                &server,
                token.as_deref(),
                command,
            ))?;
        }
        Command::Silences {
            server,
            token,
            command,
        } => {
            rt.block_on(yunwei_server::notify::cli::silences(
                &server,
                token.as_deref(),
                command,
            ))?;
        }
        Command::Membership {
            server,
            token,
            command,
        } => {
            rt.block_on(yunwei_server::membership_cli::run(
                &server,
                token.as_deref(),
                command,
            ))?;
        }
        Command::User { store, command } => return rt.block_on(admin::user(store, command)),
        Command::Token { store, command } => return rt.block_on(admin::token(store, command)),
        Command::Audit { store, command } => return rt.block_on(admin::audit(store, command)),
        Command::Agent { store, command } => return rt.block_on(admin::agent(store, command)),
        Command::RemoteWrite { store, command } => {
            return rt.block_on(admin::remote_write(store, command));
        }
        Command::Enrollment { store, command } => {
            return rt.block_on(admin::enrollment(store, command));
        }
        Command::Serve { config, overrides } => {
            let overrides = overrides.into();
            let config = match config {
                Some(path) => ServerConfig::load(&path, &overrides),
                None => ServerConfig::from_overrides(&overrides),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            rt.block_on(async {
                let server = yunwei_server::Server::bind(config).await?;
                server.run(yunwei_server::shutdown_signal()).await
            })?;
        }
        Command::Quickstart {
            listen,
            data_dir,
            agent_interval_secs,
            demo,
        } => {
            rt.block_on(yunwei_server::quickstart::run_with_demo(
                Some(listen),
                Some(data_dir),
                agent_interval_secs,
                demo,
                yunwei_server::shutdown_signal(),
            ))?;
        }
        Command::Report {
            command:
                ReportCommand::Recompute {
                    file,
                    evidence,
                    public_key,
                    data_dir,
                    font,
                    allow_uncompared_pages,
                },
        } => {
            let args = yunwei_server::report_recompute::Args {
                file,
                evidence,
                public_key: public_key
                    .unwrap_or_else(|| yunwei_server::report_keys::public_key_path(&data_dir)),
                font,
                allow_uncompared_pages,
            };
            let status = yunwei_server::report_recompute::run(
                &args,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )?;
            return Ok(ExitCode::from(status as u8));
        }
        Command::Report {
            command:
                ReportCommand::Verify {
                    file,
                    public_key,
                    data_dir,
                    font,
                    no_font,
                    allow_uncompared_pages,
                },
        } => {
            let key_path = public_key
                .unwrap_or_else(|| yunwei_server::report_keys::public_key_path(&data_dir));
            let key = yunwei_server::report_keys::load_public(&key_path)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            // The same loader as `report generate`: a collection's simplified-Chinese face,
            // or the only face of a single font.
            let font_path = font.or_else(|| {
                let p = PathBuf::from(yunwei_server::reports::DEFAULT_FONT);
                (!no_font && p.exists()).then_some(p)
            });
            let font = match (&font_path, bytes.starts_with(b"%PDF-")) {
                (Some(path), true) => Some(yunwei_server::reports::load_font(Some(path))?),
                _ => None,
            };
            return Ok(
                match yunwei_reports::verify_with(
                    &bytes,
                    &key,
                    &yunwei_reports::VerifyOptions {
                        font: font.as_ref(),
                        allow_uncompared_pages,
                    },
                ) {
                    Ok(v) => {
                        let c = &v.report.cover;
                        println!(
                            "{}: OK ({}) contract {} period {} version {}, score {}, sha256 {}, key {}",
                            file.display(),
                            v.format,
                            c.contract_id,
                            c.period.label,
                            c.version,
                            v.report.summary.score,
                            v.sha256,
                            v.key_id
                        );
                        if v.content_checked {
                            println!("  the figures shown match the signed data");
                        } else {
                            println!(
                                "  PAGES NOT COMPARED (--allow-uncompared-pages): only the embedded signed data was checked; the pages shown may differ from it (pass --font to compare them)"
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{}: NOT VERIFIED: {e}", file.display());
                        if matches!(e, yunwei_reports::VerifyError::PagesNotCompared) {
                            eprintln!(
                                "  pass --font FILE (the font the report was made with), or --allow-uncompared-pages to accept the embedded signed data alone"
                            );
                        }
                        ExitCode::FAILURE
                    }
                },
            );
        }
        Command::Report {
            command:
                ReportCommand::Generate {
                    config,
                    overrides,
                    contract_file,
                    contract,
                    period,
                    format,
                    lang,
                    out,
                    font,
                },
        } => {
            use yunwei_server::reports;
            let args = reports::CliGenerate {
                config,
                overrides: overrides.into(),
                contract_files: contract_file,
                contract,
                request: reports::Request {
                    period,
                    formats: reports::ReportFormat::parse_list(&format)
                        .map_err(|e| anyhow::anyhow!("--format: {e}"))?,
                    lang: reports::parse_lang(&lang).map_err(|e| anyhow::anyhow!("--lang: {e}"))?,
                    font,
                    origin: "cli".into(),
                    notes: Vec::new(),
                    compute_limit: None,
                },
                out,
            };
            let (a, paths) = rt.block_on(reports::run_cli(&args, yunwei_server::now_ms()))?;
            println!(
                "contract {} period {} version {} score {} (archive id {}, sha256 {})",
                a.contract_id,
                a.period,
                a.version,
                yunwei_reports::Fixed(a.score_milli),
                a.id,
                a.sha256
            );
            for p in paths {
                println!("  {}", p.display());
            }
        }
        Command::Check { config } => match ServerConfig::load(&config, &Overrides::default()) {
            Ok(c) => {
                if let Err(e) = yunwei_server::rules::load(&c.rules.files) {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
                println!(
                    "{}: ok ({} rule files)",
                    config.display(),
                    c.rules.files.len()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
        },
        Command::Rules {
            command: RulesCommand::Check { files },
        } => {
            let mut ok = true;
            for f in &files {
                println!("Checking {}", f.display());
                match yunwei_rules::rulefile::load_rule_files(std::slice::from_ref(f)) {
                    Ok(parsed) => {
                        let n: usize = parsed
                            .iter()
                            .flat_map(|p| &p.groups)
                            .map(|g| g.rules.len())
                            .sum();
                        println!("  SUCCESS: {n} rules found\n");
                    }
                    Err(e) => {
                        ok = false;
                        println!("  FAILED:");
                        eprintln!("{e}\n");
                    }
                }
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Contract {
            command: ContractCommand::Check { files },
        } => return Ok(contract_check(&files)),
        Command::Rules {
            command: RulesCommand::Test { files },
        } => {
            let outcome = yunwei_rules::unittest::run_unit_test_files(&files);
            print!("{}", outcome.output);
            return Ok(if outcome.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `contract check`: every problem of every file (and of the calendar files a contract names,
/// resolved against the contract's folder) on stderr; exit 1 when there is any.
fn contract_check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match yunwei_server::contracts::load_file(f) {
            Ok(c) => println!(
                "{}: ok (contract {}, {} systems)",
                f.display(),
                c.contract.id,
                c.contract.systems.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The user, token and audit subcommands.
mod admin {
    use std::{io::BufRead, process::ExitCode};

    use anyhow::{Context, bail};
    use yunwei_server::{
        audit,
        auth::{Role, users},
        config::{Overrides, ServerConfig},
        now_ms,
        store::Store,
    };

    use super::{
        AgentCommand, AuditCommand, EnrollmentCommand, RemoteWriteCommand, StoreArgs, TokenCommand,
        UserCommand,
    };

    async fn open(a: StoreArgs) -> anyhow::Result<Store> {
        let o = Overrides {
            listen: None,
            data_dir: a.data_dir,
            database_url: a.database_url,
        };
        let config = match &a.config {
            Some(path) => ServerConfig::load(path, &o),
            None => ServerConfig::from_overrides(&o),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Store::open(&config.database_url, config.ingest.sqlite_synchronous_full)
            .await
            .context("opening the store")
    }

    fn role(s: &str) -> anyhow::Result<Role> {
        Role::parse(s)
            .with_context(|| format!("--role: {s:?} is not admin, operator, reviewer or auditor"))
    }

    /// The password from stdin, or a generated one (printed once by the caller).
    fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
        if from_stdin {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            Ok((line.trim_end_matches(['\r', '\n']).to_string(), false))
        } else {
            Ok((users::generate_password(), true))
        }
    }

    /// The audit row of a command, committed with the change it makes.
    fn cli(action: &str, target: &str) -> Option<audit::Pending> {
        Some(audit::Pending::new(
            now_ms(),
            &audit::Entry {
                actor: "cli".into(),
                action: action.into(),
                target: target.into(),
                result: "success".into(),
                source: "local".into(),
                detail: serde_json::json!({}),
            },
        ))
    }

    pub async fn user(a: StoreArgs, c: UserCommand) -> anyhow::Result<ExitCode> {
        let store = open(a).await?;
        match c {
            UserCommand::Add {
                name,
                role: r,
                password_stdin,
            } => {
                let r = role(&r)?;
                let (pw, generated) = password(password_stdin)?;
                let rec = cli("user.add", &name);
                users::add_user_audited(&store, &name, r, &pw, now_ms(), audit::of(&rec)).await?;
                println!("added user {name} ({})", r.as_str());
                if generated {
                    println!("password (shown once): {pw}");
                }
            }
            UserCommand::Passwd {
                name,
                password_stdin,
            } => {
                let (pw, generated) = password(password_stdin)?;
                let rec = cli("user.passwd", &name);
                users::set_password(&store, &name, &pw, now_ms(), audit::of(&rec)).await?;
                println!("password of {name} changed; its sessions were ended");
                if generated {
                    println!("password (shown once): {pw}");
                }
            }
            UserCommand::Disable { name } => {
                let rec = cli("user.disable", &name);
                users::set_disabled(&store, &name, true, audit::of(&rec)).await?;
                println!("disabled {name}");
            }
            UserCommand::Enable { name } => {
                let rec = cli("user.enable", &name);
                users::set_disabled(&store, &name, false, audit::of(&rec)).await?;
                println!("enabled {name}");
            }
            UserCommand::Unlock { name } => {
                let rec = cli("user.unlock", &name);
                users::unlock(&store, &name, audit::of(&rec)).await?;
                println!("unlocked {name}");
            }
            UserCommand::List => {
                let now = now_ms();
                println!("{:<24} {:<9} STATUS", "NAME", "ROLE");
                for u in users::users(&store).await? {
                    let status = if u.disabled {
                        "disabled"
                    } else if u.locked_until_ms.is_some_and(|t| t > now) {
                        "locked"
                    } else {
                        "active"
                    };
                    println!("{:<24} {:<9} {status}", u.name, u.role.as_str());
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    }

    pub async fn token(a: StoreArgs, c: TokenCommand) -> anyhow::Result<ExitCode> {
        let store = open(a).await?;
        match c {
            TokenCommand::Create {
                name,
                role: r,
                user,
                scopes,
                expires_days,
            } => {
                let r = match (&user, r) {
                    (Some(u), r) => {
                        let owner = users::user(&store, u)
                            .await?
                            .with_context(|| format!("--user: no user {u:?}"))?;
                        if let Some(r) = r.as_deref().map(role).transpose()?
                            && r != owner.role
                        {
                            bail!(
                                "--role: a user's token has the user's role ({})",
                                owner.role.as_str()
                            );
                        }
                        owner.role
                    }
                    (None, Some(r)) => role(&r)?,
                    (None, None) => bail!("--role or --user is required"),
                };
                let perms = users::parse_scopes(r, &scopes).context("--scopes")?;
                let now = now_ms();
                let expires = expires_days.map(|d| now + i64::from(d) * 86_400_000);
                let rec = cli("token.create", &name);
                let secret = match &user {
                    Some(u) => {
                        users::create_user_token(
                            &store,
                            &name,
                            u,
                            &perms,
                            expires,
                            now,
                            audit::of(&rec),
                        )
                        .await?
                    }
                    None => {
                        users::create_token_audited(
                            &store,
                            &name,
                            r,
                            &perms,
                            expires,
                            now,
                            audit::of(&rec),
                        )
                        .await?
                    }
                };
                println!("{secret}");
            }
            TokenCommand::Revoke { name } => {
                let rec = cli("token.revoke", &name);
                users::revoke_token_audited(&store, &name, audit::of(&rec)).await?;
                println!("revoked {name}");
            }
            TokenCommand::List => {
                for t in users::tokens(&store).await? {
                    let scopes: Vec<&str> = t.scopes.iter().map(|p| p.as_str()).collect();
                    println!(
                        "{:<24} {:<9} user={} scopes={} {}",
                        t.name,
                        t.role.as_str(),
                        t.user.as_deref().unwrap_or("-"),
                        if scopes.is_empty() {
                            "all".into()
                        } else {
                            scopes.join(",")
                        },
                        if t.revoked { "revoked" } else { "" }
                    );
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    }

    /// A time for listings: UTC, to the second.
    fn when(ms: Option<i64>) -> String {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map_or_else(
                || "-".into(),
                |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )
    }

    pub async fn agent(a: StoreArgs, c: AgentCommand) -> anyhow::Result<ExitCode> {
        let store = open(a).await?;
        match c {
            AgentCommand::List => {
                println!(
                    "{:<18} {:<24} {:<21} {:<21} revoked",
                    "id", "hostname", "enrolled", "last seen"
                );
                for a in yunwei_server::ingest::list_agents(&store).await? {
                    println!(
                        "{:<18} {:<24} {:<21} {:<21} {}",
                        a.agent_id,
                        a.hostname,
                        when(Some(a.enrolled_ms)),
                        when(a.last_seen_ms),
                        when(a.revoked_ms)
                    );
                }
            }
            AgentCommand::Revoke { id } => {
                let hostname =
                    yunwei_server::ingest::revoke_agent(&store, &id, now_ms(), "cli", "local")
                        .await?;
                println!("revoked the token of agent {id} ({hostname})");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    }

    pub async fn remote_write(a: StoreArgs, c: RemoteWriteCommand) -> anyhow::Result<ExitCode> {
        use yunwei_server::ingest::remote_write as rw;
        let store = open(a).await?;
        match c {
            RemoteWriteCommand::Add { name } => {
                let rec = cli("remote_write.sender.create", &name);
                let token = rw::create_sender(&store, &name, now_ms(), "cli", audit::of(&rec))
                    .await
                    .with_context(|| format!("remote-write add {name}"))?;
                println!("{token}");
            }
            RemoteWriteCommand::List => {
                let hosts = store.remote_write_hosts().await?;
                println!(
                    "{:<24} {:<21} {:<12} {:<21} hosts",
                    "name", "created", "by", "revoked"
                );
                for s in store.remote_write_senders().await? {
                    let n = hosts.iter().filter(|h| h.sender == s.name).count();
                    println!(
                        "{:<24} {:<21} {:<12} {:<21} {n}",
                        s.name,
                        when(Some(s.created_ms)),
                        s.created_by,
                        when(s.revoked_ms)
                    );
                }
            }
            RemoteWriteCommand::Revoke { name } => {
                let rec = cli("remote_write.sender.revoke", &name);
                rw::revoke_sender(&store, &name, now_ms(), audit::of(&rec))
                    .await
                    .with_context(|| format!("remote-write revoke {name}"))?;
                println!("revoked the token of sender {name}");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    }

    pub async fn enrollment(a: StoreArgs, c: EnrollmentCommand) -> anyhow::Result<ExitCode> {
        let store = open(a).await?;
        match c {
            EnrollmentCommand::Rotate => {
                let rec = cli("enrollment.rotate", "enrollment_secret");
                let secret = yunwei_server::ingest::rotate_enrollment_secret(
                    &store,
                    now_ms(),
                    audit::of(&rec),
                )
                .await?;
                println!("{secret}");
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    }

    pub async fn audit(a: StoreArgs, c: AuditCommand) -> anyhow::Result<ExitCode> {
        let o = Overrides {
            listen: None,
            data_dir: a.data_dir.clone(),
            database_url: a.database_url.clone(),
        };
        let data_dir = match &a.config {
            Some(path) => ServerConfig::load(path, &o),
            None => ServerConfig::from_overrides(&o),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .data_dir;
        let store = open(a).await?;
        let AuditCommand::Verify = c;
        let key_path = yunwei_server::report_keys::public_key_path(&data_dir);
        let key = if key_path.exists() {
            Some(yunwei_server::report_keys::load_public(&key_path)?)
        } else {
            None
        };
        let anchor = audit::load_anchor(&data_dir)?;
        let result = audit::verify(&store, key.as_ref(), anchor.as_ref())
            .await
            .with_context(|| format!("public key {}", key_path.display()));
        store.close().await;
        match result? {
            Ok(v) => {
                println!(
                    "audit log intact: {} rows, head hash {}",
                    v.chain.rows, v.chain.hash
                );
                match &v.newest {
                    Some(c) => {
                        println!(
                            "{} signed checkpoints verified with {}; newest at row {} ({} ms)",
                            v.checkpoints,
                            key_path.display(),
                            c.seq,
                            c.ts_ms
                        );
                        if c.seq < v.chain.rows {
                            println!(
                                "rows {} to {} are after the newest checkpoint (not yet anchored)",
                                c.seq + 1,
                                v.chain.rows
                            );
                        }
                    }
                    None => println!("no signed checkpoints yet: the chain is not anchored"),
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("audit log BROKEN: {e}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
