//! The `starling` binary: `starling serve` runs one node.

use clap::{Parser, Subcommand};
use starling_api::config::{ServeArgs, ServeConfig};
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

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("STARLING_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::resolve(args)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(starling_api::server::serve(cfg))
        }
    }
}
