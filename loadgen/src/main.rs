//! `starling-load`: the command line of the load generator.
//!
//! `starling-load run --target http://a,http://b --users 100 --mix read=99,post=1 --rate 500`
//! sets up the users, drives the scenario, prints a table and writes the JSON report, the plots
//! and the acked log; `starling-load verify --acked-log acked.jsonl --target …` reads every
//! acknowledged write back. See the README's "Load testing" section.

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use starling_loadgen::chat::{ChatConfig, Protocol, run_chat};
use starling_loadgen::http::Http;
use starling_loadgen::idle::{IdleConfig, run_idle};
use starling_loadgen::report::{Report, RunInfo};
use starling_loadgen::run::{RunConfig, run_on_posts};
use starling_loadgen::schedule::{Arrivals, Mix, Op, Rate};
use starling_loadgen::users::{Setup, setup};
use starling_loadgen::{acked, centrifugo, plot, sessions, verify};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "starling-load", version, about = "Load generator for Starling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Set up users and drive a scenario.
    Run(Box<RunArgs>),
    /// Read back every acknowledged write of an acked log.
    Verify(VerifyArgs),
}

/// The nodes a command talks to: `--target`, declared once for `run` and `verify`, each of which
/// says in its own help (`mut_arg`) what it does with them.
#[derive(Args, Debug)]
struct Targets {
    #[arg(
        long,
        env = "STARLING_LOAD_TARGET",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    target: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(mut_arg("target", |a| a.help(
    "Base URLs of the nodes, comma separated; users are spread over them round-robin"
)))]
struct RunArgs {
    #[command(flatten)]
    targets: Targets,
    /// Scenario: `rest` (the --mix), `chat` (WebSocket chatters) or `idle` (--conns idle
    /// sockets and the server's memory per socket; needs --server-pid).
    #[arg(long, default_value = "rest")]
    scenario: String,
    /// Chat and idle: the server's protocol, `starling` or `centrifugo` (then --target is
    /// `ws://HOST:PORT`, conversations are channels `chat:<k>` and there is no REST setup).
    #[arg(long, default_value = "starling")]
    protocol: String,
    /// Centrifugo: the HMAC secret of its connection JWTs (HS256, `sub` = `u<i>`); without it
    /// sockets connect without a token (the server's insecure client mode).
    #[arg(long, env = "STARLING_LOAD_CENTRIFUGO_SECRET")]
    centrifugo_secret: Option<String>,
    /// Chat and idle: the server's process id; the report gives its CPU time over the measured
    /// window per delivery (chat) or its resident memory per socket (idle).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Idle: sockets to open.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Idle: how long to hold them open before reading the server's memory.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Starling: reuse the users saved in this file by an earlier run (against the same
    /// server), or set them up and save them there.
    #[arg(long)]
    sessions: Option<PathBuf>,
    /// Weighted REST operations: read, post, unpost, follow, unfollow, health, chat, group, edit,
    /// like, unlike, repost, unrepost, notify, password, delete, e.g. `read=99,post=1`.
    #[arg(long, default_value = "read=99,post=1")]
    mix: String,
    /// REST: the posts (ids, comma separated) the like, unlike, repost and unrepost operations go
    /// to, round robin, instead of posts of the run's own; each must exist on every target (one
    /// post liked from every region, or many as its baseline).
    #[arg(long, value_delimiter = ',')]
    like_posts: Vec<String>,
    /// Requests (or chat messages) per second, open loop; `max` for closed loop.
    #[arg(long, default_value = "100")]
    rate: String,
    /// Arrivals of the open loop: `poisson` or `uniform`.
    #[arg(long, default_value = "poisson")]
    arrivals: String,
    /// Closed loop: workers. Open loop: requests in flight at most (more are dropped, counted).
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Measured time.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before it.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Users taking part.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Handle pattern: `{i}` the user's index, `{run}` a random tag of this run.
    #[arg(long, default_value = "ld{run}_{i}")]
    handles: String,
    /// Password of every user.
    #[arg(long, default_value = "password1")]
    password: String,
    /// Log in existing users (e.g. `--handles 'user{i}'` after `starling seed`) instead of
    /// signing up.
    #[arg(long)]
    login: bool,
    /// Setup: each user follows this many others.
    #[arg(long, default_value_t = 0)]
    follows: usize,
    /// Setup: each user writes this many posts.
    #[arg(long, default_value_t = 0)]
    posts: usize,
    /// Setup requests in flight.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
    /// Feed page size of reads.
    #[arg(long, default_value_t = 20)]
    feed_limit: u32,
    /// Chat: members per conversation (2 = 1:1).
    #[arg(long, default_value_t = 2)]
    group_size: usize,
    /// Chat: bytes per message body.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// Chat: time to wait for the last deliveries.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Seed of the schedule and of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write `<prefix>latency.png` and `<prefix>throughput.png` into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// File-name prefix of the plots.
    #[arg(long, default_value = "")]
    plot_prefix: String,
    /// Log every acknowledged write here (JSON lines) for `verify`.
    #[arg(long)]
    acked_log: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Parser, Debug)]
