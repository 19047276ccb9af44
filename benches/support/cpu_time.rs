//! CPU-time table for the preprocessing benches (`EDGEBIND_BENCH_CPU=1`): on a shared machine
//! a thread's on-CPU time is steadier than wall time. Included by path from each bench.

/// The benchmarked cases: name and one call each.
pub type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// On-CPU time of the calling thread in ns (first field of `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Per-call on-CPU time, median and minimum over batches, one line per case.
///
/// The kernel updates a thread's run time at scheduler ticks and switches, so it is read only
/// around batches of at least 0.25 s of CPU time (error below 3 %), unless
/// `EDGEBIND_BENCH_CALLS` fixes the calls per batch (for instruction counts).
pub fn cpu_time_table(cases: &mut [Case<'_>]) {
    let batches = env_usize("EDGEBIND_BENCH_BATCHES", 15).max(1);
    let fixed_calls = env_usize("EDGEBIND_BENCH_CALLS", 0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("on-CPU time per call, {batches} batches of >= 0.25 s CPU, loadavg {load}");
    println!("{:<40} {:>12} {:>12}", "case", "median ms", "min ms");
    let only = std::env::var("EDGEBIND_BENCH_ONLY").unwrap_or_default();
    for (name, call) in cases.iter_mut().filter(|(name, _)| name.contains(&only)) {
        call(); // tables and buffers
        let mut per_call_ms: Vec<f64> = (0..batches)
            .filter_map(|_| {
                let t0 = thread_cpu_ns()?;
                let mut calls = 0u64;
                let mut t1 = t0;
                while (fixed_calls == 0 && t1 - t0 < 250_000_000) || calls < fixed_calls as u64 {
                    for _ in 0..16 {
                        call();
                    }
                    calls += 16;
                    t1 = thread_cpu_ns()?;
                }
                Some((t1 - t0) as f64 / calls as f64 / 1e6)
            })
            .collect();
        per_call_ms.sort_by(f64::total_cmp);
        let median = per_call_ms.get(per_call_ms.len() / 2).copied();
        let min = per_call_ms.first().copied();
        match (median, min) {
            (Some(median), Some(min)) => println!("{name:<40} {median:>12.4} {min:>12.4}"),
            _ => println!("{name:<40} (no /proc/thread-self/schedstat)"),
        }
    }
}
