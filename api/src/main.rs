//! The `starling` binary: `starling serve` runs one node.

use clap::{Parser, Subcommand};
use starling_api::config::{ServeArgs, ServeConfig};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Starling: a multi-region social network backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node (embedded store, single region, no flags needed).
    Serve(ServeArgs),
}

fn init_logs(json: bool) {
    let filter = EnvFilter::try_from_env("STARLING_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        fmt.json().init();
    } else {
        fmt.with_ansi(std::io::stdout().is_terminal()).init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line (with its causes), not a backtrace.
            eprintln!("starling: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::resolve(args)?;
            init_logs(cfg.json_logs);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(starling_api::server::serve(cfg))
        }
    }
}
