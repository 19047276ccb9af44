//! The source kinds, listed once: the `type` each `[[sources]]` table may have, the settings it
//! is read into, and the one `match` that turns a configured source into a
//! [`SourceKind`]. A new kind is its module plus one line here.

use serde::{Deserialize, Deserializer};

use super::kind::SourceKind;
use crate::config::{Stream, StreamKind};

/// Declares [`SourceConfig`], its variants' settings and the table of `type` names.
macro_rules! source_kinds {
    ($( $(#[$doc:meta])* $variant:ident($settings:ty), )*) => {
        /// One sensor source of the configuration: the common keys and its kind's settings.
        #[derive(Debug, Clone)]
        pub enum SourceConfig {
            $( $(#[$doc])* $variant(Stream<$settings>), )*
        }

        /// The source types, as written in `type`.
        pub const SOURCE_TYPES: &[&str] = &[$( <$settings as StreamKind>::TYPE, )*];

        impl SourceConfig {
            /// The kind behind this source.
            #[must_use]
            pub fn kind(&self) -> &dyn SourceKind {
                match self {
                    $( Self::$variant(c) => c, )*
                }
            }

            /// Reads a table of type `type_name` (the `type` key taken out); `None` for a type
            /// that is not one of [`SOURCE_TYPES`].
            pub fn read<'de, D: Deserializer<'de>>(
                type_name: &str,
                table: D,
            ) -> Option<Result<Self, D::Error>> {
                $(
                    if type_name == <$settings as StreamKind>::TYPE {
                        return Some(Stream::<$settings>::deserialize(table).map(Self::$variant));
                    }
                )*
                None
            }
        }
    };
}

source_kinds! {
    /// Replays an IMU recording (CSV or `.npy`) as if it were a live sensor.
    ImuReplay(super::imu_replay::config::ImuReplaySettings),
    /// Replays a stack of thermal frames (`.npy` uint8 or uint16) as if it were a camera.
    ThermalReplay(super::frame_replay::config::ThermalReplaySettings),
    /// Replays a stack of depth frames (`.npy` uint16 depth units) as if it were a camera.
    DepthReplay(super::frame_replay::config::DepthReplaySettings),
    /// Replays a WAV file as if it were a microphone.
    AudioReplay(super::audio_replay::config::AudioReplaySettings),
    /// An IMU on a serial port (USB-UART, on-board UART) speaking CSV lines or WitMotion frames.
    ImuSerial(super::imu_serial::config::ImuSerialSettings),
    /// A thermal camera through V4L2 (FLIR Lepton on PureThermal, InfiRay P2 Pro / Topdon
    /// TC001); needs the `v4l2` Cargo feature at run time.
    V4l2Thermal(super::v4l2_thermal::config::V4l2ThermalSettings),
    /// An Intel RealSense depth camera, or a RealSense recording played back (needs a build
    /// with the `realsense` feature).
    Realsense(super::realsense::config::RealsenseSettings),
    /// A microphone through ALSA (cpal); needs the `alsa` Cargo feature at run time.
    AlsaAudio(super::alsa_audio::config::AlsaAudioSettings),
    /// Replays PNG/JPEG pictures or a `.npy` RGB stack as if it were a colour camera.
    VisionReplay(super::vision_replay::config::VisionReplaySettings),
    /// A colour camera through V4L2 (`YUYV`, `UYVY`, `MJPG`); needs the `v4l2` Cargo feature at
    /// run time.
    V4l2Camera(super::v4l2_camera::config::V4l2CameraSettings),
}

impl SourceConfig {
    /// The sensor name of its (first) stream.
    #[must_use]
    pub fn name(&self) -> &str {
        self.kind().name()
    }

    /// The modality of its (first) stream.
    #[must_use]
    pub fn modality(&self) -> crate::Modality {
        self.kind().modality()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::Windowing;
    use crate::modality::Cut;

    /// The smallest table of each type.
    fn minimal(type_name: &str) -> &'static str {
        match type_name {
            "imu_replay" | "thermal_replay" | "depth_replay" | "audio_replay" | "vision_replay" => {
                "name = \"s\"\npath = \"x\"\n"
            }
            "imu_serial" => {
                "name = \"s\"\npath = \"/dev/x\"\nprotocol = \"witmotion\"\nsample_rate_hz = 100.0\n"
            }
            "v4l2_thermal" | "v4l2_camera" => "name = \"s\"\ndevice = \"/dev/video0\"\n",
            _ => "name = \"s\"\n",
        }
    }

    #[test]
    fn every_kind_is_read_by_its_type_and_cut_as_its_modality_says() {
        for &type_name in SOURCE_TYPES {
            let table = toml::de::Deserializer::parse(minimal(type_name)).unwrap();
            let source = SourceConfig::read(type_name, table).unwrap().unwrap();
            let kind = source.kind();
            assert_eq!(kind.type_name(), type_name);
            let queue = kind.common().queue.capacity.get().get() as u64;
            match (kind.windowing(), kind.modality().spec().cut) {
                (Windowing::Samples { .. }, Cut::Samples { .. }) => {
                    assert!(
                        crate::config::limits::SAMPLE_QUEUE.contains(queue),
                        "{type_name}"
                    );
                }
                (Windowing::Frames { .. }, Cut::Frames { .. }) => {
                    assert!(
                        crate::config::limits::FRAME_QUEUE.contains(queue),
                        "{type_name}"
                    );
                }
                _ => panic!("{type_name}: cut unlike its modality"),
            }
        }
        assert!(
            SourceConfig::read("imu_replayy", toml::de::Deserializer::parse("").unwrap()).is_none()
        );
    }
}
