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
    },
    /// Check or unit-test Prometheus rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
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

/// Where Debian's fonts-noto-cjk puts the CJK collection the PDF renderer uses.
const DEFAULT_CJK_FONT: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";

#[derive(Subcommand)]
enum ReportCommand {
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
        #[arg(long)]
        font: Option<PathBuf>,
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
        } => {
            rt.block_on(yunwei_server::quickstart::run(
                Some(listen),
                Some(data_dir),
                agent_interval_secs,
                yunwei_server::shutdown_signal(),
            ))?;
        }
        Command::Report {
            command:
                ReportCommand::Verify {
                    file,
                    public_key,
                    data_dir,
                    font,
                },
        } => {
            let key_path = public_key
                .unwrap_or_else(|| yunwei_server::report_keys::public_key_path(&data_dir));
            let key = yunwei_server::report_keys::load_public(&key_path)?;
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
            let font_path = font.or_else(|| {
                let p = PathBuf::from(DEFAULT_CJK_FONT);
                p.exists().then_some(p)
            });
            let font = match (&font_path, bytes.starts_with(b"%PDF-")) {
                (Some(path), true) => {
                    let data = std::fs::read(path)
                        .map_err(|e| anyhow::anyhow!("reading font {}: {e}", path.display()))?;
                    Some(yunwei_reports::pdf::PdfFont::new(
                        std::sync::Arc::new(data),
                        yunwei_reports::pdf::PdfFont::NOTO_CJK_SC_INDEX,
                    )?)
                }
                _ => None,
            };
            return Ok(
                match yunwei_reports::verify_with_font(&bytes, &key, font.as_ref()) {
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
                                "  the embedded signed data is authentic; the pages were not compared with it (no font, see --font)"
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{}: NOT VERIFIED: {e}", file.display());
                        ExitCode::FAILURE
                    }
                },
            );
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
