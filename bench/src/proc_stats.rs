//! Server resource use from `/proc`: resident memory and CPU time of the given
//! processes and all their descendants (a cluster master and its workers).

use std::collections::BTreeSet;

/// One sample of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ProcSample {
    /// Processes counted.
    pub processes: usize,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
}

/// Clock ticks per second of `/proc/*/stat` times (Linux uses 100 everywhere that matters).
const CLOCK_TICKS: f64 = 100.0;

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.rsplit_once(") ")?.1;
    Some(rest.split(' ').map(str::to_owned).collect())
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `roots` and every live descendant.
pub fn process_tree(roots: &[u32]) -> BTreeSet<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            Some((pid, fields.get(1)?.parse().ok()?))
        })
        .collect();
    let mut tree: BTreeSet<u32> = roots.iter().copied().collect();
    loop {
        let before = tree.len();
        for (pid, ppid) in &parents {
            if tree.contains(ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
    }
}

/// Samples `roots` and their descendants now.
pub fn sample(roots: &[u32]) -> ProcSample {
    let tree = process_tree(roots);
    let mut total = ProcSample::default();
    for pid in tree {
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        total.processes += 1;
        total.cpu_seconds += ticks as f64 / CLOCK_TICKS;
        total.rss_bytes += rss_bytes(pid);
    }
    total
}

/// The calling thread's CPU time so far (user + system), seconds, at the
/// kernel's tick resolution (10 ms).
pub fn thread_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / CLOCK_TICKS
}

/// This process's own CPU time so far (user + system, all threads), seconds.
pub fn own_cpu_seconds() -> f64 {
    sample(&[std::process::id()]).cpu_seconds
}

/// The generator's share of the CPU it may use over a phase, and whether it
/// was the bottleneck: a step where the generator was this busy measured the
/// generator, not the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GeneratorLoad {
    /// The bench process's CPU seconds in the phase.
    pub cpu_seconds: f64,
    /// CPUs this process may run on (its affinity, e.g. one under `taskset -c 1`).
    pub cores: usize,
    /// `cpu_seconds` ÷ (the phase's wall seconds × `cores`).
    pub busy_share: f64,
    /// `busy_share` at or above [`GENERATOR_BOUND`]: the step is not valid.
    pub bound: bool,
}

/// The busy share from which a step counts as limited by the generator.
pub const GENERATOR_BOUND: f64 = 0.9;

impl GeneratorLoad {
    /// The load of `cpu_seconds` used over `wall_seconds` on `cores` CPUs.
    ///
    /// ```
    /// use pushwire_bench::proc_stats::GeneratorLoad;
    /// let load = GeneratorLoad::over(0.95, 1.0, 1);
    /// assert!(load.bound);
    /// assert!(!GeneratorLoad::over(0.95, 1.0, 2).bound);
    /// ```
    pub fn over(cpu_seconds: f64, wall_seconds: f64, cores: usize) -> Self {
        let cores = cores.max(1);
        let busy_share = cpu_seconds / (wall_seconds.max(1e-9) * cores as f64);
        GeneratorLoad {
            cpu_seconds,
            cores,
            busy_share,
            bound: busy_share >= GENERATOR_BOUND,
        }
    }
}

/// CPUs this process may run on (its affinity mask).
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let me = sample(&[std::process::id()]);
        assert!(me.processes >= 1 && me.rss_bytes > 0, "{me:?}");
        assert_eq!(sample(&[u32::MAX]).processes, 0);
    }
}
