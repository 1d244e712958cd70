//! What every benchmark page states about its run: the commit it ran at, the machine's cores and
//! its load average. Shared by the benchmarks of several crates (`#[path]`-included by the feed's).
#![allow(dead_code, unreachable_pub)] // each bench uses what it reports

/// The short hash of `HEAD` (empty outside a git checkout).
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// `/proc/loadavg` as it reads now, trimmed (empty where there is none).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The machine's cores (0 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}