#[command(mut_arg("target", |a| a.help(
    "Base URLs of the nodes to check, comma separated: every write is checked on each"
)))]
struct VerifyArgs {
    #[command(flatten)]
    targets: Targets,
    /// The acked log written by `run --acked-log`.
    #[arg(long)]
    acked_log: PathBuf,
    /// Requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the verification as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
    format!("{:06x}", (nanos ^ std::process::id()) & 0xff_ffff)
}

async fn cmd_run(a: RunArgs) -> anyhow::Result<()> {
    let rate: Rate = a.rate.parse()?;
    let arrivals: Arrivals = a.arrivals.parse()?;
    // Every request in flight is a socket; a soft limit of 1 024 open files is common.
    let files = rlimit::increase_nofile_limit(u64::MAX)?;
    if files < u64::try_from(a.concurrency).unwrap_or(u64::MAX) + 64 {
        eprintln!(
            "warning: the open-file limit ({files}) is below --concurrency ({}); requests beyond it fail to connect",
            a.concurrency
        );
    }
    let http = Http::new(a.timeout, a.concurrency);
    let (log, writer) = match &a.acked_log {
        Some(p) => {
            let (l, w) = acked::AckedLog::create(p)?;
            (Some(l), Some(w))
        }
        None => (None, None),
    };
    let ops: Vec<Op> = if a.scenario == "rest" {
        a.mix.parse::<Mix>()?.ops().collect()
    } else {
        Vec::new()
    };
    let setup_cfg = Setup {
        users: a.users,
        handles: a.handles.clone(),
        password: a.password.clone(),
        login_only: a.login,
        follows: a.follows,
        posts: a.posts,
        concurrency: a.setup_concurrency,
        run_tag: run_tag(),
        // The `chat` operation of the REST mix sends into each user's 1:1 conversation, and
        // `edit` edits those messages; `group` changes the members of each user's group.
        conversations: ops.iter().any(|op| matches!(op, Op::Chat | Op::Edit)),
        groups: ops.contains(&Op::Group),
        // The `delete` operation signs up each account it deletes (none made ahead).
        spares: 0,
    };
    let protocol: Protocol = a.protocol.parse()?;
    if protocol == Protocol::Centrifugo && a.scenario == "rest" {
        bail!("--protocol centrifugo speaks the chat and idle scenarios only");
    }
    let saved = match &a.sessions {
        Some(p) if protocol == Protocol::Starling => sessions::load(p, a.users)?,
        _ => None,
    };
    let users = match (protocol, saved) {
        (Protocol::Centrifugo, _) => {
            // One user per socket: an idle run may ask for more sockets than --users.
            let n = if a.scenario == "idle" {
                a.users.max(a.conns)
            } else {
                a.users
            };
            centrifugo::users(n, &a.targets.target, a.centrifugo_secret.as_deref())
        }
        (Protocol::Starling, Some(users)) => {
            eprintln!("{} users from the sessions file", users.len());
            users
        }
        (Protocol::Starling, None) => {
            eprintln!(
                "setting up {} users on {} target(s)…",
                a.users,
                a.targets.target.len()
            );
            let users = setup(&http, &a.targets.target, &setup_cfg, log.as_ref()).await?;
            if let Some(p) = &a.sessions {
                sessions::save(p, &users)?;
            }
            users
        }
    };
    let users = Arc::new(users);
    let (mode, rate_value) = match rate {
        Rate::Fixed(r) => ("open", Some(r)),
        Rate::Max => ("closed", None),
    };
    let mut info = RunInfo {
        scenario: String::new(),
        targets: a.targets.target.clone(),
        mode: mode.into(),
        rate: rate_value,
        concurrency: a.concurrency,
        duration_s: a.duration.as_secs_f64(),
        warmup_s: a.warmup.as_secs_f64(),
        users: users.len(),
    };
    let report = match a.scenario.as_str() {
        "rest" => {
            let mix: Mix = a.mix.parse()?;
            info.scenario = a.mix.clone();
            let cfg = RunConfig {
                mix,
                rate,
                arrivals,
                concurrency: a.concurrency,
                duration: a.duration,
                warmup: a.warmup,
                seed: a.seed,
                feed_limit: a.feed_limit,
                progress: !a.quiet,
                origin: None,
            };
            let stats = run_on_posts(&http, users, &cfg, log, a.like_posts.clone()).await?;
            Report::new(info, &stats)
        }
        "chat" => {
            let Rate::Fixed(r) = rate else {
                bail!("chat runs at a fixed --rate of messages per second");
            };
            info.scenario = format!("chat ({}), groups of {}", a.protocol, a.group_size);
            let cfg = ChatConfig {
                group_size: a.group_size,
                rate: r,
                arrivals,
                duration: a.duration,
                warmup: a.warmup,
                grace: a.grace,
                body_bytes: a.body_bytes,
                queue: 1024,
                seed: a.seed,
                protocol,
                server_pid: a.server_pid,
            };
            let (stats, chat) = run_chat(&http, users, &cfg, log).await?;
            let mut report = Report::new(info, &stats);
            report.chat = Some(chat);
            report
        }
        "idle" => {
            let Some(server_pid) = a.server_pid else {
                bail!("--scenario idle reads the server's memory: give --server-pid");
            };
            let cfg = IdleConfig {
                protocol,
                conns: a.conns,
                concurrency: a.setup_concurrency.max(64),
                hold: a.hold,
                server_pid,
            };
            let r = run_idle(&users, &cfg).await?;
            println!("{}", r.line());
            if let Some(p) = &a.report {
                std::fs::write(p, serde_json::to_vec_pretty(&r)?)?;
                eprintln!("report: {}", p.display());
            }
            return Ok(());
        }
        other => bail!("unknown --scenario {other:?}: rest, chat or idle"),
    };
    if let Some(w) = writer {
        let n = w.finish().await?;
        eprintln!("{n} acknowledged writes logged");
    }
    print!("{}", report.table());
    if let Some(p) = &a.report {
        report.write_json(p)?;
        eprintln!("report: {}", p.display());
    }
    if let Some(dir) = &a.plots {
        for f in plot::plot(&report, dir, &a.plot_prefix)? {
            eprintln!("plot: {}", f.display());
        }
        if !plot::font_available() {
            eprintln!("no TTF font under /usr/share/fonts: plots drawn without text");
        }
    }
    Ok(())
}

async fn cmd_verify(a: VerifyArgs) -> anyhow::Result<()> {
    let entries = acked::read(&a.acked_log)?;
    let http = Http::new(a.timeout, a.concurrency);
    let v = verify::verify_log(&http, &a.targets.target, &a.acked_log, a.concurrency).await?;
    println!(
        "{} acked writes: {} users, {} posts and {} edges checked on {} target(s), {} ambiguous edges ({} by a write of unknown outcome), {} not checked (chat messages, edits, group members), {} missing",
        entries.len(),
        v.users,
        v.posts,
        v.edges,
        v.targets,
        v.ambiguous,
        v.unknown,
        v.skipped,
        v.missing.len()
    );
    for m in v.missing.iter().take(20) {
        println!(
            "missing {} {} (user {:?}) at {}",
            m.kind, m.id, m.user, m.target
        );
    }
    if let Some(p) = &a.report {
        std::fs::write(p, serde_json::to_vec_pretty(&v)?)?;
    }
    if !v.ok() {
        bail!("{} acknowledged writes missing", v.missing.len());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(a) => cmd_run(*a).await,
        Command::Verify(a) => cmd_verify(a).await,
    }
}
