//! `edgebind triggers remember`: an example set from embedding messages the daemon published
//! (one JSON payload per line, as `mosquitto_sub -t '<prefix>/<sensor>/embedding'` prints them),
//! written where the daemon loads example sets at start
//! (`<examples_dir>/<sensor>/<set>.npy`, docs/triggers.md). The offline stand-in for the MQTT
//! "remember the last N windows" command.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine as _;

use crate::triggers::config::check_name;

/// Most embeddings in one example set (the engine's limit).
const MAX_ROWS: usize = crate::triggers::scorer::MAX_EXAMPLES;
/// Longest input line read (a 4096-wide JSON embedding is about 90 KB).
const MAX_LINE_BYTES: usize = 1 << 20;

/// `edgebind triggers …`.
#[derive(Debug, clap::Subcommand)]
pub enum TriggersCommand {
    /// Make an example set from published embedding messages: the windows `--from-seq` to
    /// `--to-seq` of `--sensor`, read one JSON payload per line from INPUT (or standard input),
    /// written to `<examples-dir>/<sensor>/<set>.npy`. The daemon loads it at its next start.
    Remember {
        /// The set's name (`example_set` of an `example` trigger).
        #[arg(long)]
        set: String,
        /// The sensor whose windows to take.
        #[arg(long)]
        sensor: String,
        /// First window (`seq`) of the set.
        #[arg(long)]
        from_seq: u64,
        /// Last window (`seq`) of the set.
        #[arg(long)]
        to_seq: u64,
        /// `triggers.examples_dir` of the daemon's configuration.
        #[arg(long)]
        examples_dir: PathBuf,
        /// Embedding messages, one per line (default: standard input).
        input: Option<PathBuf>,
    },
}

/// Runs a `triggers` command; exit code 0.
///
/// # Errors
/// A bad name, unreadable input, a window missing from it or an unusable embedding.
#[allow(clippy::print_stdout, reason = "remember reports the file it wrote")]
pub fn run(command: TriggersCommand) -> Result<i32> {
    let TriggersCommand::Remember {
        set,
        sensor,
        from_seq,
        to_seq,
        examples_dir,
        input,
    } = command;
    check_name(&set).map_err(|m| anyhow::anyhow!("--set {m}"))?;
    crate::config::SensorName::new(&sensor).map_err(|m| anyhow::anyhow!("--sensor {m}"))?;
    if to_seq < from_seq || to_seq - from_seq >= MAX_ROWS as u64 {
        bail!("--from-seq {from_seq} to --to-seq {to_seq} must be 1 to {MAX_ROWS} windows");
    }
    let rows = match &input {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            collect(std::io::BufReader::new(file), &sensor, from_seq..=to_seq)?
        }
        None => collect(std::io::stdin().lock(), &sensor, from_seq..=to_seq)?,
    };
    let path = crate::output::triggers::examples::write(&examples_dir, &sensor, &set, &rows)?;
    println!(
        "wrote {} embeddings of {sensor} (windows {from_seq}-{to_seq}) to {}; the daemon loads \
         it at its next start",
        rows.len(),
        path.display()
    );
    Ok(0)
}

/// The embeddings of `sensor`'s windows `seqs`, in `seq` order (a window given twice counts
/// once: at-least-once delivery).
fn collect(
    reader: impl BufRead,
    sensor: &str,
    seqs: std::ops::RangeInclusive<u64>,
) -> Result<Vec<Vec<f32>>> {
    let mut found = std::collections::BTreeMap::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("input line {}", i + 1))?;
        if line.trim().is_empty() || line.len() > MAX_LINE_BYTES {
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let seq = v["seq"].as_u64();
        if v["sensor"] != sensor || !seq.is_some_and(|s| seqs.contains(&s)) {
            continue;
        }
        let row = decode(&v["embedding"])
            .with_context(|| format!("input line {}: the embedding", i + 1))?;
        found.insert(seq, row);
    }
    let missing: Vec<u64> = seqs
        .clone()
        .filter(|s| !found.contains_key(&Some(*s)))
        .collect();
    if !missing.is_empty() {
        bail!("no embedding message of {sensor} for window(s) {missing:?} in the input");
    }
    Ok(found.into_values().collect())
}

/// An `embedding` field: a JSON array, or `{"dtype": "f32"|"f16", "base64": …}`.
fn decode(field: &serde_json::Value) -> Result<Vec<f32>> {
    if let Some(values) = field.as_array() {
        return values
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .context("a value is not a number")
            })
            .collect();
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(
            field["base64"]
                .as_str()
                .context("neither an array nor base64")?,
        )
        .context("invalid base64")?;
    match field["dtype"].as_str() {
        Some("f32") if bytes.len() % 4 == 0 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Some("f16") if bytes.len() % 2 == 0 => Ok(bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()),
        other => bail!("dtype {other:?} with {} bytes", bytes.len()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_asked_for_are_taken_in_order_once_whatever_the_encoding() {
        let f32b = base64::engine::general_purpose::STANDARD.encode(
            [1.0f32, 0.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let input = format!(
            "{{\"sensor\":\"imu0\",\"seq\":3,\"embedding\":[0.0,1.0]}}\n\
             not json\n\
             {{\"sensor\":\"other\",\"seq\":2,\"embedding\":[5.0,5.0]}}\n\
             {{\"sensor\":\"imu0\",\"seq\":2,\"embedding\":{{\"dtype\":\"f32\",\"base64\":\"{f32b}\"}}}}\n\
             {{\"sensor\":\"imu0\",\"seq\":3,\"embedding\":[0.0,1.0]}}\n\
             {{\"sensor\":\"imu0\",\"seq\":9,\"embedding\":[7.0,7.0]}}\n"
        );
        let rows = collect(input.as_bytes(), "imu0", 2..=3).unwrap();
        assert_eq!(rows, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn a_window_missing_from_the_input_is_named() {
        let input = "{\"sensor\":\"imu0\",\"seq\":3,\"embedding\":[0.0,1.0]}\n";
        let e = collect(input.as_bytes(), "imu0", 2..=3).unwrap_err();
        assert!(e.to_string().contains("window(s) [2]"), "{e}");
    }
}
