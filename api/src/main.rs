//! The `starling` binary: `starling serve` runs one node, `starling seed` generates a synthetic
//! graph.

use clap::{Parser, Subcommand};
use starling_api::config::values::LogFormat;
use starling_api::config::{CommandLine, ServeArgs, ServeConfig};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc. A node's long-lived working set is small, but it passes
/// through large short-lived buffers (argon2id's 19 MiB per password check, batch encodes): glibc
/// raises its mmap threshold after the first such free and then keeps each buffer resident in
/// the arena of whichever blocking thread ran it, so 32 sign-ups left a node at 569 MiB RSS
/// instead of 25 MiB. mimalloc returns freed memory to the OS.
///
/// mimalloc v2 (2.3), not the crate's default v3 (3.3): v3 nodes' RSS grew past their live heap
/// in two soaks (not in a third), v2 serves the REST rows as fast or faster with less RSS
/// (bench/alloc.md), and v3 is reported to hold memory under churn (mimalloc #1014, #1282).
#[cfg(any(feature = "mimalloc", feature = "mimalloc-v3"))]
use mimalloc::MiMalloc as Inner;
#[cfg(all(
    feature = "heap-count",
    not(any(feature = "mimalloc", feature = "mimalloc-v3"))
))]
use std::alloc::System as Inner;

#[cfg(all(
    any(feature = "mimalloc", feature = "mimalloc-v3"),
    not(feature = "heap-count")
))]
#[global_allocator]
static ALLOCATOR: Inner = Inner;

/// With `heap-count` the allocator (mimalloc, or the system's without it) is counted: `/metrics`
/// reports the live heap beside the RSS (see `starling_api::heap`).
#[cfg(feature = "heap-count")]
#[global_allocator]
static ALLOCATOR: cap::Cap<Inner> = cap::Cap::new(Inner, usize::MAX);

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
    Serve(Box<CommandLine<ServeArgs>>),
    /// Generate a synthetic social graph (Zipf followers) into a stopped node's store or
    /// through a running node's API.
    Seed(starling_api::seed::SeedArgs),
    /// Start a local multi-region cluster of real node processes with a simulated WAN
    /// (`down` stops a detached one).
    Cluster(starling_api::cluster::ClusterArgs),
    /// Exit 0 when a local node answers `/healthz` (a container's health check: the image
    /// has no shell or curl).
    Health(HealthArgs),
}

/// Flags of `starling health`.
#[derive(clap::Args, Debug)]
struct HealthArgs {
    /// The node's listen address (`0.0.0.0`/`::` is probed on loopback).
    #[arg(long, env = "STARLING_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
}

/// Probes `/healthz` of the node listening at `listen`, within 3 s.
fn health(args: &HealthArgs) -> anyhow::Result<()> {
    let mut addr = args.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(3)))
        .build()
        .into();
    let url = format!("http://{addr}/healthz");
    agent
        .get(&url)
        .call()
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    Ok(())
}

