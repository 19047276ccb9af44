//! The on-disk form of an engine's state, so that open events, the novelty memory and example
//! sets survive a restart. Bytes in, bytes out: the caller reads and writes the file (atomically).
//!
//! Layout, little-endian: an 24-byte header — magic `EBTRIGS\n`, format version (u32), body
//! length (u64), CRC-32 of the body (u32) — then the body: sensor name, embedding width, the
//! triggers (name, kind, cooldown left, open event), the example sets (f32 rows), the novelty
//! memory (f16 rows, oldest first). Strings are a u32 length and UTF-8.
//!
//! Reading trusts nothing: the total length is checked against [`MAX_STATE_BYTES`] and the
//! header, the checksum before parsing, and every count against its limit and the bytes left
//! before anything is allocated for it, so a hostile or truncated file is a clear error.
//!
//! **An event open at a restart is closed**, not resumed: window numbers and the monotonic clock
//! restart with the daemon, and the time the daemon was down is unknown to the event. Restoring
//! returns an `end` (reason `restart`) for every event that was open when the state was saved,
//! with the first/last windows and peak it had; its trigger then starts its cooldown. Pending runs
//! and `stuck` run lengths are not saved (they start again); the recent-window ring is not saved.

use super::config::{TriggerKind, MAX_IGNORE_RECENT_WINDOWS, MAX_MEMORY_WINDOWS, MAX_NAME_CHARS};
use super::engine::{TriggerEngine, MAX_DIM};
use super::event::{EndReason, EventKind, OpenEvent, Phase, TriggerEvent, WindowRef};
use super::novelty::NoveltyMemory;
use super::scorer::{ExampleSet, MAX_EXAMPLES, MAX_EXAMPLE_SETS};
use super::stuck::StuckReason;
use crate::time::Timestamp;

/// Format version written.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: [u8; 8] = *b"EBTRIGS\n";
const HEADER_BYTES: usize = 24;
/// Most triggers saved per engine.
pub const MAX_TRIGGERS: usize = 1024;
/// Longest string (names, event ids).
const MAX_STRING_BYTES: usize = 1024;
/// Most novelty rows saved.
const MAX_NOVELTY_ROWS: usize = (MAX_MEMORY_WINDOWS + MAX_IGNORE_RECENT_WINDOWS) as usize;

/// Largest state an engine within the limits writes (and so the largest accepted): a reader can
/// refuse a larger file before reading it.
pub const MAX_STATE_BYTES: usize = {
    let string = 4 + MAX_STRING_BYTES;
    let window = 8 + 16 + 16;
    let event = string + 2 * window + 4 + 4 + 8 + 1;
    let trigger = string + 1 + 4 + 1 + event;
    let set = string + 4 + MAX_EXAMPLES * MAX_DIM * 4;
    HEADER_BYTES
        + string
        + 4
        + 4
        + MAX_TRIGGERS * trigger
        + 4
        + MAX_EXAMPLE_SETS * set
        + 4
        + MAX_NOVELTY_ROWS * MAX_DIM * 2
};

// A reader may hold a whole state in memory: keep the worst case modest (≈ 170 MiB now).
const _: () = assert!(MAX_STATE_BYTES < 192 << 20);

/// Why a saved state cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersistError {
    /// Not a trigger state file.
    #[error("not an edgebind trigger state (bad magic)")]
    Magic,
    /// Written by another format version.
    #[error(
        "trigger state format version {found} is not supported (this build reads {FORMAT_VERSION})"
    )]
    Version {
        /// Version in the file.
        found: u32,
    },
    /// Size does not match the header, or is beyond the limit.
    #[error("trigger state is {actual} bytes, expected {expected}")]
    Length {
        /// What the header (or the limit) allows.
        expected: u64,
        /// What there is.
        actual: u64,
    },
    /// The body is corrupt.
    #[error("trigger state checksum mismatch (file corrupt)")]
    Checksum,
    /// A field runs past the end, or a count is beyond its limit.
    #[error("trigger state: {what}: {message}")]
    Field {
        /// The field.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Saved by another sensor's engine.
    #[error("trigger state belongs to sensor {found:?}, not {expected:?}")]
    Sensor {
        /// This engine's sensor.
        expected: String,
        /// The file's.
        found: String,
    },
}

/// What restoring did.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    /// `end` messages (reason `restart`) for the events open when the state was saved.
    pub ended: Vec<TriggerEvent>,
    /// Novelty rows restored.
    pub novelty_windows: usize,
    /// Example sets restored.
    pub example_sets: usize,
    /// The saved embedding width, when it differs from the engine's: the memory and example sets
    /// were then dropped (a different model).
    pub dropped_for_width: Option<usize>,
}

struct SavedTrigger {
    name: String,
    kind: TriggerKind,
    cooldown_remaining: u32,
    open: Option<OpenEvent>,
}

fn kind_code(kind: TriggerKind) -> u8 {
    match kind {
        TriggerKind::Concept => 1,
        TriggerKind::Example => 2,
        TriggerKind::Novelty => 3,
        TriggerKind::Stuck => 4,
    }
}

