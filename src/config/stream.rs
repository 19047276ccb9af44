//! What every `[[sources]]` table has, whatever its `type`: the sensor's name, the queue
//! between the source and its stream, and how the stream is cut (window and hop, or one frame per
//! interval). A source config is a [`Stream<K>`]: these common keys plus the kind's own settings
//! `K`.
//!
//! serde's `flatten` cannot be combined with `deny_unknown_fields`, so [`Stream<K>`] has one
//! hand-written `Deserialize`: it takes the common keys as they come and hands every other key
//! to `K`'s own (strict) `Deserialize`, through the same map, so that every error keeps the
//! position of its key or value (`config::parse` points at them).

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroUsize;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::limits::{self, Limit, OutOfRange};
use super::ranged::{HopMs, IntervalMs, QueueCapacity, SensorName, WindowMs};
use super::{SkipUnchanged, WhenFull};
use crate::modality::Cut;
use crate::Modality;

/// How fast a replay source plays its recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaySpeed {
    /// Paced by the recording's sample rate, as a live sensor would deliver it.
    Realtime,
    /// As fast as the pipeline accepts it.
    Max,
}

/// Default `queue_capacity` of sample sources: blocks waiting for the windower.
pub const DEFAULT_SAMPLE_QUEUE: NonZeroUsize = match NonZeroUsize::new(64) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// Default `queue_capacity` of camera sources: frames waiting for preprocessing.
pub const DEFAULT_FRAME_QUEUE: NonZeroUsize = match NonZeroUsize::new(4) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// The queue between a source and its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Items (sample blocks or frames) that may wait.
    pub capacity: QueueCapacity,
    /// What happens when it is full.
    pub when_full: WhenFull,
}

/// The keys every source has.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamCommon {
    /// The sensor's name (topic segment, metrics label).
    pub name: SensorName,
    /// The queue to its stream.
    pub queue: QueueSettings,
    /// Reuse the last embedding while the model input stays close to the last embedded one
    /// (`None`: every window is embedded).
    pub skip_unchanged: Option<SkipUnchanged>,
}

/// How a stream is cut into model inputs, whatever the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windowing {
    /// Slot-aligned windows of samples.
    Samples {
        /// Window length.
        window_ms: WindowMs,
        /// Step between window starts.
        hop_ms: HopMs,
    },
    /// One frame per interval.
    Frames {
        /// The interval (0: every frame).
        interval_ms: IntervalMs,
    },
}

/// The windowing keys of a sample stream: `window_ms`, `hop_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleWindow {
    /// Window length (the modality's default: ImageBind's clip).
    pub window_ms: WindowMs,
    /// Step between window starts.
    pub hop_ms: HopMs,
}

/// The windowing key of a camera stream: `interval_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInterval {
    /// One frame is embedded per interval (the others are counted as skipped); 0 = every frame.
    pub interval_ms: IntervalMs,
}

/// The windowing keys of one family of streams.
pub trait CutKeys: fmt::Debug + Clone + Copy + PartialEq + Send + Sync + 'static {
    /// The keys.
    const KEYS: &'static [&'static str];
    /// The range of `queue_capacity` (sample blocks or frames).
    const QUEUE_LIMIT: &'static Limit<u64>;
    /// The defaults of the modality table.
    fn defaults(modality: Modality) -> Self;
    /// Reads the value of `key` (one of [`KEYS`](Self::KEYS)).
    ///
    /// # Errors
    /// The value's type or range error.
    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        modality: Modality,
        map: &mut A,
    ) -> Result<(), A::Error>;
    /// The keys in effect.
    fn windowing(&self) -> Windowing;
}

/// Window and hop of a modality the table cuts in frames: none really (a registry test holds
/// every kind's windowing to its modality's).
const NO_WINDOW_MS: u64 = 1000;

