//! CPU time and resident memory of a process, read from Linux's `/proc`: what a benchmark
//! charges a server for (`--server-pid`) and what the load generator spent itself.
//!
//! `/proc/PID/stat` counts `utime` and `stime` in clock ticks of `USER_HZ`, which is 100 on every
//! Linux architecture the project builds for (`getconf CLK_TCK`): a 10 ms resolution, fine over
//! windows of seconds.

/// Clock ticks per second of `/proc/PID/stat`.
pub const USER_HZ: u64 = 100;

/// `utime + stime` in µs from the text of a `/proc/PID/stat`.
pub fn parse_stat_cpu_us(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After the name: state (3), ppid (4) … utime (14), stime (15).
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime + stime) * (1_000_000 / USER_HZ))
}

/// The `VmRSS` of a `/proc/PID/status`, KiB.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (user + system) process `pid` has used, µs; `None` if it is gone.
pub fn cpu_us(pid: u32) -> Option<u64> {
    parse_stat_cpu_us(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time (user + system) this process has used, µs.
pub fn self_cpu_us() -> Option<u64> {
    parse_stat_cpu_us(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Resident memory of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    parse_status_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The 1-minute load average.
pub fn loadavg1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "4242 (tokio worker (x)) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    1234 567 0 0 20 0 9 0 100 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat_cpu_us(stat), Some((1234 + 567) * 10_000));
        assert_eq!(parse_stat_cpu_us("garbage"), None);
        let status = "Name:\tstarling\nVmPeak:\t  9999 kB\nVmRSS:\t   11708 kB\nThreads:\t3\n";
        assert_eq!(parse_status_rss_kib(status), Some(11_708));
        assert_eq!(parse_status_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn reads_this_process() {
        assert!(self_cpu_us().is_some());
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(loadavg1().is_some());
    }
}
