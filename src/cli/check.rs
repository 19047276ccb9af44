//! `edgebind check`: every problem of a configuration at once (exit 78), and with `--devices`
//! whether each configured device opens now (exit 1 when one does not).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::load_checked;
use crate::app::probe::{probe_sources, Outcome, Probe};
use crate::config::{self, EX_CONFIG};

/// Checks the configuration at `path`; with `devices`, also opens every source, waiting at
/// most that long for each.
///
/// # Errors
/// What `run` would refuse while opening the sources (configuration problems found only then
/// exit 78 through the caller).
#[allow(clippy::print_stdout, reason = "check reports to the terminal")]
pub fn run(path: &Path, devices: Option<Duration>) -> Result<i32> {
    let cfg = match load_checked(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return Ok(EX_CONFIG);
        }
    };
    println!(
        "{}: OK ({} source(s), models in {})",
        path.display(),
        cfg.sources.len(),
        cfg.resolve(&cfg.models.dir).display()
    );
    for w in config::warnings(&cfg) {
        eprintln!("warning: {w}");
    }
    let Some(limit) = devices else {
        return Ok(0);
    };
    println!("opening each source as `run` does:");
    let probes = probe_sources(&cfg, limit)?;
    for p in &probes {
        println!("  {}", line(p, limit));
    }
    let failed = probes
        .iter()
        .filter(|p| !matches!(p.outcome, Outcome::Opened { .. }))
        .count();
    if failed == 0 {
        println!("every source opened");
        Ok(0)
    } else {
        println!(
            "{failed} of {} source(s) did not open; `run` would start and keep retrying them \
             with backoff",
            probes.len()
        );
        Ok(1)
    }
}

/// One source's line of the report.
fn line(p: &Probe, limit: Duration) -> String {
    let what = match &p.outcome {
        Outcome::Opened { rate_hz } => format!("opened, {}", rate(*rate_hz)),
        Outcome::Failed(why) => format!("cannot open: {why}"),
        Outcome::NoAnswer => format!(
            "no answer within {} s (still opening; a device that is slow to start, or hangs)",
            limit.as_secs()
        ),
    };
    format!("{} ({}): {what}", p.name, p.kind)
}

/// A rate as people write it: `100 Hz`, `29.97 Hz`, `44100 Hz`.
fn rate(hz: f64) -> String {
    let rounded = (hz * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0} Hz")
    } else {
        format!("{rounded} Hz")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_written_round() {
        assert_eq!(rate(100.0), "100 Hz");
        assert_eq!(rate(29.970_029_97), "29.97 Hz");
        assert_eq!(rate(44_100.000_000_1), "44100 Hz");
    }

    #[test]
    fn lines_name_the_sensor_its_type_and_why() {
        let p = |outcome| Probe {
            name: "imu".into(),
            kind: "imu_serial",
            outcome,
        };
        assert_eq!(
            line(
                &p(Outcome::Opened { rate_hz: 100.0 }),
                Duration::from_secs(5)
            ),
            "imu (imu_serial): opened, 100 Hz"
        );
        assert_eq!(
            line(
                &p(Outcome::Failed("/dev/ttyUSB9: no such file".into())),
                Duration::from_secs(5)
            ),
            "imu (imu_serial): cannot open: /dev/ttyUSB9: no such file"
        );
        assert!(line(&p(Outcome::NoAnswer), Duration::from_secs(3)).contains("within 3 s"));
    }
}
