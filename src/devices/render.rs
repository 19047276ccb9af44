//! The listing as text: one table per kind, every absence said in words, then the blocks.

use std::fmt::Write as _;

use super::{Inventory, Section, Status};

/// Rows under a header, columns padded to their widest cell.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::from("  ");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.iter().map(ToString::to_string).collect()));
    for row in rows {
        out.push_str(&line(row.clone()));
    }
}

fn dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

/// `Serial ports: 2` or `Serial ports: none found`, then the section's notes.
fn heading<T>(out: &mut String, title: &str, s: &Section<T>) {
    let status = match s.status {
        Status::Found => s.devices.len().to_string(),
        Status::None => "none found".into(),
        Status::NotBuilt => "not in this build".into(),
        Status::Unavailable => "cannot be listed".into(),
    };
    let _ = writeln!(out, "{title}: {status}");
    for n in &s.notes {
        let _ = writeln!(out, "  {n}");
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn fps_list(fps: &[f64]) -> String {
    if fps.is_empty() {
        return String::new();
    }
    let rates: Vec<String> = fps.iter().map(|f| format!("{f}")).collect();
    format!(" @ {} fps", rates.join("/"))
}

/// The whole listing.
#[must_use]
pub fn text(inv: &Inventory) -> String {
    let mut out = String::new();
    heading(&mut out, "Serial ports", &inv.serial);
    if !inv.serial.devices.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .serial
            .devices
            .iter()
            .map(|p| {
                let what = p
                    .adapter
                    .clone()
                    .or_else(|| p.product.clone())
                    .unwrap_or_else(|| match p.kind {
                        super::serial::PortKind::OnBoard => "on-board UART".into(),
                        super::serial::PortKind::Given => "given on the command line".into(),
                        super::serial::PortKind::Usb => "USB serial".into(),
                    });
                vec![p.path.clone(), dash(p.usb_id.as_deref()), what]
            })
            .collect();
        table(&mut out, &["PATH", "USB ID", "ADAPTER"], &rows);
    }
    out.push('\n');
    v4l2_text(&mut out, inv);
    realsense_text(&mut out, inv);
    alsa_text(&mut out, inv);
    runtime_text(&mut out, inv);
    let blocks = inv.blocks();
    if blocks.is_empty() {
        out.push_str("\nNo sensor to configure was found.\n");
    } else {
        out.push_str(
            "\nReady-to-paste sources (add to the config, then: edgebind check --config FILE):\n",
        );
        for b in blocks {
            out.push('\n');
            out.push_str(&b.toml);
        }
    }
    out
}

fn v4l2_text(out: &mut String, inv: &Inventory) {
    heading(out, "V4L2 cameras", &inv.v4l2);
    if !inv.v4l2.devices.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .v4l2
            .devices
            .iter()
            .map(|d| {
                vec![
                    d.path.clone(),
                    d.driver.clone(),
                    d.card.clone(),
                    d.recognised.map_or("-".into(), |k| k.label().to_string()),
                ]
            })
            .collect();
        table(out, &["PATH", "DRIVER", "CARD", "RECOGNISED"], &rows);
        for d in &inv.v4l2.devices {
            let _ = writeln!(out, "  {}:", d.device);
            for f in &d.formats {
                let sizes: Vec<String> = f
                    .sizes
                    .iter()
                    .map(|s| format!("{}{}", s.size, fps_list(&s.fps)))
                    .collect();
                let _ = writeln!(
                    out,
                    "    '{}' {}{}: {}",
                    f.fourcc,
                    f.description,
                    if f.usable {
                        ""
                    } else {
                        " (not used by edgebind)"
                    },
                    sizes.join(", ")
                );
            }
            if let Some(n) = &d.note {
                let _ = writeln!(out, "    ({n})");
            }
        }
    }
    out.push('\n');
}