impl CutKeys for SampleWindow {
    const KEYS: &'static [&'static str] = &["window_ms", "hop_ms"];
    const QUEUE_LIMIT: &'static Limit<u64> = &limits::SAMPLE_QUEUE;

    fn defaults(modality: Modality) -> Self {
        let (window_ms, hop_ms) = match modality.spec().cut {
            Cut::Samples {
                window_ms, hop_ms, ..
            } => (window_ms, hop_ms),
            Cut::Frames { .. } => (NO_WINDOW_MS, NO_WINDOW_MS),
        };
        Self {
            window_ms: WindowMs::trusted(window_ms),
            hop_ms: HopMs::trusted(hop_ms),
        }
    }

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        modality: Modality,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "window_ms" => {
                let limit = match modality.spec().cut {
                    Cut::Samples { window_limit, .. } => window_limit,
                    Cut::Frames { .. } => &limits::WINDOW_MS,
                };
                self.window_ms = map.next_value_seed(Checked(|v| WindowMs::new(v, limit)))?;
            }
            "hop_ms" => self.hop_ms = map.next_value()?,
            other => return Err(de::Error::unknown_field(other, Self::KEYS)),
        }
        Ok(())
    }

    fn windowing(&self) -> Windowing {
        Windowing::Samples {
            window_ms: self.window_ms,
            hop_ms: self.hop_ms,
        }
    }
}

impl CutKeys for FrameInterval {
    const KEYS: &'static [&'static str] = &["interval_ms"];
    const QUEUE_LIMIT: &'static Limit<u64> = &limits::FRAME_QUEUE;

    fn defaults(modality: Modality) -> Self {
        let interval_ms = match modality.spec().cut {
            Cut::Frames { interval_ms } => interval_ms,
            Cut::Samples { .. } => NO_WINDOW_MS,
        };
        Self {
            interval_ms: IntervalMs::trusted(interval_ms),
        }
    }

    fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        _modality: Modality,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match key {
            "interval_ms" => self.interval_ms = map.next_value()?,
            other => return Err(de::Error::unknown_field(other, Self::KEYS)),
        }
        Ok(())
    }

    fn windowing(&self) -> Windowing {
        Windowing::Frames {
            interval_ms: self.interval_ms,
        }
    }
}

/// A source kind's own settings: what its `[[sources]]` tables hold besides the common keys, and
/// the defaults of those.
pub trait StreamKind:
    for<'de> Deserialize<'de> + fmt::Debug + Clone + Send + Sync + 'static
{
    /// The `type` of its tables.
    const TYPE: &'static str;
    /// The modality its stream feeds.
    const MODALITY: Modality;
    /// How its stream is cut.
    type Cut: CutKeys;
    /// Default capacity of the queue to its stream.
    const QUEUE_CAPACITY: NonZeroUsize;
    /// Default policy of that queue (`block` for replays: nothing is lost; `drop_oldest` for
    /// devices, which cannot wait).
    const WHEN_FULL: WhenFull;
}

/// One source's configuration: the common keys and the kind's own settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream<K: StreamKind> {
    /// Name and queue.
    pub common: StreamCommon,
    /// How the stream is cut.
    pub cut: K::Cut,
    /// The kind's own settings.
    pub settings: K,
}

impl<K: StreamKind> Stream<K> {
    /// The sensor's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.common.name.as_str()
    }
}

impl<'de, K: StreamKind> Deserialize<'de> for Stream<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StreamVisitor(PhantomData))
    }
}

/// A value read as a whole number and checked inside the value's own deserialization, so that
/// an error is placed at the value.
struct Checked<F>(F);

impl<'de, T, F: FnOnce(u64) -> Result<T, OutOfRange>> DeserializeSeed<'de> for Checked<F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        (self.0)(u64::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// The common keys read so far.
struct Common<K: StreamKind> {
    name: Option<SensorName>,
    capacity: Option<QueueCapacity>,
    when_full: Option<WhenFull>,
    skip_unchanged: Option<SkipUnchanged>,
    cut: K::Cut,
}

impl<K: StreamKind> Common<K> {
    const KEYS: [&'static str; 4] = ["name", "queue_capacity", "when_full", "skip_unchanged"];

    fn is_common(key: &str) -> bool {
        Self::KEYS.contains(&key) || <K::Cut as CutKeys>::KEYS.contains(&key)
    }

    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "name" => self.name = Some(map.next_value()?),
            "queue_capacity" => {
                let limit = <K::Cut as CutKeys>::QUEUE_LIMIT;
                self.capacity =
                    Some(map.next_value_seed(Checked(|v| QueueCapacity::new(v, limit)))?);
            }
            "when_full" => self.when_full = Some(map.next_value()?),
            "skip_unchanged" => self.skip_unchanged = Some(map.next_value()?),
            other => self.cut.read(other, K::MODALITY, map)?,
        }
        Ok(())
    }
}

