//! Pure format negotiation: from what a camera offers (FourCC codes and frame sizes, as
//! `VIDIOC_ENUM_FMT` / `VIDIOC_ENUM_FRAMESIZES` report them) and what the config asks for, the
//! format and size to set, or an error that lists what the camera offers.

use std::fmt;

use crate::sources::thermal_decode::{FrameLayout, PixelFormat};

/// Frame sizes a camera offers for one format: one discrete size (`min == max`) or a stepwise
/// range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// Smallest width, pixels.
    pub min_width_px: u32,
    /// Largest width, pixels.
    pub max_width_px: u32,
    /// Width step (1 for a discrete size).
    pub step_width_px: u32,
    /// Smallest height, pixels.
    pub min_height_px: u32,
    /// Largest height, pixels.
    pub max_height_px: u32,
    /// Height step (1 for a discrete size).
    pub step_height_px: u32,
}

impl SizeRange {
    /// One discrete size.
    #[must_use]
    pub const fn discrete(width_px: u32, height_px: u32) -> Self {
        Self {
            min_width_px: width_px,
            max_width_px: width_px,
            step_width_px: 1,
            min_height_px: height_px,
            max_height_px: height_px,
            step_height_px: 1,
        }
    }

    /// Whether `width_px` x `height_px` is one of the sizes.
    #[must_use]
    pub fn contains(&self, width_px: u32, height_px: u32) -> bool {
        let fits = |v: u32, min: u32, max: u32, step: u32| {
            (min..=max).contains(&v) && (v - min) % step.max(1) == 0
        };
        fits(
            width_px,
            self.min_width_px,
            self.max_width_px,
            self.step_width_px,
        ) && fits(
            height_px,
            self.min_height_px,
            self.max_height_px,
            self.step_height_px,
        )
    }
}

impl fmt::Display for SizeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min_width_px == self.max_width_px && self.min_height_px == self.max_height_px {
            write!(f, "{}x{}", self.min_width_px, self.min_height_px)
        } else {
            write!(
                f,
                "{}x{}-{}x{} step {}/{}",
                self.min_width_px,
                self.min_height_px,
                self.max_width_px,
                self.max_height_px,
                self.step_width_px,
                self.step_height_px
            )
        }
    }
}

/// One format a camera offers, with its sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormat {
    /// The FourCC code (any, also ones edgebind cannot decode: `MJPG`, `RGBP`, …).
    pub fourcc: [u8; 4],
    /// Its frame sizes (empty when the driver does not enumerate them).
    pub sizes: Vec<SizeRange>,
}

impl fmt::Display for OfferedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'", String::from_utf8_lossy(&self.fourcc))?;
        if !self.sizes.is_empty() {
            let sizes: Vec<String> = self.sizes.iter().map(ToString::to_string).collect();
            write!(f, " {}", sizes.join(" "))?;
        }
        Ok(())
    }
}

/// What the config asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatRequest {
    /// A format, or `None` for the best one offered.
    pub pixel_format: Option<PixelFormat>,
    /// How the rows are used (also decides which sizes fit).
    pub layout: FrameLayout,
    /// `(width, height)`, or `None` for the largest size that fits the layout.
    pub size_px: Option<(u32, u32)>,
}

/// The format and size to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormatChoice<F = PixelFormat> {
    /// Pixel format.
    pub format: F,
    /// Width, pixels.
    pub width_px: u32,
    /// Height, pixels (telemetry rows or both halves of a split frame included).
    pub height_px: u32,
}

/// The camera offers nothing that satisfies the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("does not offer {wanted}; it offers {}", offered_list(.offered))]
pub struct NegotiationError {
    /// What was looked for.
    pub wanted: String,
    /// Everything the camera offers.
    pub offered: Vec<OfferedFormat>,
}

