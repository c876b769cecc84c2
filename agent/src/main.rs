//! Command line of the yunwei host agent: `run` the agent, collect `once`, or `check` its
//! configuration.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

const USAGE: &str = "\
yunwei-agent: collects host metrics and pushes them to the yunwei server

Usage:
  yunwei-agent run --config PATH            run in the foreground (SIGHUP reloads, SIGTERM stops)
  yunwei-agent once [--config PATH] [--json] collect once, print Prometheus text (or JSON)
  yunwei-agent check --config PATH          check a configuration file
  yunwei-agent --version | --help
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run { config: PathBuf },
    Once { config: Option<PathBuf>, json: bool },
    Check { config: PathBuf },
    Help,
    Version,
}

/// Parses the arguments after the program name. (A hand-written parser: clap would double the
/// size of this small program's command-line handling for three subcommands.)
fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut config = None;
    let mut json = false;
    let mut it = args.iter();
    let Some(sub) = it.next() else {
        return Err("missing command".into());
    };
    if matches!(sub.as_str(), "-h" | "--help" | "help") {
        return Ok(Command::Help);
    }
    if matches!(sub.as_str(), "-V" | "--version") {
        return Ok(Command::Version);
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => {
                let v = it.next().ok_or("--config needs a PATH")?;
                config = Some(PathBuf::from(v));
            }
            a if a.starts_with("--config=") => config = Some(PathBuf::from(&a[9..])),
            "--json" if sub == "once" => json = true,
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let need = |c: Option<PathBuf>| c.ok_or_else(|| format!("{sub} needs --config PATH"));
    match sub.as_str() {
        "run" => Ok(Command::Run {
            config: need(config)?,
        }),
        "check" => Ok(Command::Check {
            config: need(config)?,
        }),
        "once" => Ok(Command::Once { config, json }),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::Version => {
            println!("yunwei-agent {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Run { config: path } => yunwei_agent::load_config(&path).and_then(|config| {
            let shutdown = Arc::new(AtomicBool::new(false));
            let reload = Arc::new(AtomicBool::new(false));
            let mut control = yunwei_agent::Control::new(shutdown.clone())
                .reload_from(path.clone(), reload.clone());
            let wake = control.waker();
            // A thread turns signals into flags and wakes the loop, so it need not poll.
            let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
            std::thread::Builder::new()
                .name("signals".into())
                .stack_size(64 << 10)
                .spawn(move || {
                    for sig in signals.forever() {
                        if sig == SIGHUP {
                            reload.store(true, Ordering::Relaxed);
                        } else {
                            shutdown.store(true, Ordering::Relaxed);
                        }
                        let _ = wake.send(());
                    }
                })?;
            yunwei_agent::run_with(config, control)
        }),
        Command::Once { config, json } => once(config, json),
        Command::Check { config: path } => yunwei_agent::load_config(&path).map(|c| {
            println!(
                "{}: ok ({} probes, {} named processes)",
                path.display(),
                c.probes.len(),
                c.collect.processes.len()
            );
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

/// One collection (and one run of each probe) printed to stdout.
fn once(path: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let options = match &path {
        Some(p) => yunwei_agent::load_config(p)?,
        None => yunwei_agent::AgentConfig::new("http://127.0.0.1", std::path::Path::new("/")),
    };
    let text = yunwei_agent::once(&options, json)?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Command, String> {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        parse_args(&args)
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            parse("run --config a.yaml"),
            Ok(Command::Run {
                config: "a.yaml".into()
            })
        );
        assert_eq!(
            parse("check --config=/etc/a.yaml"),
            Ok(Command::Check {
                config: "/etc/a.yaml".into()
            })
        );
        assert_eq!(
            parse("once --json"),
            Ok(Command::Once {
                config: None,
                json: true
            })
        );
        assert_eq!(parse("--version"), Ok(Command::Version));
        assert_eq!(parse("run --help"), Ok(Command::Help));
        assert!(parse("").is_err());
        assert!(parse("run").unwrap_err().contains("--config"));
        assert!(parse("check --json --config a").is_err());
        assert!(parse("serve").is_err());
        assert!(parse("run --config").is_err());
    }
}
