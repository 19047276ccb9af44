//! A disk cache of embedded banks, so a restart (or a set sent again) does not run the text
//! encoder. An entry is keyed by the sha256 of the text encoder, of the vocabulary and of the
//! set's words ([`TextSet::sha256`]: template, labels, aliases); it is one file
//! `<dir>/<key>.bank`, written atomically:
//!
//! | bytes | content |
//! |---|---|
//! | 16 | magic `EDGEBIND-BANK\0\0\x01` |
//! | 32 | the key (raw sha256) |
//! | 4, 4, 4 | rows, dim, labels length in bytes (u32 little-endian) |
//! | labels length | the labels, each followed by `\n` |
//! | rows × dim × 4 | the rows, f32 little-endian, row-major |
//! | 32 | sha256 of everything before |
//!
//! Every size is checked against the file's length and the limits before anything is
//! allocated. A damaged entry is a [`CacheError::Corrupt`]: [`cached_rows`] logs it and embeds
//! the set again, overwriting the entry.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use sha2::{Digest, Sha256};

use super::embed::{EmbedError, EmbeddedRows, TextEmbedder, TextModel};
use super::set::{hex, TextSet, MAX_LABELS, MAX_LABEL_BYTES};
use super::state::atomic_write;
use crate::files::{self, FileError};

const MAGIC: &[u8; 16] = b"EDGEBIND-BANK\0\0\x01";
const HEADER_BYTES: u64 = 16 + 32 + 12;
/// Widest embedding a cache entry may hold.
pub const MAX_DIM: usize = 16384;
/// Largest entry read (labels at their longest and 4096 rows of the widest embedding).
pub const MAX_ENTRY_BYTES: u64 = HEADER_BYTES
    + (MAX_LABELS * (MAX_LABEL_BYTES + 1)) as u64
    + (MAX_LABELS * MAX_DIM * 4) as u64
    + 32;

/// Errors of the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The entry cannot be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// The entry is damaged or not the one asked for.
    #[error("{path}: corrupt cache entry: {message}")]
    Corrupt {
        /// The entry.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The entry cannot be written.
    #[error("{path}: cannot write the cache entry: {message}")]
    Write {
        /// The entry.
        path: PathBuf,
        /// The OS's message.
        message: String,
    },
}

/// The cache key of `set` embedded with `model` (lower-case hex sha256).
#[must_use]
pub fn key(model: &TextModel, set: &TextSet) -> String {
    let mut h = Sha256::new();
    for part in [
        "edgebind bank cache v1",
        &model.onnx_sha256,
        &model.vocab_sha256,
        &set.sha256(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct BankCache {
    dir: PathBuf,
}

impl BankCache {
    /// Entries kept in `dir` (created on the first write).
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file of entry `key`.
    #[must_use]
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.bank"))
    }

    /// The entry `key`, or `None` when there is none.
    ///
    /// # Errors
    /// [`CacheError::Corrupt`] when the entry is damaged, [`CacheError::File`] when unreadable.
    pub fn get(&self, key: &str) -> Result<Option<EmbeddedRows>, CacheError> {
        let path = self.path(key);
        if !path.exists() {
            return Ok(None);
        }
        let (mut file, len) = files::open_limited(&path, MAX_ENTRY_BYTES, "a concept cache entry")?;
        let corrupt = |message: String| CacheError::Corrupt {
            path: path.clone(),
            message,
        };
        if len < HEADER_BYTES + 32 {
            return Err(corrupt(format!("{len} bytes, shorter than a header")));
        }
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact(&mut header)
            .map_err(|e| FileError::io(&path, &e))?;
        if &header[..16] != MAGIC {
            return Err(corrupt("not a concept cache entry (magic)".into()));
        }
        if hex(&header[16..48]) != key {
            return Err(corrupt("holds another key".into()));
        }
        let word = |i: usize| {
            let b = &header[48 + 4 * i..52 + 4 * i];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        };
        let (rows, dim, labels_len) = (word(0), word(1), word(2));
        if rows == 0 || rows > MAX_LABELS || dim == 0 || dim > MAX_DIM {
            return Err(corrupt(format!("declares a [{rows}, {dim}] bank")));
        }
        let expected = HEADER_BYTES + labels_len as u64 + (rows * dim * 4) as u64 + 32;
        if expected != len {
            return Err(corrupt(format!(
                "declares {expected} bytes, the file has {len}"
            )));
        }
        let mut rest = vec![0u8; (len - HEADER_BYTES) as usize];
        file.read_exact(&mut rest)
            .map_err(|e| FileError::io(&path, &e))?;
        let (body, digest) = rest.split_at(rest.len() - 32);
        let mut h = Sha256::new();
        h.update(header);
        h.update(body);
        if h.finalize().as_slice() != digest {
            return Err(corrupt("checksum does not match the content".into()));
        }
        let (labels, values) = body.split_at(labels_len);
        let labels =
            std::str::from_utf8(labels).map_err(|_| corrupt("labels are not UTF-8".into()))?;
        let labels: Vec<String> = labels.split_terminator('\n').map(String::from).collect();
        if labels.len() != rows {
            return Err(corrupt(format!("{} labels for {rows} rows", labels.len())));
        }
        let values: Vec<f32> = values
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let rows =
            Array2::from_shape_vec((rows, dim), values).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some(EmbeddedRows { labels, rows }))
    }

    /// Stores `rows` as entry `key`, atomically.
    ///
    /// # Errors
    /// [`CacheError::Write`].
    pub fn put(&self, key: &str, rows: &EmbeddedRows) -> Result<(), CacheError> {
        let path = self.path(key);
        let write_err = |message: String| CacheError::Write {
            path: path.clone(),
            message,
        };
        let key_bytes: Vec<u8> = (0..key.len() / 2)
            .filter_map(|i| u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        if key_bytes.len() != 32 || key.len() != 64 {
            return Err(write_err(format!("{key:?} is not a sha256")));
        }
        let labels: String = rows.labels.iter().map(|l| format!("{l}\n")).collect();
        let (n, dim) = rows.rows.dim();
        let to_u32 = |v: usize| u32::try_from(v).map_err(|_| write_err(format!("{v} too large")));
        let mut out = Vec::with_capacity(HEADER_BYTES as usize + labels.len() + n * dim * 4 + 32);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key_bytes);
        for v in [n, dim, labels.len()] {
            out.extend_from_slice(&to_u32(v)?.to_le_bytes());
        }
        out.extend_from_slice(labels.as_bytes());
        for v in rows.rows.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        atomic_write(&path, &out).map_err(|e| write_err(e.to_string()))
    }
}

/// Where the rows of [`cached_rows`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Read from the cache.
    Hit,
    /// Embedded (no entry, or no cache); stored when a cache is given.
    Embedded,
    /// The entry was damaged or unreadable (the reason is logged); embedded again.
    Rebuilt {
        /// Why the entry was not used.
        reason: String,
    },
}

