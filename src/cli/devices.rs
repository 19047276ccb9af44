//! `edgebind devices`: the sensors, ONNX Runtime and GPU of this machine, each sensor with a
//! `[[sources]]` block to paste into the configuration (docs/devices.md).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::devices::{self, ProbeOptions};

/// `edgebind devices` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DevicesArgs {
    /// Print one JSON document (docs/devices.schema.json) instead of tables and blocks.
    #[arg(long)]
    pub json: bool,
    /// Also list this serial port (a pty, or a port the scan of /sys/class/tty does not show);
    /// repeatable.
    #[arg(long = "serial-port", value_name = "PATH")]
    pub serial_ports: Vec<PathBuf>,
    /// Also list this RealSense recording (`.bag`/`.db3`) as a device; repeatable.
    #[arg(long = "realsense-recording", value_name = "FILE")]
    pub realsense_recordings: Vec<PathBuf>,
    /// libonnxruntime to look at (ORT_DYLIB_PATH wins, as for `run`).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
}

/// Lists, prints, and exits 1 only when something named on the command line could not be read.
///
/// # Errors
/// When standard output cannot be written.
pub fn run(args: DevicesArgs) -> Result<i32> {
    let (inventory, problems) = devices::probe(&ProbeOptions {
        serial_ports: args.serial_ports,
        realsense_recordings: args.realsense_recordings,
        ort_library: args.ort_library,
    });
    let text = if args.json {
        serde_json::to_string_pretty(&inventory).context("cannot encode the listing as JSON")?
            + "\n"
    } else {
        devices::render::text(&inventory)
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write to standard output")?;
    for p in &problems {
        eprintln!("error: {p}");
    }
    Ok(i32::from(!problems.is_empty()))
}
