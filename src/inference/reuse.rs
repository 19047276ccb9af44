//! Skipping unchanged inputs (pure): a sensor with `skip_unchanged` reuses the embedding of the
//! input it last embedded while its new model input stays within the configured distance of
//! that input. The comparison is always with the input that was last *embedded*, never with
//! the last reused one, so a slow drift adds up until it crosses the threshold and the encoder
//! runs again.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::ArrayD;

use crate::config::{InputDistance, SkipUnchanged};

/// The distance between two model inputs, `None` when their shapes differ (an audio window
/// with another clip count is never "unchanged"). A NaN difference is infinitely far.
#[must_use]
pub fn input_distance(a: &ArrayD<f32>, b: &ArrayD<f32>, distance: InputDistance) -> Option<f64> {
    if a.shape() != b.shape() {
        return None;
    }
    let diffs = a.iter().zip(b.iter()).map(|(&x, &y)| {
        let d = f64::from(x) - f64::from(y);
        if d.is_nan() {
            f64::INFINITY
        } else {
            d.abs()
        }
    });
    Some(match distance {
        InputDistance::MaxAbs => diffs.fold(0.0, f64::max),
        InputDistance::Rms => {
            let n = a.len().max(1) as f64;
            (diffs.map(|d| d * d).sum::<f64>() / n).sqrt()
        }
    })
}

/// Whether `new` is within `skip`'s distance of `embedded`.
#[must_use]
pub fn unchanged(embedded: &ArrayD<f32>, new: &ArrayD<f32>, skip: SkipUnchanged) -> bool {
    input_distance(embedded, new, skip.distance).is_some_and(|d| d <= skip.threshold.get())
}

/// What the worker does with one window of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Run the encoder on it.
    Run,
    /// Reuse the embedding of the sensor's last embedded input, from an earlier batch.
    ReuseLast,
    /// Reuse the embedding of window `i` of the same batch (which runs).
    ReuseWindow(usize),
}

/// One window of a batch as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Its sensor.
    pub sensor: &'a str,
    /// Its model input.
    pub input: &'a ArrayD<f32>,
    /// The sensor's setting (`None`: always run).
    pub skip: Option<SkipUnchanged>,
}

/// An input that was embedded, with the encoder's raw output for it.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Its window number.
    pub seq: u64,
    /// The model input.
    pub input: ArrayD<f32>,
    /// The encoder's raw output (concepts are matched again for every window that reuses it,
    /// so a concept bank reloaded since still applies).
    pub raw: Vec<f32>,
}

/// The input last embedded for each sensor that skips unchanged inputs.
#[derive(Debug, Default)]
pub struct LastEmbedded {
    by_sensor: HashMap<Arc<str>, Embedded>,
}

