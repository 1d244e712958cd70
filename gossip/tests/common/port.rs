//! Ports for the nodes a test or bench starts.
//!
//! One copy for the workspace, included with `#[path]` by the gossip transport's tests, the API
//! tests' `tests/common/mod.rs` and the API benches (here, in the lowest crate whose tests listen
//! on ports, so that no crate's tests reach into a crate above it).
#![allow(unreachable_pub)] // shared by several test and bench files

/// A port for a node to listen on. Not from the kernel's ephemeral range (32768–60999 on
/// Linux): a port the kernel hands out for `bind(0)` and that is then closed can be taken by any
/// outgoing connection's local end before the node binds it (seen in CI: "Address already in
/// use" on a gossip port). Below that range only listeners take ports, so a port that binds now
/// stays free for the node; a process-wide counter (started from the pid, so concurrent test
/// processes start apart) never hands one out twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}