fn kind_of(code: u8) -> Option<TriggerKind> {
    [
        TriggerKind::Concept,
        TriggerKind::Example,
        TriggerKind::Novelty,
        TriggerKind::Stuck,
    ]
    .into_iter()
    .find(|k| kind_code(*k) == code)
}

impl TriggerEngine {
    /// The engine's state in its on-disk form.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.string(&self.sensor);
        w.u32(self.dim as u32);
        w.u32(self.slots.len() as u32);
        for slot in &self.slots {
            w.string(&slot.spec.name);
            w.0.push(kind_code(slot.spec.kind()));
            w.u32(slot.machine.cooldown_remaining());
            match slot.machine.open_event() {
                None => w.0.push(0),
                Some(e) => {
                    w.0.push(1);
                    w.event(e);
                }
            }
        }
        w.u32(self.examples.len() as u32);
        for (name, set) in &self.examples {
            w.string(name);
            w.u32(set.len() as u32);
            set.rows()
                .flatten()
                .for_each(|v| w.0.extend(v.to_le_bytes()));
        }
        let mut rows: Vec<_> = self.memory.newest_first().collect();
        rows.reverse();
        w.u32(rows.len() as u32);
        rows.iter()
            .flat_map(|r| r.iter())
            .for_each(|v| w.0.extend(v.to_le_bytes()));
        let body = w.0;
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend(MAGIC);
        out.extend(FORMAT_VERSION.to_le_bytes());
        out.extend((body.len() as u64).to_le_bytes());
        out.extend(crc32fast::hash(&body).to_le_bytes());
        out.extend(body);
        out
    }

    /// Restores a state written by [`TriggerEngine::to_bytes`] into this freshly built engine:
    /// ends the events that were open, restores cooldowns of triggers with the same name and kind,
    /// the example sets and the novelty memory. Nothing changes on error.
    ///
    /// # Errors
    /// A file that is not a valid state of this sensor (each error says what is wrong).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<RestoreReport, PersistError> {
        let body = check_header(bytes)?;
        let mut r = Reader { bytes: body, at: 0 };
        let sensor = r.string("sensor")?;
        if sensor != self.sensor {
            return Err(PersistError::Sensor {
                expected: self.sensor.clone(),
                found: sensor,
            });
        }
        let dim = r.u32("dim")? as usize;
        if dim == 0 || dim > MAX_DIM {
            return Err(field("dim", format!("must be 1 to {MAX_DIM}, got {dim}")));
        }
        let count = r.count("triggers", MAX_TRIGGERS, 4 + 1 + 4 + 1)?;
        let mut triggers = Vec::with_capacity(count);
        for _ in 0..count {
            triggers.push(r.trigger()?);
        }
        let count = r.count("example sets", MAX_EXAMPLE_SETS, 4 + 4)?;
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r.string("example set name")?;
            let rows = r.count("example set rows", MAX_EXAMPLES, dim * 4)?;
            let values: Vec<f32> = r
                .take(rows * dim * 4, "example set rows")?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let set = ExampleSet::new(dim, values.chunks_exact(dim))
                .ok_or_else(|| field("example set rows", format!("set {name:?} is not usable")))?;
            sets.push((name, set));
        }
        let rows = r.count("novelty rows", MAX_NOVELTY_ROWS, dim * 2)?;
        let memory: Vec<half::f16> = r
            .take(rows * dim * 2, "novelty rows")?
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        if r.at != body.len() {
            return Err(field(
                "body",
                format!("{} bytes left over", body.len() - r.at),
            ));
        }
        Ok(self.apply(triggers, sets, &memory, dim))
    }

    fn apply(
        &mut self,
        triggers: Vec<SavedTrigger>,
        sets: Vec<(String, ExampleSet)>,
        memory: &[half::f16],
        dim: usize,
    ) -> RestoreReport {
        let mut ended = Vec::new();
        for saved in triggers {
            let slot = self
                .slots
                .iter_mut()
                .find(|s| s.spec.name == saved.name && s.spec.kind() == saved.kind);
            let cooldown = match (&saved.open, &slot) {
                (Some(_), Some(s)) => s.spec.event.cooldown_windows,
                _ => saved.cooldown_remaining,
            };
            // A trigger that already moved on since the engine was built keeps its own state.
            if let Some(slot) = slot.filter(|s| s.machine.phase() == Phase::Idle) {
                slot.machine.set_cooldown(cooldown);
            }
            if let Some(event) = saved.open {
                ended.push(TriggerEvent {
                    kind: EventKind::End,
                    sensor: self.sensor.clone(),
                    trigger: saved.name,
                    trigger_kind: saved.kind,
                    seq: None,
                    score: None,
                    event,
                    end_reason: Some(EndReason::Restart),
                });
            }
        }
        let mut report = RestoreReport {
            ended,
            novelty_windows: 0,
            example_sets: 0,
            dropped_for_width: (dim != self.dim).then_some(dim),
        };
        if dim == self.dim {
            report.example_sets = sets.len();
            self.examples = sets.into_iter().collect();
            self.memory =
                NoveltyMemory::from_rows(dim, self.memory.capacity(), memory.chunks_exact(dim));
            report.novelty_windows = self.memory.len();
        }
        report
    }
}