fn realsense_text(out: &mut String, inv: &Inventory) {
    heading(out, "RealSense cameras", &inv.realsense);
    for d in &inv.realsense.devices {
        let _ = writeln!(
            out,
            "  {} serial {} firmware {}{}",
            d.name,
            dash(d.serial.as_deref()),
            dash(d.firmware.as_deref()),
            d.recording
                .as_ref()
                .map_or(String::new(), |r| format!(" (recording {r})"))
        );
        let rows: Vec<Vec<String>> = d
            .streams
            .iter()
            .map(|s| {
                let size = if s.width_px == 0 {
                    "-".into()
                } else {
                    format!("{}x{}", s.width_px, s.height_px)
                };
                vec![s.stream.clone(), s.format.clone(), size, s.fps.to_string()]
            })
            .collect();
        table(out, &["STREAM", "FORMAT", "SIZE", "FPS"], &rows);
        if let Some(n) = &d.note {
            let _ = writeln!(out, "  ({n})");
        }
    }
    out.push('\n');
}

fn alsa_text(out: &mut String, inv: &Inventory) {
    heading(out, "ALSA capture devices", &inv.alsa);
    if !inv.alsa.devices.is_empty() {
        let rows: Vec<Vec<String>> = inv
            .alsa
            .devices
            .iter()
            .map(|p| {
                let rates: Vec<String> = p
                    .rates_hz
                    .iter()
                    .map(|[a, b]| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                let channels = ranges(&p.channels);
                vec![
                    p.pcm.clone(),
                    dash(p.description.as_deref()),
                    or_dash(rates.join(", ")),
                    or_dash(channels),
                    or_dash(p.formats.join(", ")),
                    // Without a block, why; with one, what it opens.
                    p.note
                        .clone()
                        .or_else(|| p.opens.clone())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        table(
            out,
            &[
                "PCM",
                "DESCRIPTION",
                "RATES (Hz)",
                "CHANNELS",
                "FORMATS",
                "EDGEBIND OPENS",
            ],
            &rows,
        );
    }
    out.push('\n');
}

/// `1, 2, 4-8`: runs of consecutive numbers as ranges.
fn ranges(sorted: &[u16]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j].saturating_add(1) {
            j += 1;
        }
        parts.push(match j - i {
            0 => sorted[i].to_string(),
            1 => format!("{}, {}", sorted[i], sorted[j]),
            _ => format!("{}-{}", sorted[i], sorted[j]),
        });
        i = j + 1;
    }
    parts.join(", ")
}

fn runtime_text(out: &mut String, inv: &Inventory) {
    let ort = &inv.onnxruntime;
    match (&ort.library, &ort.version) {
        (Some(lib), Some(v)) => {
            let has: Vec<&str> = ort
                .providers
                .iter()
                .filter(|p| p.available)
                .map(|p| p.name)
                .collect();
            let lacks: Vec<&str> = ort
                .providers
                .iter()
                .filter(|p| !p.available)
                .map(|p| p.name)
                .collect();
            let _ = writeln!(out, "ONNX Runtime: {v} ({lib})");
            let _ = writeln!(
                out,
                "  providers compiled in: {}{}",
                if has.is_empty() {
                    "none".into()
                } else {
                    has.join(", ")
                },
                if lacks.is_empty() {
                    String::new()
                } else {
                    format!("; not in this library: {}", lacks.join(", "))
                }
            );
        }
        _ => {
            let _ = writeln!(out, "ONNX Runtime: not found");
            if let Some(n) = &ort.note {
                let _ = writeln!(out, "  ({n})");
            }
        }
    }
    let p = &inv.platform;
    let gpu = match (&p.gpu, p.jetson) {
        (Some(g), _) => g.clone(),
        (None, true) => "a Jetson (model not readable)".into(),
        (None, false) => "no NVIDIA GPU or Jetson found".into(),
    };
    let _ = writeln!(out, "GPU: {gpu}");
    if p.jetson {
        let _ = writeln!(
            out,
            "  L4T: {}",
            p.l4t
                .as_deref()
                .unwrap_or("not found (/etc/nv_tegra_release)")
        );
        let _ = writeln!(
            out,
            "  power mode: {}",
            p.power_mode
                .as_deref()
                .unwrap_or("unknown (nvpmodel not present)")
        );
    }
    let _ = writeln!(
        out,
        "TensorRT: {}",
        p.tensorrt
            .as_deref()
            .unwrap_or("not present (no libnvinfer in the loader's cache)")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_channel_counts_are_shown_as_ranges() {
        let all: Vec<u16> = (1..=64).collect();
        assert_eq!(ranges(&all), "1-64");
        assert_eq!(ranges(&[1, 2, 4, 6, 7, 8]), "1, 2, 4, 6-8");
        assert_eq!(ranges(&[]), "");
    }
}
