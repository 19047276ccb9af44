//! ImageBind's text input (SPEC.md §7): OpenAI CLIP's byte-level BPE, `[SOT] + bpe[..75] +
//! [EOT]`, zero padded to 77 int64 ids.
//!
//! The vocabulary (`bpe_simple_vocab_16e6.txt.gz`, MIT, from OpenAI CLIP) is not shipped: the
//! exporter copies it next to `text.onnx` and `tools/fetch_clip_bpe.sh` fetches it for tests.
//! The cleaning before BPE is ImageBind's ([`clean`]: ftfy, `html.unescape` twice, whitespace),
//! except ftfy's mojibake repair; the pre-tokenizer is CLIP's regex, run by the `regex` crate
//! (`\p{L}`, `\p{N}`, Unicode `\s`). tests/text_tokens.rs holds the ids of ImageBind's own
//! tokenizer for hostile text (emoji, CJK, HTML entities, control characters, 10 kB strings).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use ndarray::Array2;
use regex::Regex;

pub mod clean;

/// CLIP's pre-tokenizer (`re.IGNORECASE`): the special tokens, the contractions, runs of
/// letters, single digits, runs of anything else but whitespace.
#[allow(
    clippy::expect_used,
    reason = "a constant pattern, exercised by every test"
)]
static PRE_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    )
    .expect("CLIP pre-tokenizer pattern")
});

/// ImageBind's text context length.
pub const CONTEXT_LEN: usize = 77;
/// `<|startoftext|>`.
pub const SOT: i64 = 49406;
/// `<|endoftext|>`.
pub const EOT: i64 = 49407;
/// Merge lines used by CLIP (lines 1..=48894 of the file; line 0 is a header).
const MERGES: usize = 49152 - 256 - 2;

/// Errors loading the vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The file cannot be opened or read, or is too large.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The file could not be decompressed.
    #[error("{path}: cannot read the CLIP BPE vocabulary: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not CLIP's merge list.
    #[error("{path}: not a CLIP BPE vocabulary: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The CLIP tokenizer.
#[derive(Debug)]
pub struct ClipTokenizer {
    ids: HashMap<String, i64>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
}

/// GPT-2/CLIP's reversible byte → character map, and the bytes in vocabulary order
/// (printable Latin-1 first, then the 68 others, which map to U+0100 onwards).
fn byte_alphabet() -> ([char; 256], Vec<u8>) {
    let printable = |b: u8| matches!(b, 33..=126 | 161..=172 | 174..=255);
    let mut order: Vec<u8> = (0..=255u8).filter(|&b| printable(b)).collect();
    let mut chars = ['\0'; 256];
    for &b in &order {
        chars[usize::from(b)] = char::from(b);
    }
    let others: Vec<u8> = (0..=255u8).filter(|&b| !printable(b)).collect();
    for (k, &b) in others.iter().enumerate() {
        chars[usize::from(b)] = char::from_u32(256 + k as u32).unwrap_or('\u{fffd}');
    }
    order.extend(others);
    (chars, order)
}

