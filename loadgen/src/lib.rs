//! Starling's load generator: drives a node or a whole cluster with REST feed readers, posters,
//! followers and WebSocket chatters, at a fixed open-loop rate (latency measured from each
//! request's *intended* start, so a stall cannot hide behind coordinated omission) or closed-loop
//! at full speed, and reports HDR percentiles, errors by kind, a per-second timeline, a JSON
//! report and PNG plots.
//!
//! Modules:
//! - [`schedule`]: sans-IO arrival schedules (uniform, Poisson) and the weighted operation mix.
//! - [`stats`]: per-operation HDR histograms, error counts and timelines, mergeable.
//! - [`report`]: the JSON report and the terminal table built from [`stats::Stats`].
//! - [`plot`]: latency-percentile and throughput PNGs (plotters, bitmap backend).
//! - [`http`]: a pooled HTTP/1.1 client (hyper-util) with per-request timeouts.
//! - [`api`]: the few REST calls of API.md that the scenarios need.
//! - [`users`]: the setup phase: sign-up or login of the users, a follow graph, seed posts.
//! - [`acked`]: the log of every acknowledged write, and [`verify`] that reads them back.
//! - [`run`]: the REST scenario runner (open and closed loop) with progress bars.
//! - [`chat`]: the WebSocket chat protocol, the delivery bookkeeping and the chat runner.
//! - [`centrifugo`]: Centrifugo's client protocol, so the chat runner measures it side by side.
//! - [`idle`]: idle authenticated sockets and the server's memory per socket.
//! - [`procstat`]: CPU time and resident memory of a process from `/proc`.
//! - [`sessions`]: signed-up users saved to a file and reused by later runs.
//! - [`error`]: the library's error type.

pub mod acked;
pub mod api;
pub mod centrifugo;
pub mod chat;
pub mod error;
pub mod http;
pub mod idle;
pub mod plot;
pub mod procstat;
pub mod report;
pub mod run;
pub mod schedule;
pub mod sessions;
pub mod stats;
pub mod users;
pub mod verify;

pub use error::LoadError;
