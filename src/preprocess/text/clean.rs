//! The text cleaning ImageBind's `SimpleTokenizer` applies before BPE (mmp.py `basic_clean`,
//! `whitespace_clean`): `ftfy.fix_text`, Python's `html.unescape` twice, `strip`, whitespace
//! runs to one space. Ported from ftfy 6.3 and CPython 3.11 `html` for bit parity on hostile
//! text (tests/text_tokens.rs compares with the reference's ids).
//!
//! One ftfy step is not ported: `fix_encoding`, the heuristic repair of mojibake (UTF-8 decoded
//! as Windows-1252 and similar: `cafÃ©` → `café`). Such text is tokenized as written.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// ftfy's `max_decode_length`: longer lines are fixed in pieces of this many characters.
const MAX_DECODE_CHARS: usize = 1_000_000;

/// Python's `html.entities.html5` (name with or without `;` → text).
static HTML5: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    include_str!("html5_entities.tsv")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, points) = l.split_once('\t')?;
            let value = points
                .split(' ')
                .filter_map(|p| u32::from_str_radix(p, 16).ok().and_then(char::from_u32))
                .collect();
            Some((name, value))
        })
        .collect()
});

/// ftfy's `HTML_ENTITIES`: `&name;` of every `;`-terminated entity, plus the upper-case form of
/// each lower-case one that is not itself an entity (mapped to the upper-case text).
static FTFY_ENTITIES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let mut out = HashMap::new();
    for (name, value) in HTML5.iter() {
        if !name.ends_with(';') {
            continue;
        }
        out.insert(format!("&{name}"), value.clone());
        if *name == name.to_lowercase() {
            let upper = format!("&{}", name.to_uppercase());
            if html_unescape(&upper) == upper {
                out.insert(upper, value.to_uppercase());
            }
        }
    }
    out
});

#[allow(
    clippy::expect_used,
    reason = "constant patterns, checked by the tests"
)]
static PY_CHARREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)").expect("charref")
});
#[allow(clippy::expect_used, reason = "constant pattern")]
static FTFY_ENTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"&#?[0-9A-Za-z]{1,24};").expect("entity"));
#[allow(clippy::expect_used, reason = "constant pattern")]
static ANSI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\x1b\[((?:\d|;)*)([a-zA-Z])").expect("ansi"));

/// Windows-1252 for 0x80..=0x9F, undefined bytes kept as their C1 control ("sloppy").
const CP1252_C1: [char; 32] = [
    '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}',
    '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}', '\u{178}',
];

/// `whitespace_clean(basic_clean(text))` of ImageBind's tokenizer (before lower-casing).
#[must_use]
pub fn clean(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    let stripped = unescaped.trim_matches(py_isspace);
    // `re.sub(r"\s+", " ", text).strip()`: Unicode White_Space, as `char::is_whitespace`.
    stripped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Python's `str.isspace`: White_Space plus the information separators U+001C..U+001F.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `ftfy.fix_text` with its defaults, except `fix_encoding`.
#[must_use]
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // "auto": once a piece holds '<' (HTML), entities are left alone from there on.
    let mut unescape = true;
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while !rest.is_empty() {
            let cut = rest
                .char_indices()
                .nth(MAX_DECODE_CHARS)
                .map_or(rest.len(), |(i, _)| i);
            let (piece, tail) = rest.split_at(cut);
            if piece.contains('<') {
                unescape = false;
            }
            out.push_str(&fix_segment(piece, unescape));
            rest = tail;
        }
    }
    out
}

/// ftfy's `fix_and_explain`: every fixer in order, repeated until nothing changes.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape(&text);
        }
        text = text
            .chars()
            .map(|c| match u32::from(c) {
                0x80..=0x9f => CP1252_C1[(u32::from(c) - 0x80) as usize],
                _ => c,
            })
            .collect();
        text = fix_ligatures_and_width(&text);
        text = text
            .chars()
            .map(|c| match c {
                '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
                '\u{201c}'..='\u{201f}' => '"',
                _ => c,
            })
            .collect();
        text = text
            .replace("\r\n", "\n")
            .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
        text = ANSI.replace_all(&text, "").into_owned();
        text.retain(|c| !is_ftfy_control(c));
        text = text.nfc().collect();
        if text == orig {
            return text;
        }
    }
}

