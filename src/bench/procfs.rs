//! What the kernel says about a process: CPU time from `/proc/<pid>/stat` (every thread, live
//! and exited), peak RSS and thread count from `/proc/<pid>/status`.

use std::process::Command;

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time of all its threads, seconds.
    pub cpu_s: f64,
    /// Peak resident set size (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// Threads now.
    pub threads: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
#[must_use]
pub fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// `utime + stime` in ticks from `/proc/<pid>/stat` text. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
#[must_use]
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmHWM` (bytes) and `Threads` from `/proc/<pid>/status` text.
#[must_use]
pub fn status_fields(status: &str) -> (Option<u64>, Option<u64>) {
    let value = |key: &str| {
        status.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.trim();
            v.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    (value("VmHWM:").map(|kb| kb * 1024), value("Threads:"))
}

/// Reads the process `pid` now; `None` once it is gone.
#[must_use]
pub fn sample(pid: u32, ticks_per_s: f64) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let ticks = cpu_ticks(&stat)?;
    let (hwm, threads) = status_fields(&status);
    Some(ProcSample {
        cpu_s: ticks as f64 / ticks_per_s,
        peak_rss_bytes: hwm.unwrap_or(0),
        threads: threads.unwrap_or(0),
    })
}

/// CPU ticks per live thread of `pid`: `(thread id, thread name, ticks)`.
#[must_use]
pub fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string();
            Some((tid, name, cpu_ticks(&stat)?))
        })
        .collect()
}

/// CPU percent of one core per thread name (threads of one name summed) between two
/// [`thread_ticks`] readings `wall_s` apart; threads born in between count from zero.
#[must_use]
pub fn thread_cpu_percent(
    before: &[(u32, String, u64)],
    after: &[(u32, String, u64)],
    ticks_per_s: f64,
    wall_s: f64,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for (tid, name, ticks) in after {
        let prev = before
            .iter()
            .find(|(t, _, _)| t == tid)
            .map_or(0, |(_, _, p)| *p);
        *out.entry(name.clone()).or_insert(0.0) +=
            ticks.saturating_sub(prev) as f64 / ticks_per_s / wall_s * 100.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (edge bind) (x)) S 1 4242 4242 0 -1 4194560 300 0 0 0 157 43 0 0 20 0 9 0 100 1000 200";
        assert_eq!(cpu_ticks(stat), Some(200));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn peak_rss_and_threads_come_from_status() {
        let status = "Name:\tedgebind\nVmPeak:\t  900000 kB\nVmHWM:\t   31500 kB\nThreads:\t11\n";
        assert_eq!(status_fields(status), (Some(31_500 * 1024), Some(11)));
    }

    #[test]
    fn thread_cpu_is_summed_by_name_between_readings() {
        let before = vec![(1, "a".to_string(), 10), (2, "b".to_string(), 5)];
        let after = vec![
            (1, "a".to_string(), 30),
            (2, "b".to_string(), 5),
            (3, "b".to_string(), 10),
        ];
        let p = thread_cpu_percent(&before, &after, 100.0, 2.0);
        assert_eq!(p["a"], 10.0);
        assert_eq!(p["b"], 5.0);
        assert!(!thread_ticks(std::process::id()).is_empty());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(std::process::id(), clock_ticks_per_s());
        assert!(s.is_some_and(|s| s.peak_rss_bytes > 0 && s.threads >= 1));
    }
}
