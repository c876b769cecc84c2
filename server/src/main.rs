//! `yunwei-server`: command-line entry point. The program lives in the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use yunwei_server::config::{Overrides, ServerConfig};

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
    /// Validate a configuration file (and the rule files it names) without starting anything.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
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
                ReportCommand::Verify {
                    file,
                    public_key,
                    data_dir,
                },
        } => {
            let key_path = public_key
                .unwrap_or_else(|| yunwei_server::report_keys::public_key_path(&data_dir));
            let key = yunwei_server::report_keys::load_public(&key_path)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            return Ok(match yunwei_reports::verify(&bytes, &key) {
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
                            "  the embedded signed data is authentic; compare the figures shown with it"
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: NOT VERIFIED: {e}", file.display());
                    ExitCode::FAILURE
                }
            });
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