/// ftfy's `CONTROL_CHARS` (removed).
fn is_ftfy_control(c: char) -> bool {
    matches!(u32::from(c),
        0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff | 0xfff9..=0xfffc)
}

/// ftfy's `fix_latin_ligatures` then `fix_character_width` (full-width and half-width forms
/// U+FF01..U+FFEF to their NFKC form, the ideographic space to a space).
fn fix_ligatures_and_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let lig = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => "",
        };
        // No ligature's replacement is a full- or half-width form.
        match u32::from(c) {
            _ if !lig.is_empty() => out.push_str(lig),
            0x3000 => out.push(' '),
            0xff01..=0xffef => out.extend(std::iter::once(c).nfkc()),
            _ => out.push(c),
        }
    }
    out
}

/// ftfy's `unescape_html`: `&name;` from its table; `&#…;` through `html.unescape` unless the
/// result still holds `;`.
fn ftfy_unescape(text: &str) -> String {
    FTFY_ENTITY
        .replace_all(text, |m: &regex::Captures<'_>| {
            let s = &m[0];
            if let Some(v) = FTFY_ENTITIES.get(s) {
                v.clone()
            } else if s.starts_with("&#") {
                let u = html_unescape(s);
                if u.contains(';') {
                    s.to_string()
                } else {
                    u
                }
            } else {
                s.to_string()
            }
        })
        .into_owned()
}

/// CPython's `html.unescape`.
#[must_use]
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    PY_CHARREF
        .replace_all(s, |m: &regex::Captures<'_>| charref(&m[1]))
        .into_owned()
}

fn charref(s: &str) -> String {
    if let Some(num) = s.strip_prefix('#') {
        let num = num.trim_end_matches(';');
        let value = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => num.parse::<u64>().ok(),
        };
        // Digits beyond u64 are far above U+10FFFF.
        let n = value.unwrap_or(u64::MAX);
        if n == 0 {
            return "\u{fffd}".into();
        }
        if n == 0x0d {
            return "\r".into();
        }
        if (0x80..=0x9f).contains(&n) {
            return CP1252_C1[(n - 0x80) as usize].to_string();
        }
        if (0xd800..=0xdfff).contains(&n) || n > 0x10ffff {
            return "\u{fffd}".into();
        }
        let invalid = matches!(n, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f..=0x9f | 0xfdd0..=0xfdef)
            || (n & 0xfffe) == 0xfffe;
        if invalid {
            return String::new();
        }
        return char::from_u32(n as u32).map_or_else(String::new, String::from);
    }
    if let Some(v) = HTML5.get(s) {
        return v.clone();
    }
    // The longest entity name that starts `s` (at least two characters), as the standard says.
    let ends: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(2).collect();
    for &end in ends.iter().rev() {
        if let Some(v) = HTML5.get(&s[..end]) {
            return format!("{v}{}", &s[end..]);
        }
    }
    format!("&{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_unescape_follows_cpython() {
        assert_eq!(
            html_unescape("&amp;amp; &lt &notit; &#65;&#x42 &#0; &#128;"),
            "&amp; < ¬it; AB \u{fffd} €"
        );
        assert_eq!(
            html_unescape("&#x110000; &#xD800; &#1; &bogus; &#z"),
            "\u{fffd} \u{fffd}  &bogus; &#z"
        );
        assert_eq!(HTML5.len(), 2231);
    }

    #[test]
    fn ftfy_fixes_without_touching_plain_text() {
        assert_eq!(fix_text("a dog"), "a dog");
        assert_eq!(fix_text("ﬁne ＡＢ\u{3000}“q”\u{0}"), "fine AB \"q\"");
        assert_eq!(fix_text("&EACUTE; <b> &eacute;"), "&EACUTE; <b> &eacute;");
        assert_eq!(fix_text("&EACUTE;\n<b> &eacute;"), "É\n<b> &eacute;");
        assert_eq!(fix_text("e\u{301}\r\n\x1b[31mx"), "é\nx");
    }
}