fn offered_list(offered: &[OfferedFormat]) -> String {
    if offered.is_empty() {
        return "no capture format".into();
    }
    offered
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Formats tried when none is configured, best first: 16-bit radiometric data, then 8-bit
/// greyscale, then the luma of packed YUV (`UYVY` on PureThermal is colourised).
const PREFERENCE: [PixelFormat; 4] = [
    PixelFormat::Y16,
    PixelFormat::Grey,
    PixelFormat::Yuyv,
    PixelFormat::Uyvy,
];

/// Whether a buffer of this size can be decoded with `layout` (the decoder's rules).
#[must_use]
pub fn fits_layout(layout: FrameLayout, width_px: u32, height_px: u32) -> bool {
    if width_px == 0 || height_px == 0 {
        return false;
    }
    match layout {
        FrameLayout::Plain => true,
        FrameLayout::Lepton { telemetry_rows } => {
            let image_rows = width_px / 4 * 3;
            width_px % 4 == 0
                && (height_px == image_rows
                    || image_rows.checked_add(telemetry_rows) == Some(height_px))
        }
        FrameLayout::InfiRaySplit => height_px % 2 == 0,
    }
}

/// Picks the format and size to set.
///
/// # Errors
/// [`NegotiationError`] listing what the camera offers when nothing fits.
pub fn choose(
    offered: &[OfferedFormat],
    request: &FormatRequest,
) -> Result<FormatChoice, NegotiationError> {
    let candidates: Vec<PixelFormat> = match (request.pixel_format, request.layout) {
        (Some(f), _) => vec![f],
        (None, FrameLayout::InfiRaySplit) => vec![PixelFormat::Yuyv],
        (None, _) => PREFERENCE.to_vec(),
    };
    for format in &candidates {
        let Some(offer) = offered.iter().find(|o| o.fourcc == format.fourcc()) else {
            continue;
        };
        let size = match request.size_px {
            Some((w, h)) => {
                // A driver that does not enumerate sizes gets the request as it is; set_format
                // then says what it made of it.
                (offer.sizes.is_empty() || offer.sizes.iter().any(|s| s.contains(w, h)))
                    .then_some((w, h))
            }
            None => offer
                .sizes
                .iter()
                .flat_map(|s| {
                    [
                        (s.max_width_px, s.max_height_px),
                        (s.min_width_px, s.min_height_px),
                    ]
                })
                .filter(|&(w, h)| fits_layout(request.layout, w, h))
                .max_by_key(|&(w, h)| (u64::from(w) * u64::from(h), h)),
        };
        if let Some((width_px, height_px)) = size {
            return Ok(FormatChoice {
                format: *format,
                width_px,
                height_px,
            });
        }
    }
    let formats: Vec<String> = candidates.iter().map(ToString::to_string).collect();
    let mut wanted = if candidates.len() == 1 {
        formats.join("")
    } else {
        format!("any of {}", formats.join(", "))
    };
    match request.size_px {
        Some((w, h)) => wanted.push_str(&format!(" at {w}x{h}")),
        None => wanted.push_str(&format!(" in a size that fits layout {:?}", request.layout)),
    }
    Err(NegotiationError {
        wanted,
        offered: offered.to_vec(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LEPTON: FrameLayout = FrameLayout::Lepton { telemetry_rows: 2 };

    /// What a PureThermal 2 with a Lepton 3.5 enumerates.
    fn purethermal() -> Vec<OfferedFormat> {
        let d = SizeRange::discrete;
        vec![
            OfferedFormat {
                fourcc: *b"UYVY",
                sizes: vec![d(160, 120)],
            },
            OfferedFormat {
                fourcc: *b"Y16 ",
                sizes: vec![d(160, 120), d(160, 122)],
            },
            OfferedFormat {
                fourcc: *b"GREY",
                sizes: vec![d(160, 120)],
            },
            OfferedFormat {
                fourcc: *b"RGBP",
                sizes: vec![d(160, 120)],
            },
            OfferedFormat {
                fourcc: *b"BGR3",
                sizes: vec![d(160, 120)],
            },
        ]
    }

    /// What an InfiRay P2 Pro enumerates.
    fn p2_pro() -> Vec<OfferedFormat> {
        vec![OfferedFormat {
            fourcc: *b"YUYV",
            sizes: vec![SizeRange::discrete(256, 192), SizeRange::discrete(256, 384)],
        }]
    }

    fn request(
        pixel_format: Option<PixelFormat>,
        layout: FrameLayout,
        size_px: Option<(u32, u32)>,
    ) -> FormatRequest {
        FormatRequest {
            pixel_format,
            layout,
            size_px,
        }
    }

    #[test]
    fn the_best_thermal_format_is_y16_with_telemetry_rows_for_a_lepton() {
        let c = choose(&purethermal(), &request(None, LEPTON, None)).unwrap();
        assert_eq!(
            (c.format, c.width_px, c.height_px),
            (PixelFormat::Y16, 160, 122)
        );
        // Plain layout: 160x122 is also "plain", the largest; asking for 160x120 gets that.
        let c = choose(
            &purethermal(),
            &request(None, FrameLayout::Plain, Some((160, 120))),
        )
        .unwrap();
        assert_eq!((c.format, c.height_px), (PixelFormat::Y16, 120));
    }

    #[test]
    fn a_split_layout_takes_the_tall_yuyv_mode() {
        let c = choose(&p2_pro(), &request(None, FrameLayout::InfiRaySplit, None)).unwrap();
        assert_eq!(
            (c.format, c.width_px, c.height_px),
            (PixelFormat::Yuyv, 256, 384)
        );
    }

    #[test]
    fn a_configured_format_is_taken_even_when_a_better_one_exists() {
        let c = choose(
            &purethermal(),
            &request(Some(PixelFormat::Uyvy), FrameLayout::Plain, None),
        )
        .unwrap();
        assert_eq!(
            (c.format, c.width_px, c.height_px),
            (PixelFormat::Uyvy, 160, 120)
        );
    }

    #[test]
    fn a_format_the_camera_does_not_offer_is_an_error_listing_what_it_offers() {
        let e = choose(&p2_pro(), &request(Some(PixelFormat::Y16), LEPTON, None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "does not offer 'Y16 ' in a size that fits layout Lepton { telemetry_rows: 2 }; \
             it offers 'YUYV' 256x192 256x384"
        );
        let e = choose(
            &purethermal(),
            &request(None, FrameLayout::Plain, Some((640, 512))),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "does not offer any of 'Y16 ', 'GREY', 'YUYV', 'UYVY' at 640x512; it offers \
             'UYVY' 160x120, 'Y16 ' 160x120 160x122, 'GREY' 160x120, 'RGBP' 160x120, 'BGR3' 160x120"
        );
        let e = choose(&[], &request(None, FrameLayout::Plain, None)).unwrap_err();
        assert!(
            e.to_string().ends_with("it offers no capture format"),
            "{e}"
        );
    }

    #[test]
    fn stepwise_sizes_are_checked_by_step() {
        let s = SizeRange {
            min_width_px: 16,
            max_width_px: 640,
            step_width_px: 16,
            min_height_px: 12,
            max_height_px: 480,
            step_height_px: 2,
        };
        assert!(s.contains(160, 120));
        assert!(!s.contains(161, 120));
        assert!(!s.contains(160, 121));
        assert!(!s.contains(656, 120));
        let offered = [OfferedFormat {
            fourcc: *b"GREY",
            sizes: vec![s],
        }];
        let c = choose(&offered, &request(None, FrameLayout::Plain, None)).unwrap();
        assert_eq!((c.width_px, c.height_px), (640, 480));
        assert_eq!(s.to_string(), "16x12-640x480 step 16/2");
    }

    #[test]
    fn sizes_are_fitted_to_the_layout() {
        assert!(fits_layout(LEPTON, 160, 120));
        assert!(fits_layout(LEPTON, 160, 122));
        assert!(fits_layout(LEPTON, 80, 60));
        assert!(!fits_layout(LEPTON, 160, 121));
        assert!(!fits_layout(FrameLayout::InfiRaySplit, 256, 193));
        assert!(!fits_layout(FrameLayout::Plain, 0, 10));
    }
}