fn field(what: &'static str, message: String) -> PersistError {
    PersistError::Field { what, message }
}

fn check_header(bytes: &[u8]) -> Result<&[u8], PersistError> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(PersistError::Length {
            expected: MAX_STATE_BYTES as u64,
            actual: bytes.len() as u64,
        });
    }
    if bytes.len() < HEADER_BYTES || bytes[..8] != MAGIC {
        return Err(PersistError::Magic);
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(PersistError::Version { found: version });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let declared = u64::from_le_bytes(len);
    let body = &bytes[HEADER_BYTES..];
    if declared != body.len() as u64 {
        return Err(PersistError::Length {
            expected: declared.saturating_add(HEADER_BYTES as u64),
            actual: bytes.len() as u64,
        });
    }
    if crc32fast::hash(body) != u32_at(20) {
        return Err(PersistError::Checksum);
    }
    Ok(body)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend(v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend(v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        // Names are checked to be short; an event id is sensor + name + a number.
        let s = &s.as_bytes()[..s.len().min(MAX_STRING_BYTES)];
        self.u32(s.len() as u32);
        self.0.extend(s);
    }
    fn timestamp(&mut self, t: Timestamp) {
        self.u64(t.mono_ns);
        self.0.extend(t.utc_ns.to_le_bytes());
    }
    fn window(&mut self, w: &WindowRef) {
        self.u64(w.seq);
        self.timestamp(w.start);
        self.timestamp(w.end);
    }
    fn event(&mut self, e: &OpenEvent) {
        self.string(&e.id);
        self.window(&e.first);
        self.window(&e.last);
        self.0.extend(e.peak_score.to_le_bytes());
        self.0.extend(e.published_peak.to_le_bytes());
        self.u64(e.windows);
        self.0.push(e.stuck_reason.map_or(0, StuckReason::code));
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PersistError> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(field(what, format!("needs {n} bytes, {left} left")));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PersistError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, PersistError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, PersistError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, PersistError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, PersistError> {
        let v = f32::from_le_bytes(self.array(what)?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(field(what, format!("must be finite, got {v}")))
        }
    }
    /// A count of items of at least `item_bytes` each, within `max` and the bytes left.
    fn count(
        &mut self,
        what: &'static str,
        max: usize,
        item_bytes: usize,
    ) -> Result<usize, PersistError> {
        let n = self.u32(what)? as usize;
        let left = self.bytes.len() - self.at;
        if n > max {
            return Err(field(what, format!("{n} is more than the limit of {max}")));
        }
        if n.saturating_mul(item_bytes) > left {
            return Err(field(
                what,
                format!("{n} need more than the {left} bytes left"),
            ));
        }
        Ok(n)
    }
    fn string(&mut self, what: &'static str) -> Result<String, PersistError> {
        let n = self.count(what, MAX_STRING_BYTES, 1)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| field(what, "is not UTF-8".into()))
    }
    fn timestamp(&mut self, what: &'static str) -> Result<Timestamp, PersistError> {
        Ok(Timestamp {
            mono_ns: self.u64(what)?,
            utc_ns: i64::from_le_bytes(self.array(what)?),
        })
    }
    fn window(&mut self, what: &'static str) -> Result<WindowRef, PersistError> {
        Ok(WindowRef {
            seq: self.u64(what)?,
            start: self.timestamp(what)?,
            end: self.timestamp(what)?,
        })
    }
    fn trigger(&mut self) -> Result<SavedTrigger, PersistError> {
        let name = self.string("trigger name")?;
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(field(
                "trigger name",
                format!("longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        let code = self.u8("trigger kind")?;
        let kind =
            kind_of(code).ok_or_else(|| field("trigger kind", format!("unknown code {code}")))?;
        let cooldown_remaining = self.u32("cooldown")?;
        let open = match self.u8("open event flag")? {
            0 => None,
            1 => Some(self.event()?),
            other => {
                return Err(field(
                    "open event flag",
                    format!("must be 0 or 1, got {other}"),
                ))
            }
        };
        Ok(SavedTrigger {
            name,
            kind,
            cooldown_remaining,
            open,
        })
    }
    fn event(&mut self) -> Result<OpenEvent, PersistError> {
        let id = self.string("event id")?;
        let first = self.window("event first window")?;
        let last = self.window("event last window")?;
        let peak_score = self.f32("event peak")?;
        let published_peak = self.f32("event published peak")?;
        let windows = self.u64("event windows")?;
        let code = self.u8("stuck reason")?;
        let stuck_reason = match code {
            0 => None,
            c => Some(
                StuckReason::from_code(c)
                    .ok_or_else(|| field("stuck reason", format!("unknown code {c}")))?,
            ),
        };
        Ok(OpenEvent {
            id,
            first,
            last,
            peak_score,
            published_peak,
            windows,
            stuck_reason,
        })
    }
}
