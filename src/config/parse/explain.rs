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
    if let Some(field) = quoted_after(message, "duplicate field ") {
        return format!("\"{field}\" is set twice");
    }
    for kind in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(kind) {
            let (what, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
            let too_large = (kind == "invalid value: " && what.starts_with("integer"))
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
            return format!(
                "expected {}{up_to}, found {found}{why}",
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