struct StreamVisitor<K>(PhantomData<K>);

impl<'de, K: StreamKind> Visitor<'de> for StreamVisitor<K> {
    type Value = Stream<K>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a [[sources]] table of type {}", K::TYPE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Stream<K>, A::Error> {
        let mut common = Common::<K> {
            name: None,
            capacity: None,
            when_full: None,
            skip_unchanged: None,
            cut: <K::Cut as CutKeys>::defaults(K::MODALITY),
        };
        let settings = K::deserialize(Rest {
            map: &mut map,
            common: &mut common,
        })?;
        let name = common
            .name
            .ok_or_else(|| de::Error::missing_field("name"))?;
        Ok(Stream {
            common: StreamCommon {
                name,
                queue: QueueSettings {
                    capacity: common
                        .capacity
                        .unwrap_or(QueueCapacity::trusted(K::QUEUE_CAPACITY)),
                    when_full: common.when_full.unwrap_or(K::WHEN_FULL),
                },
                skip_unchanged: common.skip_unchanged,
            },
            cut: common.cut,
            settings,
        })
    }
}

/// The source table as `K` sees it: the same map, the common keys taken out.
struct Rest<'a, A, K: StreamKind> {
    map: &'a mut A,
    common: &'a mut Common<K>,
}

impl<'de, A: MapAccess<'de>, K: StreamKind> Deserializer<'de> for Rest<'_, A, K> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(RestMap {
            map: self.map,
            common: self.common,
            fields: &[],
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_map(RestMap {
            map: self.map,
            common: self.common,
            fields,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct RestMap<'a, A, K: StreamKind> {
    map: &'a mut A,
    common: &'a mut Common<K>,
    /// `K`'s keys (empty: take whatever is not common).
    fields: &'static [&'static str],
}

impl<'de, A: MapAccess<'de>, K: StreamKind> MapAccess<'de> for RestMap<'_, A, K> {
    type Error = A::Error;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let mut seed = seed;
        loop {
            let routed = self.map.next_key_seed(Router::<S, K> {
                seed,
                fields: self.fields,
                kind: PhantomData,
            })?;
            match routed {
                None => return Ok(None),
                Some(Routed::Own(key)) => return Ok(Some(key)),
                Some(Routed::Common(key, back)) => {
                    self.common.read(&key, self.map)?;
                    seed = back;
                }
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.map.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Where a key goes: to the common keys (with `K`'s key seed handed back unused), or to `K`.
enum Routed<S, V> {
    Common(String, S),
    Own(V),
}

/// Reads a key inside the map's own key deserialization (so that an unknown key is placed at
/// the key) and routes it.
struct Router<S, K> {
    seed: S,
    fields: &'static [&'static str],
    kind: PhantomData<K>,
}

impl<'de, S: DeserializeSeed<'de>, K: StreamKind> DeserializeSeed<'de> for Router<S, K> {
    type Value = Routed<S, S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let key = d.deserialize_str(KeyText)?;
        if Common::<K>::is_common(&key) {
            return Ok(Routed::Common(key, self.seed));
        }
        if !self.fields.is_empty() && !self.fields.contains(&key.as_str()) {
            // serde's own wording, listing every key of the table (common ones included), so
            // that "did you mean" finds `window_ms` for `windw_ms`.
            let expected: Vec<String> = Common::<K>::KEYS
                .iter()
                .chain(<K::Cut as CutKeys>::KEYS)
                .chain(self.fields)
                .map(|k| format!("`{k}`"))
                .collect();
            return Err(de::Error::custom(format!(
                "unknown field `{key}`, expected one of {}",
                expected.join(", ")
            )));
        }
        self.seed
            .deserialize(IntoDeserializer::<D::Error>::into_deserializer(key))
            .map(Routed::Own)
    }
}

struct KeyText;

impl Visitor<'_> for KeyText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A kind with one required and one optional key.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Probe {
        path: String,
        #[serde(default, rename = "loop")]
        looping: bool,
    }

    impl StreamKind for Probe {
        const TYPE: &'static str = "probe";
        const MODALITY: Modality = Modality::Audio;
        type Cut = SampleWindow;
        const QUEUE_CAPACITY: NonZeroUsize = NonZeroUsize::MIN;
        const WHEN_FULL: WhenFull = WhenFull::Block;
    }

    fn read(text: &str) -> Result<Stream<Probe>, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn common_keys_and_the_kinds_own_come_from_one_table_in_any_order() {
        let s = read("window_ms = 3000\npath = \"a.wav\"\nname = \"mic\"\nloop = true\n").unwrap();
        assert_eq!(s.name(), "mic");
        assert_eq!(s.cut.window_ms.get(), 3000);
        // Defaults: the modality table's hop, the kind's queue.
        assert_eq!(s.cut.hop_ms.get(), 1000);
        assert_eq!(s.common.queue.capacity.get(), NonZeroUsize::MIN);
        assert_eq!(s.common.queue.when_full, WhenFull::Block);
        assert_eq!(s.common.skip_unchanged, None);
        assert_eq!(
            s.settings,
            Probe {
                path: "a.wav".into(),
                looping: true
            }
        );
    }

    #[test]
    fn skip_unchanged_is_a_common_key_checked_at_its_value() {
        let s = read("name = \"mic\"\npath = \"a.wav\"\nskip_unchanged = { distance = \"max_abs\", threshold = 0.05 }\n").unwrap();
        let skip = s.common.skip_unchanged.unwrap();
        assert_eq!(skip.distance, crate::config::InputDistance::MaxAbs);
        assert_eq!(skip.threshold.get(), 0.05);
        let text = "name = \"mic\"\npath = \"a.wav\"\n[skip_unchanged]\ndistance = \"rms\"\nthreshold = -1.0\n";
        let e = read(text).unwrap_err();
        assert!(
            e.message().starts_with("-1 is less than the 0 allowed"),
            "{e}"
        );
        let at = text.find("-1.0").unwrap();
        assert_eq!(e.span(), Some(at..at + 4));
    }

    #[test]
    fn errors_keep_their_place_and_serdes_words() {
        // A window under audio's 25 ms, at its value.
        let text = "name = \"mic\"\npath = \"a.wav\"\nwindow_ms = 10\n";
        let e = read(text).unwrap_err();
        assert!(
            e.message()
                .starts_with("10 ms is less than the 25 ms allowed"),
            "{e}"
        );
        let at = text.find("10").unwrap();
        assert_eq!(e.span(), Some(at..at + 2));
        // An unknown key, at the key, with every key of the table to suggest from.
        let text = "name = \"mic\"\npath = \"a.wav\"\nwindw_ms = 10\n";
        let e = read(text).unwrap_err();
        assert!(e.message().starts_with("unknown field `windw_ms`"), "{e}");
        assert!(e.message().contains("`window_ms`"), "{e}");
        assert!(e.message().contains("`loop`"), "{e}");
        let at = text.find("windw_ms").unwrap();
        assert_eq!(e.span(), Some(at..at + "windw_ms".len()));
        // A frame key does not belong to a sample stream.
        let e = read("name = \"mic\"\npath = \"a.wav\"\ninterval_ms = 10\n").unwrap_err();
        assert!(
            e.message().starts_with("unknown field `interval_ms`"),
            "{e}"
        );
        // Missing keys, the kind's and the common name.
        let e = read("name = \"mic\"\n").unwrap_err();
        assert_eq!(e.message(), "missing field `path`");
        let e = read("path = \"a.wav\"\n").unwrap_err();
        assert_eq!(e.message(), "missing field `name`");
        // A queue bounded as sample blocks.
        let e = read("name = \"m\"\npath = \"a\"\nqueue_capacity = 5000\n").unwrap_err();
        assert!(
            e.message()
                .starts_with("5000 blocks is more than the 4096 blocks allowed"),
            "{e}"
        );
    }
}