impl ClipTokenizer {
    /// Loads `bpe_simple_vocab_16e6.txt.gz` (gzip) or its decompressed text.
    ///
    /// # Errors
    /// [`TextError`] naming the file.
    pub fn load(path: &Path) -> Result<Self, TextError> {
        let read_err = |source| TextError::Read {
            path: path.to_path_buf(),
            source,
        };
        let limit = crate::files::MAX_TEXT_BYTES;
        let raw = crate::files::read_bytes(path, limit, "a CLIP BPE vocabulary")?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            // A few compressed bytes can expand to gigabytes: stop past the limit.
            flate2::read::GzDecoder::new(raw.as_slice())
                .take(limit + 1)
                .read_to_string(&mut s)
                .map_err(read_err)?;
            if s.len() as u64 > limit {
                return Err(TextError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "decompresses to more than {}",
                        crate::files::human_bytes(limit)
                    ),
                });
            }
            s
        } else {
            String::from_utf8(raw).map_err(|e| TextError::Format {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        };
        Self::from_merges(&text).map_err(|message| TextError::Format {
            path: path.to_path_buf(),
            message,
        })
    }

    fn from_merges(text: &str) -> Result<Self, String> {
        let mut merges = Vec::with_capacity(MERGES);
        for (i, line) in text.split('\n').skip(1).take(MERGES).enumerate() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_string(), b.to_string())),
                _ => return Err(format!("line {} is not a merge pair: {line:?}", i + 2)),
            }
        }
        if merges.len() != MERGES {
            return Err(format!("{} merge lines, expected {MERGES}", merges.len()));
        }
        let (byte_chars, order) = byte_alphabet();
        let mut vocab: Vec<String> = order
            .iter()
            .map(|&b| byte_chars[usize::from(b)].to_string())
            .collect();
        let with_end: Vec<String> = vocab.iter().map(|c| format!("{c}</w>")).collect();
        vocab.extend(with_end);
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push("<|startoftext|>".into());
        vocab.push("<|endoftext|>".into());
        let ids = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as i64))
            .collect();
        let ranks = merges
            .into_iter()
            .enumerate()
            .map(|(i, m)| (m, i))
            .collect();
        Ok(Self {
            ids,
            ranks,
            byte_chars,
        })
    }

    /// BPE ids of `text` without SOT/EOT.
    #[must_use]
    pub fn encode(&self, text: &str) -> Vec<i64> {
        let cleaned = clean::clean(text).to_lowercase();
        let mut out = Vec::new();
        for piece in PRE_TOKEN.find_iter(&cleaned).map(|m| m.as_str()) {
            // The tokenizer's BPE cache starts with the two special tokens, so they are ids.
            match piece {
                "<|startoftext|>" => out.push(SOT),
                "<|endoftext|>" => out.push(EOT),
                _ => {
                    let word: String = piece
                        .bytes()
                        .map(|b| self.byte_chars[usize::from(b)])
                        .collect();
                    for part in self.bpe(&word) {
                        // Every byte character and every merge result is in the vocabulary.
                        if let Some(&id) = self.ids.get(&part) {
                            out.push(id);
                        }
                    }
                }
            }
        }
        out
    }

    /// `[texts.len(), 77]` ids as ImageBind's `load_and_transform_text` makes them: SOT, at most
    /// 75 BPE ids, EOT (kept at index 76 when truncating), zeros.
    #[must_use]
    pub fn tokenize(&self, texts: &[&str]) -> Array2<i64> {
        let mut out = Array2::zeros((texts.len(), CONTEXT_LEN));
        for (mut row, text) in out.rows_mut().into_iter().zip(texts) {
            let mut ids = vec![SOT];
            ids.extend(self.encode(text).into_iter().take(CONTEXT_LEN - 2));
            ids.push(EOT);
            for (dst, id) in row.iter_mut().zip(ids) {
                *dst = id;
            }
        }
        out
    }

    /// Merges the lowest-ranked adjacent pair until none is in the merge list.
    fn bpe(&self, word: &str) -> Vec<String> {
        let mut parts: Vec<String> = word.chars().map(String::from).collect();
        if let Some(last) = parts.last_mut() {
            last.push_str("</w>");
        }
        while parts.len() > 1 {
            let best = parts
                .windows(2)
                .filter_map(|w| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, w[0].clone(), w[1].clone()))
                })
                .min_by_key(|(r, _, _)| *r);
            let Some((_, a, b)) = best else { break };
            let mut merged = Vec::with_capacity(parts.len());
            let mut i = 0;
            while i < parts.len() {
                if i + 1 < parts.len() && parts[i] == a && parts[i + 1] == b {
                    merged.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    merged.push(parts[i].clone());
                    i += 1;
                }
            }
            parts = merged;
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ClipTokenizer {
        // Header, then merges: "d o" -> "do", "do g</w>" -> "dog</w>"; padded to the full count
        // with pairs of unused characters.
        let mut text = String::from("#version: 0.2\nd o\ndo g</w>\n");
        for i in 0..MERGES - 2 {
            let a = char::from_u32(0x4e00 + (i as u32 % 20000)).unwrap_or('x');
            text.push_str(&format!("{a} {a}{i}\n"));
        }
        ClipTokenizer::from_merges(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_vocabulary_that_decompresses_beyond_the_limit_is_refused() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("bomb.txt.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'a'; 1 << 20];
        for _ in 0..17 {
            gz.write_all(&zeros).unwrap_or_else(|e| panic!("{e}"));
        }
        let bytes = gz.finish().unwrap_or_else(|e| panic!("{e}"));
        assert!(bytes.len() < 1 << 20);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
        let e = ClipTokenizer::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.ends_with("decompresses to more than 16.0 MiB"), "{e}");
    }

    #[test]
    fn merges_are_applied_by_rank_and_words_end_with_the_end_marker() {
        let t = tiny();
        let ids = t.encode("Dog");
        assert_eq!(ids, vec![t.ids["dog</w>"]]);
        // "od" has no merge: two byte tokens, the last with the end marker.
        assert_eq!(t.encode("od"), vec![t.ids["o"], t.ids["d</w>"]]);
    }

    #[test]
    fn rows_are_sot_ids_eot_and_zero_padding_and_keep_eot_when_truncated() {
        let t = tiny();
        let rows = t.tokenize(&["dog", &"dog ".repeat(100)]);
        assert_eq!(rows[[0, 0]], SOT);
        assert_eq!(rows[[0, 2]], EOT);
        assert!(rows.row(0).iter().skip(3).all(|&v| v == 0));
        assert_eq!(rows[[1, 76]], EOT);
        assert!(rows.row(1).iter().all(|&v| v != 0));
    }

    #[test]
    fn pre_tokenizer_splits_like_clips_regex() {
        let pieces: Vec<&str> = PRE_TOKEN
            .find_iter("it's 42 dogs!! <|endoftext|> कुत्ता ⅳ")
            .map(|m| m.as_str())
            .collect();
        // Devanagari vowel signs are marks, not letters (\p{L}); ⅳ is a number, not a letter.
        assert_eq!(
            pieces,
            vec![
                "it",
                "'s",
                "4",
                "2",
                "dogs",
                "!!",
                "<|endoftext|>",
                "क",
                "ु",
                "त",
                "्",
                "त",
                "ा",
                "ⅳ"
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_a_merge_list_is_refused() {
        assert!(ClipTokenizer::from_merges("header\nonly one line\n").is_err());
    }
}
