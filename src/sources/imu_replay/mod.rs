//! IMU replay: a recorded CSV or `.npy` file played back as a live sensor, paced in real time or
//! as fast as the pipeline takes it, optionally looping (capture times keep increasing).

pub mod config;

use std::path::{Path, PathBuf};

use ndarray::Array2;

pub use self::config::{ImuFileFormat, ImuReplayConfig, ImuReplaySettings};
use super::{replay_block_end, replay_block_len, ImuSample, Source, SourceContext, SourceMessage};
use crate::config::ReplaySpeed;
use crate::files::{self, npy, FileError};
use crate::telemetry::DropReason;

/// Column names a CSV recording must have (any order; other columns are ignored).
pub const CSV_COLUMNS: [&str; 6] = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"];
/// Optional CSV column with the sample time in seconds, used to find the rate.
pub const CSV_TIME_COLUMN: &str = "t_s";

/// Problems with an IMU recording.
#[derive(Debug, thiserror::Error)]
pub enum ImuFileError {
    /// The file cannot be opened or read, is too large, or is not a float32 `.npy`.
    #[error(transparent)]
    File(#[from] FileError),
    /// The `t_s` column goes backwards or stands still.
    #[error("{path}: line {line}: {CSV_TIME_COLUMN} {t_s} is not after the previous sample's {previous_s} (timestamps must increase)")]
    TimeOrder {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending row.
        line: u64,
        /// Its time.
        t_s: f64,
        /// The time of the previous sample.
        previous_s: f64,
    },
    /// The CSV header lacks a required column.
    #[error("{path}: line 1: missing column {column:?} (header needs {})", CSV_COLUMNS.join(","))]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
    },
    /// A CSV could not be parsed at all.
    #[error("{path}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The CSV reader's message.
        message: String,
    },
    /// A `.npy` file is not float32 `[6, N]`.
    #[error("{path}: {message}")]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The recording holds no usable sample.
    #[error("{path}: no samples")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The rate is neither configured nor derivable.
    #[error("{path}: sample rate unknown: set sample_rate_hz or add a {CSV_TIME_COLUMN:?} column")]
    UnknownRate {
        /// The file.
        path: PathBuf,
    },
}

/// A row of a CSV recording that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// 1-based line number in the file.
    pub line: u64,
    /// Why.
    pub reason: String,
}

/// Skipped rows described one by one (the rest are only counted): a file of nothing but bad
/// rows must not turn into a list of messages larger than the file.
pub const MAX_SKIPPED_ROWS_LISTED: usize = 100;

/// A loaded IMU recording.
#[derive(Debug, Clone)]
pub struct ImuRecording {
    /// `[acc xyz, gyro xyz]` per sample; `None` where a malformed row was skipped, so that the
    /// replay keeps the timing and the window counts the missing sample as a gap.
    pub samples: Vec<Option<[f32; 6]>>,
    /// Nominal rate.
    pub sample_rate_hz: f64,
    /// The first [`MAX_SKIPPED_ROWS_LISTED`] malformed rows that were skipped (the rest is kept).
    pub skipped: Vec<SkippedRow>,
    /// How many malformed rows were skipped in all.
    pub skipped_total: u64,
}

/// Loads a CSV recording: a header naming the columns, one sample per row. Malformed rows are
/// skipped and reported by line; the rate comes from `rate_hz` or the median step of `t_s`,
/// whose values must increase.
///
/// # Errors
/// [`ImuFileError`] naming the file (and line) when nothing usable can be read.
pub fn load_csv(path: &Path, rate_hz: Option<f64>) -> Result<ImuRecording, ImuFileError> {
    let (file, _) = files::open_limited(path, files::MAX_RECORDING_BYTES, "an IMU recording")?;
    parse_csv(file, path, rate_hz)
}

