//! What loadgen reads from the operating system: a process's RSS and CPU time (`/proc`), the
//! open-files limit, and machine facts for the report.

use std::time::{SystemTime, UNIX_EPOCH};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde::{Deserialize, Serialize};

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/PID/status`), `None` if it is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    rss_from_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Resident set size of this process in bytes.
pub fn self_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| rss_from_status(&s))
        .unwrap_or(0)
}

fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU seconds `pid` has used (`/proc/PID/stat`), `None` if it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = cpu_ticks_from_stat(&stat)?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

fn cpu_ticks_from_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields are counted after
    // the last ')'. utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The soft open-files limit after raising it to the hard limit where allowed.
pub fn raise_nofile_limit() -> u64 {
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum) {
        if cur < max {
            let raised = Rlimit {
                current: Some(max),
                maximum: Some(max),
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return max;
            }
        }
        return cur;
    }
    // Unlimited (None) is reported as a large finite number.
    lim.current.unwrap_or(1 << 20)
}

/// Facts about the machine a report was made on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineInfo {
    /// Logical CPUs available to loadgen.
    pub cores: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// The CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Total memory in bytes.
    pub mem_total: u64,
    /// Host name.
    pub hostname: String,
    /// Open-files limit loadgen ran with.
    pub nofile_limit: u64,
    /// Start of the run, UTC, RFC 3339.
    pub date: String,
}

impl MachineInfo {
    /// Reads the machine facts now.
    pub fn collect(nofile_limit: u64) -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        let mem_total = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpu_model,
            mem_total,
            hostname: read("/proc/sys/kernel/hostname"),
            nofile_limit,
            date: rfc3339_utc(SystemTime::now()),
        }
    }
}

/// Milliseconds since the Unix epoch (wall clock: comparable across worker processes, which
/// each have their own monotonic epoch).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (proleptic Gregorian), shifted so the era starts on March 1st.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stat_parsing_skips_odd_command_names() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 10";
        assert_eq!(cpu_ticks_from_stat(stat), Some(300));
    }

    #[test]
    fn status_parsing() {
        assert_eq!(
            rss_from_status("Name:\tx\nVmRSS:\t   1234 kB\n"),
            Some(1234 * 1024)
        );
        assert_eq!(rss_from_status("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(self_rss_bytes() > 0);
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(raise_nofile_limit() > 0);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
        assert_eq!(rfc3339_utc(t), "2024-02-29T12:34:56Z");
    }
}
