//! Command line of the yunwei host agent: `run` the agent or `check` its configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "yunwei-agent",
    version,
    about = "Collects host metrics and pushes them to the yunwei server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground.
    Run {
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
    /// Check a configuration file and exit.
    Check {
        #[arg(long, value_name = "PATH")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run { config } => yunwei_agent::load_config(&config).and_then(|config| {
            // SIGTERM and ctrl-c set the flag; the loop then stops within about 100 ms.
            let shutdown = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                signal_hook::flag::register(sig, shutdown.clone())?;
            }
            yunwei_agent::run(config, shutdown)
        }),
        Command::Check { config: path } => yunwei_agent::load_config(&path).map(|_| {
            println!("{}: ok", path.display());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