/// Logs to stdout (`STARLING_LOG` filters them, `info` by default) and, with `tracing`, trace
/// spans to the OTLP exporter. The log layer never sees the trace spans' target, so with traces
/// off no layer wants those spans and their call sites stay disabled.
fn init_logs(json: bool, tracing: Option<&starling_api::telemetry::Tracing>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let trace_target = starling_api::telemetry::TARGET;
    let filter = EnvFilter::try_from_env("STARLING_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive(format!("{trace_target}=off").parse().unwrap_or_else(|_| {
            tracing_subscriber::filter::Directive::from(tracing::Level::ERROR)
        }));
    let fmt = tracing_subscriber::fmt::layer();
    let logs = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let traces = tracing.map(|t| {
        t.layer().with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(trace_target, tracing::Level::INFO),
        )
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
}

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`), as Redis and the
/// RocksDB guides advise for a long-running server: with THP `always` (many distributions'
/// default) the kernel backs the allocator's spans with 2 MiB pages and khugepaged collapses
/// partly used ranges into whole ones, so memory freed in 4 KiB pieces stays resident. In a
/// 12-minute soak at 4 454 req/s mimalloc's own switch to the same call (`MIMALLOC_ALLOW_THP=0`)
/// lowered a node's RSS by ~40 MiB of ~280 (`bench/soak/soak-720s-release-mimalloc-allow-thp-0*`).
/// Best effort: a kernel without the call serves the same, only with more memory.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off; RSS may be higher");
    }
}

/// Raises the open-file limit to the hard limit: every socket is a file, and a soft limit of
/// 1 024 (many distributions' default) would make `accept` fail with EMFILE long before
/// `--max-connections`. Says at start when even the hard limit is below that cap (the accept
/// loop then backs off on EMFILE instead of spinning, and the cap cannot be reached).
fn open_files_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < u64::try_from(max_connections).unwrap_or(u64::MAX) => {
            tracing::warn!(
                limit,
                max_connections,
                "the open-file limit is below --max-connections; raise it (ulimit -n, LimitNOFILE=)"
            );
        }
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A value its setting's type refuses: one line naming the flag, as every other refusal
        // at start (clap's usage hint under it left out). `--help`, `--version` and other
        // usage errors as clap prints them.
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
            ) =>
        {
            let text = e.to_string();
            eprintln!("starling: {}", text.lines().next().unwrap_or_default());
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line (with its causes), not a backtrace.
            eprintln!("starling: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Threads of `serve`'s blocking pool at most (tokio's default is 512), where the embedded
/// store's reads, commits and flushes and the password hashing run. In the soaks of 2026-12-06
/// a 2-core node's pool reached the 512 within minutes, at 2 500 req/s and at 1 200, and its
/// RSS rose with it to 1.9-2.1 and 1.5-1.7 GiB (about 0.45 GiB before the store moved to the
/// pool); why so many threads were started is not proven. Past the bound, calls queue for the
/// next free thread (RELIABILITY.md, "Soak").
const BLOCKING_THREADS: usize = 32;

fn run(cli: Cli) -> anyhow::Result<()> {
    #[cfg(feature = "heap-count")]
    starling_api::heap::count_with(|| ALLOCATOR.allocated());
    match cli.command {
        Command::Serve(args) => {
            let cfg = ServeConfig::resolve(*args)?;
            // Built before the runtime and shut down after it: the exporter's HTTP client is a
            // blocking one, on the batch processor's own thread.
            let settings = &cfg.settings;
            let tracing = match settings.otlp_endpoint() {
                Some(e) => Some(starling_api::telemetry::Tracing::otlp(
                    &e,
                    settings.region.as_str(),
                    &settings.node_name(),
                )?),
                None => None,
            };
            init_logs(settings.log_format == LogFormat::Json, tracing.as_ref());
            no_transparent_huge_pages();
            open_files_limit(settings.conn.max_connections.usize());
            // tokio names its workers and its blocking pool's threads alike
            // (`tokio-runtime-worker`); named apart, the thread sampler
            // (infra/diag/thread-states.py) tells a worker in disk wait from a pool thread doing
            // the store's I/O. The runtime starts its workers first, a thread each, when it is
            // built: the first names are theirs.
            let workers = std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let named = std::sync::atomic::AtomicUsize::new(0);
            let served = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .max_blocking_threads(BLOCKING_THREADS)
                .thread_name_fn(move || {
                    match named.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
                        i if i < workers => format!("tokio-worker-{i}"),
                        _ => "tokio-blocking".to_string(),
                    }
                })
                .enable_all()
                .build()?
                .block_on(starling_api::server::serve(cfg));
            if let Some(t) = tracing {
                t.shutdown();
            }
            served
        }
        Command::Cluster(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(starling_api::cluster::cluster(args)),
        Command::Health(args) => health(&args),
        Command::Seed(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(starling_api::seed::seed(args)),
    }
}
