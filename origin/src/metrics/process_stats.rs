//! A process's resident memory and CPU time, read from `/proc`.

/// The kernel reports CPU times in ticks of `USER_HZ`, which Linux fixes at
/// 100 for everything it shows user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessStats {
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
}

impl ProcessStats {
    /// The stats of process `pid`; `None` when it is gone.
    pub(crate) fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(ProcessStats {
            resident_bytes: resident_kib(&status)? * 1024,
            cpu_seconds: cpu_ticks(&stat)? as f64 / TICKS_PER_SECOND,
        })
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in KiB.
fn resident_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 3 onwards; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        assert_eq!(resident_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn reads_this_process() {
        let stats = ProcessStats::of(std::process::id()).unwrap();
        assert!(stats.resident_bytes > 1024 * 1024, "{stats:?}");
        assert!(ProcessStats::of(u32::MAX).is_none());
    }
}
