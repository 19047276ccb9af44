//! serde's messages in words for the person editing the file: what was expected (with the unit
//! the key's name says), what was found (as written), and a "did you mean" for typos.

/// The text between the first pair of backticks after `prefix` in `message`.
pub(super) fn quoted_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split('`').next()
}

/// The names between backticks after "expected" in serde's unknown variant/field messages.
pub(super) fn expected_names(message: &str) -> Vec<String> {
    message
        .split_once("expected")
        .map(|(_, list)| {
            list.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The closest of `names` to `word`, if it is close enough to be a typo.
pub(super) fn suggestion<'n>(word: &str, names: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    names
        .map(|n| (strsim::jaro_winkler(word, n), n))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

/// What a serde message means for the person editing the file.
pub(super) fn explain(message: &str, key: Option<&str>, found: &str) -> String {
    let found = shorten(found);
    if let Some(field) = quoted_after(message, "unknown field ") {
        let known = expected_names(message);
        return match suggestion(field, known.iter().map(String::as_str)) {
            Some(s) => format!("unknown key \"{field}\" (did you mean \"{s}\"?)"),
            None if known.is_empty() => format!("unknown key \"{field}\""),
            None => format!(
                "unknown key \"{field}\"; the keys here are {}",
                known.join(", ")
            ),
        };
    }
    if let Some(variant) = quoted_after(message, "unknown variant ") {
        let names: Vec<String> = expected_names(message)
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        return format!("\"{variant}\" is not one of {}", names.join(", "));
    }
    // toml's words for a number or a boolean where an enum's name belongs.
    if message.starts_with("wanted string or table") {
        return format!("expected one of this key's names, in quotes, found {found}");
    }
    if let Some(field) = quoted_after(message, "duplicate field ") {
        return format!("\"{field}\" is set twice");
    }
    for kind in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(kind) {
            let (what, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
            let too_large = (kind == "invalid value: "
                && what.starts_with("integer")
                && type_max(expected).is_some())
                || what.contains(" as i128");
            let (why, up_to) = if what.starts_with("integer `-") {
                (" (negative)", String::new())
            } else if too_large {
                (
                    " (too large)",
                    type_max(expected).map_or(String::new(), |m| format!(" up to {m}")),
                )
            } else {
                ("", String::new())
            };
            // A number of the wrong type also says which numbers the key takes, when its name
            // alone says (the range is checked again once the type is right).
            let range = match (up_to.is_empty(), key.and_then(key_range)) {
                (true, Some(r)) if is_number(expected) => format!(" from {r}"),
                _ => String::new(),
            };
            return format!(
                "expected {}{range}{up_to}, found {found}{why}",
                expected_words(expected, key)
            );
        }
    }
    message.to_string()
}

/// The largest value of an unsigned integer type serde names.
pub(super) fn type_max(expected: &str) -> Option<u64> {
    Some(match expected {
        "u8" => u8::MAX.into(),
        "u16" => u16::MAX.into(),
        "u32" => u32::MAX.into(),
        "u64" | "usize" => u64::MAX,
        _ => return None,
    })
}

pub(super) fn shorten(found: &str) -> String {
    let one_line = found.lines().next().unwrap_or("").trim();
    if one_line.chars().count() > 40 {
        format!("{}…", one_line.chars().take(40).collect::<String>())
    } else {
        one_line.to_string()
    }
}

/// serde's name for an expected type, in words, with the unit its key is in.
pub(super) fn expected_words(expected: &str, key: Option<&str>) -> String {
    let unit = key.and_then(key_unit);
    let with_unit = |kind: &str| match unit {
        Some(u) => format!("{kind} of {u}"),
        None => kind.to_string(),
    };
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => with_unit("a whole number"),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => with_unit("a whole number"),
        "f32" | "f64" => with_unit("a number"),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" => "text in quotes".into(),
        "path string" => "a path in quotes".into(),
        "a sequence" => "a list in brackets, like [\"a\", \"b\"]".into(),
        e if e.starts_with("struct ") || e == "a map" => "a table (a [section] or { … })".into(),
        e if e.starts_with("enum ") || e == "string or map" => {
            "one of this key's names, in quotes".into()
        }
        other => other.to_string(),
    }
}

/// Whether serde's expected type is a number.
fn is_number(expected: &str) -> bool {
    expected.len() <= 5
        && ['u', 'i', 'f'].iter().any(|c| expected.starts_with(*c))
        && expected[1..]
            .chars()
            .all(|c| c.is_ascii_digit() || "size".contains(c))
}

/// The range a key accepts, in words, where its name alone says which (`None` where the range
/// depends on the source kind or there is none): `1 to 600000 ms (10 min)`.
pub(super) fn key_range(key: &str) -> Option<String> {
    use crate::config::limits as l;
    Some(match key {
        // Audio's differs only in its minimum (one 25 ms frame).
        "window_ms" => l::WINDOW_MS.describe().replacen(
            " to ",
            &format!(" ({} for audio) to ", l::AUDIO_WINDOW_MS.min),
            1,
        ),
        "hop_ms" => l::HOP_MS.describe(),
        "interval_ms" => l::FRAME_INTERVAL_MS.describe(),
        "reconnect_max_backoff_ms" => l::RECONNECT_MAX_BACKOFF_MS.describe(),
        "data_bits" => l::DATA_BITS.describe(),
        "stop_bits" => l::STOP_BITS.describe(),
        "width_px" | "height_px" => l::FRAME_SIZE_PX.describe(),
        "baud_rate" => l::BAUD_RATE.describe(),
        "top_k" => l::TOP_K.describe(),
        "keep_alive_s" => l::KEEP_ALIVE_S.describe(),
        "max_packet_bytes" => l::MAX_PACKET_BYTES.describe(),
        "stats_interval_s" => l::STATS_INTERVAL_S.describe(),
        "fsync_interval_ms" => l::FSYNC_INTERVAL_MS.describe(),
        "max_batch" => l::MAX_BATCH.describe(),
        "max_batch_wait_ms" => l::MAX_BATCH_WAIT_MS.describe(),
        "channels" => l::AUDIO_CHANNELS.describe(),
        "clips" => l::AUDIO_CLIPS.describe(),
        "witmotion_acc_range_g" => l::WITMOTION_ACC_RANGE_G.describe(),
        "witmotion_gyro_range_dps" => l::WITMOTION_GYRO_RANGE_DPS.describe(),
        "telemetry_rows" => l::TELEMETRY_ROWS.describe(),
        "max_frames" => l::MAX_FRAMES.describe(),
        _ => return None,
    })
}

/// The unit a key's name says its value is in.
pub(super) fn key_unit(key: &str) -> Option<&'static str> {
    let suffixes = [
        ("_ms", "milliseconds"),
        ("_s", "seconds"),
        ("_hz", "hertz"),
        ("_bytes", "bytes"),
        ("_px", "pixels"),
        ("_m", "metres"),
        ("_c", "degrees Celsius"),
        ("_g", "g"),
        ("_dps", "degrees per second"),
        ("fps", "frames per second"),
        ("queue_capacity", "items waiting"),
        ("threads", "threads"),
        ("baud_rate", "bits per second"),
        ("_bits", "bits"),
        ("top_k", "concepts"),
        ("clips", "clips"),
        ("channels", "channels"),
        ("max_batch", "windows"),
        ("max_frames", "frames"),
        ("_rows", "rows"),
    ];
    suffixes
        .iter()
        .find(|(suffix, _)| key.ends_with(suffix))
        .map(|(_, unit)| *unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the range table names is a key of the documented configuration, so a renamed
    /// key cannot silently lose its range in messages.
    #[test]
    fn every_key_with_a_range_is_a_documented_key() {
        let documented = include_str!("../../../config/edgebind.toml");
        let keys = [
            "window_ms",
            "hop_ms",
            "interval_ms",
            "reconnect_max_backoff_ms",
            "data_bits",
            "stop_bits",
            "width_px",
            "height_px",
            "baud_rate",
            "top_k",
            "keep_alive_s",
            "max_packet_bytes",
            "stats_interval_s",
            "fsync_interval_ms",
            "max_batch",
            "max_batch_wait_ms",
            "channels",
            "clips",
            "witmotion_acc_range_g",
            "witmotion_gyro_range_dps",
            "telemetry_rows",
            "max_frames",
        ];
        for key in keys {
            assert!(key_range(key).is_some(), "{key}");
            assert!(
                documented.lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key} = "))),
                "{key} is not in config/edgebind.toml"
            );
        }
        assert_eq!(
            key_range("sample_rate_hz"),
            None,
            "depends on the source kind"
        );
    }

    #[test]
    fn a_number_of_the_wrong_type_says_the_range_in_words() {
        assert_eq!(
            explain(
                "invalid type: string \"x\", expected u32",
                Some("baud_rate"),
                "\"x\""
            ),
            "expected a whole number of bits per second from 50 to 4000000 baud, found \"x\""
        );
        assert_eq!(
            explain("wanted string or table", Some("when_full"), "5"),
            "expected one of this key's names, in quotes, found 5"
        );
        // Not numbers: no range.
        assert_eq!(
            explain(
                "invalid type: integer `5`, expected a string",
                Some("hop_ms"),
                "5"
            ),
            "expected text in quotes, found 5"
        );
    }
}