impl LastEmbedded {
    /// The plan of each window of a batch, in order: a window is compared with the last window
    /// of its sensor that runs earlier in the batch, else with the sensor's last embedded input.
    #[must_use]
    pub fn plan(&self, batch: &[Candidate<'_>]) -> Vec<Plan> {
        let mut running: HashMap<&str, usize> = HashMap::new();
        let mut plans = Vec::with_capacity(batch.len());
        for (i, w) in batch.iter().enumerate() {
            let plan = match (w.skip, running.get(w.sensor)) {
                (None, _) => Plan::Run,
                (Some(skip), Some(&j)) => match batch.get(j) {
                    Some(earlier) if unchanged(earlier.input, w.input, skip) => {
                        Plan::ReuseWindow(j)
                    }
                    _ => Plan::Run,
                },
                (Some(skip), None) => match self.by_sensor.get(w.sensor) {
                    Some(last) if unchanged(&last.input, w.input, skip) => Plan::ReuseLast,
                    _ => Plan::Run,
                },
            };
            if plan == Plan::Run {
                running.insert(w.sensor, i);
            }
            plans.push(plan);
        }
        plans
    }

    /// The input last embedded for `sensor`.
    #[must_use]
    pub fn get(&self, sensor: &str) -> Option<&Embedded> {
        self.by_sensor.get(sensor)
    }

    /// Records that `sensor`'s input `embedded.input` was just embedded.
    pub fn remember(&mut self, sensor: &Arc<str>, embedded: Embedded) {
        self.by_sensor.insert(Arc::clone(sensor), embedded);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::UnchangedThreshold;
    use ndarray::IxDyn;

    fn input(values: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).unwrap()
    }

    fn skip(distance: InputDistance, threshold: f64) -> Option<SkipUnchanged> {
        Some(SkipUnchanged {
            distance,
            threshold: UnchangedThreshold::new(threshold).unwrap(),
        })
    }

    #[test]
    fn max_abs_is_the_largest_element_difference_and_rms_the_mean_square_root() {
        let (a, b) = (input(&[0.0, 0.0, 0.0, 0.0]), input(&[0.4, 0.0, 0.0, 0.0]));
        let max = input_distance(&a, &b, InputDistance::MaxAbs).unwrap();
        let rms = input_distance(&a, &b, InputDistance::Rms).unwrap();
        assert!((max - 0.4).abs() < 1e-6, "{max}");
        // sqrt(0.16 / 4) = 0.2: one moved element in four counts for half its size.
        assert!((rms - 0.2).abs() < 1e-6, "{rms}");
        assert_eq!(input_distance(&a, &a, InputDistance::MaxAbs), Some(0.0));
    }

    #[test]
    fn another_shape_or_a_nan_is_never_unchanged() {
        let s = skip(InputDistance::MaxAbs, 100.0).unwrap();
        assert!(!unchanged(&input(&[0.0, 0.0]), &input(&[0.0]), s));
        assert!(!unchanged(&input(&[0.0]), &input(&[f32::NAN]), s));
        assert!(!unchanged(&input(&[f32::NAN]), &input(&[f32::NAN]), s));
        assert!(unchanged(&input(&[1.0]), &input(&[50.0]), s));
    }

    #[test]
    fn the_threshold_is_inclusive_and_zero_reuses_only_identical_inputs() {
        let s = skip(InputDistance::MaxAbs, 0.0).unwrap();
        assert!(unchanged(&input(&[0.5, 0.25]), &input(&[0.5, 0.25]), s));
        assert!(!unchanged(
            &input(&[0.5, 0.25]),
            &input(&[0.5, 0.250_001]),
            s
        ));
        let s = skip(InputDistance::MaxAbs, 0.5).unwrap();
        assert!(unchanged(&input(&[0.0]), &input(&[0.5]), s));
    }

    #[test]
    fn a_window_reuses_the_last_embedded_input_of_its_own_sensor_only() {
        let mut last = LastEmbedded::default();
        let still = input(&[1.0, 1.0]);
        last.remember(
            &Arc::from("a"),
            Embedded {
                seq: 7,
                input: still.clone(),
                raw: vec![1.0],
            },
        );
        let near = input(&[1.01, 1.0]);
        let far = input(&[2.0, 1.0]);
        let s = skip(InputDistance::MaxAbs, 0.05);
        let batch = [
            Candidate {
                sensor: "a",
                input: &near,
                skip: s,
            },
            Candidate {
                sensor: "b",
                input: &near,
                skip: s,
            },
            Candidate {
                sensor: "a",
                input: &near,
                skip: None,
            },
        ];
        assert_eq!(
            last.plan(&batch),
            vec![Plan::ReuseLast, Plan::Run, Plan::Run]
        );
        let batch = [Candidate {
            sensor: "a",
            input: &far,
            skip: s,
        }];
        assert_eq!(last.plan(&batch), vec![Plan::Run]);
        assert_eq!(last.get("a").unwrap().seq, 7);
    }

    #[test]
    fn within_a_batch_a_window_reuses_the_last_window_of_its_sensor_that_runs() {
        let last = LastEmbedded::default();
        let (x0, x1, y) = (input(&[0.0]), input(&[0.01]), input(&[1.0]));
        let s = skip(InputDistance::MaxAbs, 0.05);
        let c = |input| Candidate {
            sensor: "a",
            input,
            skip: s,
        };
        let batch = [c(&x0), c(&x1), c(&y), c(&y), c(&x1)];
        assert_eq!(
            last.plan(&batch),
            vec![
                Plan::Run,
                Plan::ReuseWindow(0),
                Plan::Run,
                Plan::ReuseWindow(2),
                // Compared with y (the last that runs), not with x0.
                Plan::Run,
            ]
        );
    }

    #[test]
    fn a_slow_drift_is_measured_from_the_embedded_input_and_ends_the_reuse() {
        let mut last = LastEmbedded::default();
        let sensor: Arc<str> = Arc::from("a");
        let s = skip(InputDistance::MaxAbs, 0.05);
        let mut runs = Vec::new();
        for k in 0..10u64 {
            // Each window moves 0.02 from the one before: never far from its neighbour.
            let x = input(&[0.02 * k as f32]);
            let plan = last.plan(&[Candidate {
                sensor: &sensor,
                input: &x,
                skip: s,
            }]);
            if plan == [Plan::Run] {
                runs.push(k);
                last.remember(
                    &sensor,
                    Embedded {
                        seq: k,
                        input: x,
                        raw: vec![0.0],
                    },
                );
            }
        }
        assert_eq!(runs, vec![0, 3, 6, 9]);
    }
}