/// [`load_csv`] from any reader (`path` names it in messages).
///
/// # Errors
/// As [`load_csv`].
pub fn parse_csv(
    file: impl std::io::Read,
    path: &Path,
    rate_hz: Option<f64>,
) -> Result<ImuRecording, ImuFileError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(std::io::BufReader::new(file));
    let (cols, time_col) = csv_columns(&mut reader, path)?;
    let mut samples = Vec::new();
    let mut times: Vec<f64> = Vec::new();
    let mut skipped = Vec::new();
    let mut skipped_total = 0u64;
    let mut skip = |row: SkippedRow| {
        skipped_total += 1;
        if skipped.len() < MAX_SKIPPED_ROWS_LISTED {
            skipped.push(row);
        }
    };
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                skip(SkippedRow {
                    line,
                    reason: e.to_string(),
                });
                samples.push(None);
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        let (values, t) = match csv_row(&record, &cols, time_col) {
            Ok(row) => row,
            Err(reason) => {
                skip(SkippedRow { line, reason });
                samples.push(None);
                continue;
            }
        };
        if let (Some(t_s), Some(&previous_s)) = (t, times.last()) {
            if t_s <= previous_s {
                return Err(ImuFileError::TimeOrder {
                    path: path.to_path_buf(),
                    line,
                    t_s,
                    previous_s,
                });
            }
        }
        samples.push(Some(values));
        times.extend(t);
    }
    if samples.iter().all(Option::is_none) {
        return Err(ImuFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    let sample_rate_hz = match rate_hz {
        Some(r) => r,
        None => rate_from_times(&times).ok_or_else(|| ImuFileError::UnknownRate {
            path: path.to_path_buf(),
        })?,
    };
    Ok(ImuRecording {
        samples,
        sample_rate_hz,
        skipped,
        skipped_total,
    })
}

/// The positions of the six value columns and of the optional time column, from the header.
fn csv_columns<R: std::io::Read>(
    reader: &mut csv::Reader<R>,
    path: &Path,
) -> Result<([usize; 6], Option<usize>), ImuFileError> {
    let headers = reader
        .headers()
        .map_err(|e| ImuFileError::Csv {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers.get(0) == Some("")) {
        return Err(ImuFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let mut cols = [0usize; 6];
    for (slot, name) in cols.iter_mut().zip(CSV_COLUMNS) {
        *slot = find(name).ok_or(ImuFileError::MissingColumn {
            path: path.to_path_buf(),
            column: name,
        })?;
    }
    Ok((cols, find(CSV_TIME_COLUMN)))
}

/// One row's six values and time, or why the row is skipped.
fn csv_row(
    record: &csv::StringRecord,
    cols: &[usize; 6],
    time_col: Option<usize>,
) -> Result<([f32; 6], Option<f64>), String> {
    let parse = |i: usize, name: &str| -> Result<f64, String> {
        let field = record.get(i).ok_or_else(|| format!("no {name} field"))?;
        let v: f64 = field
            .parse()
            .map_err(|_| format!("{name}: {field:?} is not a number"))?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("{name}: {field:?} is not finite"))
        }
    };
    let mut values = [0f32; 6];
    for ((v, &c), name) in values.iter_mut().zip(cols).zip(CSV_COLUMNS) {
        *v = parse(c, name)? as f32;
    }
    let t = time_col.map(|c| parse(c, CSV_TIME_COLUMN)).transpose()?;
    Ok((values, t))
}

/// The rate implied by the median step of sample times (seconds).
fn rate_from_times(times: &[f64]) -> Option<f64> {
    let mut steps: Vec<f64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0.0)
        .collect();
    if steps.is_empty() {
        return None;
    }
    steps.sort_by(f64::total_cmp);
    let median = steps[steps.len() / 2];
    let rate = 1.0 / median;
    // Recordings are made at round rates; remove the float noise of printed times.
    let rounded = (rate * 1000.0).round() / 1000.0;
    (rounded.is_finite() && rounded > 0.0).then_some(rounded)
}

/// Loads a `.npy` recording: float32 `[6, N]`, rows acc xyz then gyro xyz.
///
/// # Errors
/// [`ImuFileError`] when the file is unreadable, of another dtype or shape, empty or not finite.
pub fn load_npy(path: &Path, rate_hz: f64) -> Result<ImuRecording, ImuFileError> {
    let array: Array2<f32> = npy::read(path, files::MAX_RECORDING_BYTES, "an IMU recording")?;
    if array.nrows() != 6 {
        return Err(ImuFileError::Npy {
            path: path.to_path_buf(),
            message: format!(
                "shape [{}, {}]: expected [6, N] (rows acc xyz, gyro xyz)",
                array.nrows(),
                array.ncols()
            ),
        });
    }
    if array.ncols() == 0 {
        return Err(ImuFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    if let Some(((row, col), _)) = array.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(ImuFileError::Npy {
            path: path.to_path_buf(),
            message: format!("value at [{row}, {col}] is not finite"),
        });
    }
    let samples = array
        .columns()
        .into_iter()
        .map(|c| Some([c[0], c[1], c[2], c[3], c[4], c[5]]))
        .collect();
    Ok(ImuRecording {
        samples,
        sample_rate_hz: rate_hz,
        skipped: Vec::new(),
        skipped_total: 0,
    })
}

/// Loads a recording in the format `format` (or by extension for `auto`).
///
/// # Errors
/// [`ImuFileError`].
pub fn load(
    path: &Path,
    format: ImuFileFormat,
    rate_hz: Option<f64>,
) -> Result<ImuRecording, ImuFileError> {
    let format = match format {
        ImuFileFormat::Auto => {
            if path.extension().and_then(|e| e.to_str()) == Some("npy") {
                ImuFileFormat::Npy
            } else {
                ImuFileFormat::Csv
            }
        }
        f => f,
    };
    match format {
        ImuFileFormat::Npy => load_npy(
            path,
            rate_hz.ok_or_else(|| ImuFileError::UnknownRate {
                path: path.to_path_buf(),
            })?,
        ),
        _ => load_csv(path, rate_hz),
    }
}

/// The IMU replay source.
#[derive(Debug)]
pub struct ImuReplay {
    path: PathBuf,
    recording: ImuRecording,
    speed: ReplaySpeed,
    looping: bool,
    window_hop_ms: (u64, u64),
}

impl ImuReplay {
    /// Loads the recording at `path` (resolved) that `c` names.
    ///
    /// # Errors
    /// [`ImuFileError`].
    pub fn open(path: PathBuf, c: &ImuReplayConfig) -> Result<Self, ImuFileError> {
        let s = &c.settings;
        let recording = load(&path, s.format, s.sample_rate_hz.map(|r| r.get()))?;
        Ok(Self {
            path,
            recording,
            speed: s.speed,
            looping: s.looping,
            window_hop_ms: (c.cut.window_ms.get(), c.cut.hop_ms.get()),
        })
    }
}

/// Samples per block pushed to the windower: up to 1 s of data in real time (see
/// [`replay_block_len`]), 512 samples when racing.
fn block_len(rate_hz: f64, speed: ReplaySpeed, (window_ms, hop_ms): (u64, u64)) -> usize {
    match speed {
        ReplaySpeed::Realtime => replay_block_len(rate_hz, window_ms, hop_ms, speed),
        ReplaySpeed::Max => 512,
    }
}

impl Source for ImuReplay {
    fn sample_rate_hz(&self) -> f64 {
        self.recording.sample_rate_hz
    }

    fn run(self: Box<Self>, ctx: SourceContext) {
        let rate = self.recording.sample_rate_hz;
        let _span = tracing::info_span!("source", sensor = %ctx.name).entered();
        // One line for any number of bad rows (a broken export can have millions).
        if let Some(row) = self.recording.skipped.first() {
            tracing::warn!(
                file = %self.path.display(),
                skipped_rows = self.recording.skipped_total,
                first_line = row.line,
                first_reason = %row.reason,
                "skipped malformed rows of the IMU recording (counted as bad_input)"
            );
        }
        ctx.stats
            .add_drops(DropReason::BadInput, self.recording.skipped_total);
        ctx.stats.set_connected(true, rate);
        tracing::info!(
            file = %self.path.display(),
            samples = self.recording.samples.len(),
            sample_rate_hz = rate,
            "replaying IMU recording"
        );

        let period_ns = 1e9 / rate;
        let start = ctx.clock.now();
        let block = block_len(rate, self.speed, self.window_hop_ms);
        let n = self.recording.samples.len();
        let mut seq: u64 = 0;
        'outer: loop {
            let mut i = 0;
            while i < n {
                if ctx.cancel.is_cancelled() {
                    break 'outer;
                }
                let end = replay_block_end(seq, i, n, block);
                let samples: Vec<ImuSample> = self.recording.samples[i..end]
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| {
                        let s = seq + k as u64;
                        v.map(|values| ImuSample {
                            seq: s,
                            t: start.plus_ns((s as f64 * period_ns).round() as u64),
                            values,
                        })
                    })
                    .collect();
                let rows = (end - i) as u64;
                let count = samples.len() as u64;
                let last_seq = seq + rows - 1;
                let last = start.plus_ns((last_seq as f64 * period_ns).round() as u64);
                if self.speed == ReplaySpeed::Realtime
                    && !ctx.sleep_until(ctx.clock.instant_of(last.mono_ns))
                {
                    break 'outer;
                }
                if !ctx.send(SourceMessage::Imu {
                    sample_rate_hz: rate,
                    samples,
                }) {
                    break 'outer;
                }
                ctx.stats.add_samples(count, last.utc_ns);
                seq += rows;
                i = end;
            }
            if !self.looping {
                tracing::info!("IMU recording finished");
                ctx.stats.set_finished();
                break;
            }
        }
        ctx.stats.set_connected(false, rate);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(content: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        f.write_all(content.as_bytes()).unwrap();
        f
    }

    #[test]
    fn csv_rate_comes_from_the_time_column() {
        let f = write(
            "t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0.000,0,0,9.8,0,0,0\n0.005,0,0,9.8,0,0,0\n0.010,0,0,9.8,0,0,0\n",
        );
        let r = load_csv(f.path(), None).unwrap();
        assert_eq!(r.samples.len(), 3);
        assert!((r.sample_rate_hz - 200.0).abs() < 1e-9);
    }

    #[test]
    fn csv_columns_may_come_in_any_order() {
        let f = write("gyro_z,gyro_y,gyro_x,acc_z,acc_y,acc_x\n6,5,4,3,2,1\n");
        let r = load_csv(f.path(), Some(100.0)).unwrap();
        assert_eq!(r.samples, vec![Some([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
    }

    #[test]
    fn malformed_csv_row_is_named_by_line_and_the_rest_kept() {
        let f = write(
            "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n1,2,3,4,5,6\n1,2,x,4,5,6\n1,2,3\n7,8,9,10,11,12\n",
        );
        let r = load_csv(f.path(), Some(100.0)).unwrap();
        assert_eq!(r.samples.iter().flatten().count(), 2);
        assert_eq!(r.samples[1], None);
        assert_eq!(r.skipped.len(), 2);
        assert_eq!(r.skipped[0].line, 3);
        assert!(r.skipped[0].reason.contains("acc_z"), "{:?}", r.skipped[0]);
        assert_eq!(r.skipped[1].line, 4);
    }

    #[test]
    fn empty_csv_is_an_error_naming_the_file() {
        let f = write("");
        let e = load_csv(f.path(), Some(100.0)).unwrap_err();
        assert!(matches!(e, ImuFileError::Empty { .. }), "{e}");
        assert!(e.to_string().contains(&f.path().display().to_string()));
        let header_only = write("acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n");
        assert!(matches!(
            load_csv(header_only.path(), Some(100.0)),
            Err(ImuFileError::Empty { .. })
        ));
    }

    #[test]
    fn csv_missing_column_is_named() {
        let f = write("acc_x,acc_y,acc_z,gyro_x,gyro_y\n1,2,3,4,5\n");
        let e = load_csv(f.path(), Some(100.0)).unwrap_err();
        assert!(e.to_string().contains("gyro_z"), "{e}");
    }

    #[test]
    fn csv_timestamps_that_go_back_or_stand_still_are_refused_with_the_line() {
        let f = write("t_s,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n0.0,0,0,0,0,0,0\n0.01,0,0,0,0,0,0\n0.01,0,0,0,0,0,0\n");
        let e = load_csv(f.path(), None).unwrap_err().to_string();
        assert!(
            e.ends_with("line 4: t_s 0.01 is not after the previous sample's 0.01 (timestamps must increase)"),
            "{e}"
        );
    }

    #[test]
    fn only_the_first_skipped_rows_are_listed_but_all_are_counted() {
        let mut text = String::from("acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n1,2,3,4,5,6\n");
        for _ in 0..1000 {
            text.push_str("x,\n");
        }
        let r = load_csv(write(&text).path(), Some(100.0)).unwrap();
        assert_eq!(r.samples.len(), 1001);
        assert_eq!(r.skipped.len(), MAX_SKIPPED_ROWS_LISTED);
        assert_eq!(r.skipped_total, 1000);
    }

    #[test]
    fn npy_of_the_wrong_shape_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        ndarray_npy::write_npy(&p, &Array2::<f32>::zeros((3, 10))).unwrap();
        let e = load_npy(&p, 100.0).unwrap_err();
        assert!(e.to_string().contains("[3, 10]"), "{e}");
    }
}