/// The rows of `set`: from `cache` when it holds them, else embedded with `embedder` (and stored).
/// A damaged entry is logged as a warning and rebuilt; a cache that cannot be written is logged
/// and the rows are returned all the same.
///
/// # Errors
/// [`EmbedError`] when the set has to be embedded and cannot be.
pub fn cached_rows(
    embedder: &mut TextEmbedder,
    cache: Option<&BankCache>,
    set: &TextSet,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(EmbeddedRows, CacheOutcome), EmbedError> {
    let Some(cache) = cache else {
        return Ok((embedder.embed(set, progress)?, CacheOutcome::Embedded));
    };
    let key = key(embedder.model(), set);
    let mut outcome = CacheOutcome::Embedded;
    match cache.get(&key) {
        Ok(Some(rows)) if rows.labels == set.labels() => return Ok((rows, CacheOutcome::Hit)),
        Ok(Some(_)) => outcome = rebuilt(&cache.path(&key), "labels differ from the set"),
        Ok(None) => {}
        Err(e) => outcome = rebuilt(&cache.path(&key), &e.to_string()),
    }
    let rows = embedder.embed(set, progress)?;
    if let Err(e) = cache.put(&key, &rows) {
        tracing::warn!(error = %e, "concept bank not cached; it will be embedded again next time");
    }
    Ok((rows, outcome))
}

fn rebuilt(path: &Path, reason: &str) -> CacheOutcome {
    tracing::warn!(entry = %path.display(), %reason, "concept cache entry unusable; embedding the set again");
    CacheOutcome::Rebuilt {
        reason: reason.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rows() -> EmbeddedRows {
        EmbeddedRows {
            labels: vec!["dog".into(), "a café".into()],
            rows: ndarray::arr2(&[[1.0, -2.5, 3.0], [0.5, 0.25, f32::MIN_POSITIVE]]),
        }
    }

    fn model() -> TextModel {
        TextModel {
            onnx: "text.onnx".into(),
            onnx_sha256: "aa".into(),
            vocab: "bpe.gz".into(),
            vocab_sha256: "bb".into(),
        }
    }

    #[test]
    fn the_key_depends_on_encoder_vocabulary_and_words() {
        let set = |t: Option<&str>| {
            TextSet::new(vec!["dog".into()], t.map(String::from), BTreeMap::new()).unwrap()
        };
        let k = key(&model(), &set(None));
        assert_eq!(k.len(), 64);
        assert_ne!(k, key(&model(), &set(Some("a {}"))));
        let mut m = model();
        m.onnx_sha256 = "ab".into();
        assert_ne!(k, key(&m, &set(None)));
        let mut m = model();
        m.vocab_sha256 = "bc".into();
        assert_ne!(k, key(&m, &set(None)));
    }

    #[test]
    fn an_entry_reads_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BankCache::new(dir.path().join("c"));
        let k = "ab".repeat(32);
        assert!(cache.get(&k).unwrap().is_none());
        cache.put(&k, &rows()).unwrap();
        let back = cache.get(&k).unwrap().unwrap();
        assert_eq!(back.labels, rows().labels);
        assert_eq!(back.rows, rows().rows);
    }

    #[test]
    fn every_damage_is_reported_as_corrupt_and_huge_sizes_allocate_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BankCache::new(dir.path());
        let k = "cd".repeat(32);
        cache.put(&k, &rows()).unwrap();
        let good = std::fs::read(cache.path(&k)).unwrap();
        let mut flipped = good.clone();
        let last_value = good.len() - 33;
        flipped[last_value] ^= 1;
        let mut huge = good.clone();
        huge[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut wide = good.clone();
        wide[48..52].copy_from_slice(&1u32.to_le_bytes());
        wide[52..56].copy_from_slice(&(MAX_DIM as u32).to_le_bytes());
        let mut other_key = good.clone();
        other_key[20] ^= 0xff;
        let cases: [(Vec<u8>, &str); 6] = [
            (good[..good.len() - 1].to_vec(), "the file has"),
            (flipped, "checksum"),
            (huge, "declares a [4294967295, 3] bank"),
            (wide, "declares 65640 bytes, the file has 128"),
            (other_key, "holds another key"),
            (b"short".to_vec(), "shorter than a header"),
        ];
        for (bytes, want) in cases {
            std::fs::write(cache.path(&k), &bytes).unwrap();
            let e = cache.get(&k).unwrap_err();
            assert!(matches!(e, CacheError::Corrupt { .. }), "{e}");
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
    }
}
