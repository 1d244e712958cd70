//! The `starling` binary: `starling serve` runs one node, `starling seed` generates a synthetic
//! graph.

use clap::{Parser, Subcommand};
use starling_api::config::{ServeArgs, ServeConfig};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc. A node's long-lived working set is small, but it passes
/// through large short-lived buffers (argon2id's 19 MiB per password check, batch encodes): glibc
/// raises its mmap threshold after the first such free and then keeps each buffer resident in
/// the arena of whichever blocking thread ran it, so 32 sign-ups left a node at 569 MiB RSS
/// instead of 25 MiB. mimalloc returns freed memory to the OS.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Serve(Box<ServeArgs>),
    /// Generate a synthetic social graph (Zipf followers) into a stopped node's store or
    /// through a running node's API.
    Seed(starling_api::seed::SeedArgs),
    /// Start a local multi-region cluster of real node processes with a simulated WAN
    /// (`down` stops a detached one).
    Cluster(starling_api::cluster::ClusterArgs),
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
            let cfg = ServeConfig::resolve(*args)?;
            init_logs(cfg.json_logs);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(starling_api::server::serve(cfg))
        }
        Command::Cluster(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(starling_api::cluster::cluster(args)),
        Command::Seed(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(starling_api::seed::seed(args)),
    }
}
