//! Values people write more than one way: a size as bytes or with a unit (`"512MiB"`), and
//! MQTT's enumerated settings — `qos = 1` and `protocol = 5` as often as the quoted forms the
//! file documents. Every form is read; anything else is refused with what is allowed, in words.

use std::fmt;

use serde::de::{self, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Qos {
    /// At most once.
    #[serde(rename = "0")]
    AtMostOnce,
    /// At least once (acknowledged by PUBACK).
    #[serde(rename = "1")]
    AtLeastOnce,
}

/// MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum MqttProtocol {
    /// MQTT 3.1.1 (every broker speaks it).
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5: messages also carry a content type and user properties (device, sensor,
    /// modality, schema version).
    #[serde(rename = "5")]
    V5,
}

/// Reads one of `names` written as text, or as the whole number it spells.
struct Named<T: 'static> {
    expecting: &'static str,
    names: &'static [(&'static str, T)],
}

impl<T: Copy> Named<T> {
    fn find<E: de::Error>(&self, text: &str, unexpected: Unexpected<'_>) -> Result<T, E> {
        self.names
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, v)| *v)
            .ok_or_else(|| E::invalid_value(unexpected, &self.expecting))
    }
}

impl<T: Copy> Visitor<'_> for &Named<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.find(v, Unexpected::Str(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.find(&v.to_string(), Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.find(&v.to_string(), Unexpected::Unsigned(v))
    }
}

const QOS: Named<Qos> = Named {
    expecting: "0 or 1",
    names: &[("0", Qos::AtMostOnce), ("1", Qos::AtLeastOnce)],
};

const PROTOCOL: Named<MqttProtocol> = Named {
    expecting: "\"3.1.1\" or 5",
    names: &[("3.1.1", MqttProtocol::V311), ("5", MqttProtocol::V5)],
};

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(&QOS)
    }
}

impl<'de> Deserialize<'de> for MqttProtocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(&PROTOCOL)
    }
}

/// A size in bytes: an integer, or a string with a unit (`"1GiB"`, `"512MiB"`, `"64KiB"`,
/// `"10MB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"<number>[B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB]"`.
    ///
    /// # Errors
    /// A message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a size like \"1GiB\" or \"512MiB\""))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
                ))
            }
        };
        let bytes = num * mult as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!("{text:?} is too large"));
        }
        Ok(Self(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: a whole number of bytes, or text like \"512MiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                ByteSize::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        qos: Option<Qos>,
        protocol: Option<MqttProtocol>,
    }

    fn read(text: &str) -> Result<T, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn numbers_and_quoted_names_are_both_read() {
        for (text, qos) in [
            ("qos = 1", Qos::AtLeastOnce),
            ("qos = \"0\"", Qos::AtMostOnce),
        ] {
            assert_eq!(read(text).unwrap().qos, Some(qos), "{text}");
        }
        for (text, p) in [
            ("protocol = 5", MqttProtocol::V5),
            ("protocol = \"5\"", MqttProtocol::V5),
            ("protocol = \"3.1.1\"", MqttProtocol::V311),
        ] {
            assert_eq!(read(text).unwrap().protocol, Some(p), "{text}");
        }
    }

    #[test]
    fn other_values_are_refused_with_the_allowed_ones() {
        assert_eq!(
            read("qos = 2").unwrap_err(),
            "invalid value: integer `2`, expected 0 or 1"
        );
        assert_eq!(
            read("protocol = 3").unwrap_err(),
            "invalid value: integer `3`, expected \"3.1.1\" or 5"
        );
        assert!(read("qos = true").unwrap_err().contains("expected 0 or 1"));
    }
}
