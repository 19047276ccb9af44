//! `edgebind preprocess` / `edgebind embed`: one input file (or text) through the daemon's own
//! preprocessing and an ONNX encoder. The session is created from the model's path, so ONNX
//! Runtime reads the file itself (no copy of a several-hundred-MB model in our memory), and the
//! preprocessed tensor is handed to it as a view (no copy of the input).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::{Array2, ArrayD, Axis};

use super::{InputOptions, ModalityArg, ProviderArg, RadiometricArg};
use crate::config::{
    DepthHoles, DepthNormalizeKind, DepthPreprocessConfig, ExecutionProviderKind, Radiometric,
    ThermalAgc, ThermalPreprocessConfig,
};
use crate::files::{self, npy};
use crate::inference::{Encoder, OrtRuntime, TextEncoder};
use crate::preprocess::audio::{AudioParams, AudioPreprocessor};
use crate::preprocess::depth::DepthPreprocessor;
use crate::preprocess::imu::ImuPreprocessor;
use crate::preprocess::text::{ClipTokenizer, CONTEXT_LEN};
use crate::preprocess::thermal::ThermalPreprocessor;
use crate::preprocess::vision::VisionPreprocessor;
use crate::sources::audio_replay::load_wav;
use crate::sources::frame_replay::{load_stack, FrameKind, MAX_FRAME_SIDE_PX};
use crate::sources::imu_replay;
use crate::sources::imu_replay::ImuFileFormat;
use crate::sources::vision_replay::files::first_frame;
use crate::sources::FrameImage;
use crate::Modality;

/// ImageBind's IMU window.
const IMU_WINDOW_MS: f64 = 5000.0;
/// Name of the CLIP vocabulary the exporter puts next to `text.onnx`.
pub const BPE_FILE: &str = "bpe_simple_vocab_16e6.txt.gz";

/// What `embed` was asked to do.
#[derive(Debug)]
pub struct EmbedArgs {
    /// The modality.
    pub modality: ModalityArg,
    /// Input file, or the text itself.
    pub input: PathBuf,
    /// The ONNX encoder.
    pub model: PathBuf,
    /// Output `.npy`.
    pub output: PathBuf,
    /// Preprocessing options.
    pub options: InputOptions,
    /// Providers in order.
    pub providers: Vec<ProviderArg>,
    /// libonnxruntime.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    pub threads: usize,
}

/// `edgebind embed`.
///
/// # Errors
/// Any input, model or runtime problem, with its context.
pub fn embed(args: &EmbedArgs) -> Result<i32> {
    let providers: Vec<ExecutionProviderKind> = args.providers.iter().map(|&p| p.into()).collect();
    let runtime = OrtRuntime::load(args.ort_library.as_deref())?;
    let t0 = Instant::now();
    let (out, provider) = match args.modality.sensor() {
        Some(modality) => {
            let tensor = sensor_tensor(modality, &args.input, &args.options)?;
            let mut encoder = Encoder::load(
                &runtime,
                modality,
                &args.model,
                &providers,
                false,
                args.threads,
            )?;
            let load_ms = t0.elapsed().as_millis() as u64;
            tracing::info!(model = %args.model.display(), load_ms, "encoder loaded");
            // Adding the batch axis to an owned array moves no data.
            let out = encoder.run(&tensor.insert_axis(Axis(0)))?;
            (out, encoder.provider)
        }
        None => {
            let ids = text_ids(&args.input, &args.options, Some(&args.model))?;
            let mut encoder = TextEncoder::load(&runtime, &args.model, &providers, args.threads)?;
            let load_ms = t0.elapsed().as_millis() as u64;
            tracing::info!(model = %args.model.display(), load_ms, "encoder loaded");
            (encoder.run(&ids)?, encoder.provider)
        }
    };
    ndarray_npy::write_npy(&args.output, &out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    tracing::info!(
        output = %args.output.display(),
        shape = ?out.shape(),
        provider = provider.as_str(),
        total_ms = t0.elapsed().as_secs_f64() * 1e3,
        "embedding written"
    );
    Ok(0)
}

/// `edgebind preprocess`: the model input as `.npy` (float32; int64 token ids for text).
///
/// # Errors
/// Any input problem, with its context.
pub fn preprocess(
    modality: ModalityArg,
    input: &Path,
    output: &Path,
    options: &InputOptions,
) -> Result<i32> {
    let shape = match modality.sensor() {
        Some(m) => {
            let tensor = sensor_tensor(m, input, options)?;
            ndarray_npy::write_npy(output, &tensor)
                .with_context(|| format!("writing {}", output.display()))?;
            tensor.shape().to_vec()
        }
        None => {
            let ids = text_ids(input, options, None)?;
            ndarray_npy::write_npy(output, &ids)
                .with_context(|| format!("writing {}", output.display()))?;
            ids.shape().to_vec()
        }
    };
    tracing::info!(output = %output.display(), ?shape, "model input written");
    Ok(0)
}

/// Token ids `[N, 77]` for `input`: an int64 `.npy` (`[77]` or `[N, 77]`) used as is, a text
/// file (one text per non-empty line), or else the argument itself as the text.
pub(super) fn text_ids(
    input: &Path,
    options: &InputOptions,
    model: Option<&Path>,
) -> Result<Array2<i64>> {
    if input.is_file() && input.extension().is_some_and(|e| e == "npy") {
        let ids: ArrayD<i64> = npy::read(input, files::MAX_TEXT_BYTES, "token ids")?;
        let ids = match ids.ndim() {
            1 => ids.insert_axis(Axis(0)),
            _ => ids,
        };
        let ids = ids
            .into_dimensionality::<ndarray::Ix2>()
            .ok()
            .filter(|a| a.ncols() == CONTEXT_LEN && a.nrows() > 0)
            .with_context(|| format!("{}: token ids must be [77] or [N, 77]", input.display()))?;
        return Ok(ids);
    }
    let texts: Vec<String> = if input.is_file() {
        files::read_to_string(input, files::MAX_TEXT_BYTES, "texts to embed")?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        vec![input.to_string_lossy().into_owned()]
    };
    if texts.is_empty() {
        bail!("{}: no text", input.display());
    }
    let vocab = match (&options.vocab, model) {
        (Some(v), _) => v.clone(),
        (None, Some(m)) => m.with_file_name(BPE_FILE),
        (None, None) => bail!("--vocab {BPE_FILE} is needed to tokenize text"),
    };
    if !vocab.is_file() {
        bail!(
            "{}: CLIP BPE vocabulary not found (tools/export_imagebind.py puts it next to \
             text.onnx; tools/fetch_clip_bpe.sh fetches it); pass --vocab",
            vocab.display()
        );
    }
    let tokenizer = ClipTokenizer::load(&vocab)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Ok(tokenizer.tokenize(&refs))
}

/// The encoder input (without the batch axis) for one sensor file, computed by the daemon's
/// preprocessing.
pub(super) fn sensor_tensor(
    modality: Modality,
    input: &Path,
    options: &InputOptions,
) -> Result<ArrayD<f32>> {
    match modality {
        Modality::Imu => imu_tensor(input, options),
        Modality::Thermal => thermal_tensor(input, options),
        Modality::Depth => {
            let FrameImage::U16(raw) = load_frame(input, FrameKind::Depth)? else {
                bail!(
                    "{}: depth input must be 16-bit (uint16 .npy or 16-bit grey PNG), in depth units",
                    input.display()
                );
            };
            let cfg = DepthPreprocessConfig {
                focal_px: options.focal_px,
                baseline_m: options.baseline_m,
                depth_units_m: options.depth_units_m,
                normalize: if options.no_normalize {
                    DepthNormalizeKind::None
                } else {
                    DepthNormalizeKind::Standardize
                },
                holes: if options.fill_holes {
                    DepthHoles::NearestInRow
                } else {
                    DepthHoles::Spec
                },
                ..DepthPreprocessConfig::default()
            };
            let mut pre = DepthPreprocessor::new(cfg.params(None))
                .with_context(|| "depth preprocessing options")?;
            Ok(pre
                .tensor(raw.view())
                .with_context(|| format!("{}", input.display()))?
                .into_dyn())
        }
        Modality::Vision => {
            let rgb = first_frame(input)?;
            Ok(VisionPreprocessor::new()
                .tensor_rgb(rgb.view())
                .with_context(|| format!("{}", input.display()))?
                .into_dyn())
        }
        Modality::Audio => {
            let audio = load_wav(input)?;
            let mut pre = AudioPreprocessor::new(AudioParams::default())
                .with_context(|| "audio preprocessing options")?;
            Ok(pre
                .file_tensor(&audio.planar, audio.sample_rate_hz, options.clips)
                .with_context(|| format!("{}", input.display()))?
                .into_dyn())
        }
    }
}

/// The first thermal frame of `input` (`.npy` stack or PNG), with the AGC the options give.
fn thermal_tensor(input: &Path, options: &InputOptions) -> Result<ArrayD<f32>> {
    let kind = FrameKind::Thermal {
        radiometric: options.agc_min_c.is_some(),
    };
    let frame = load_frame(input, kind)?;
    let cfg = ThermalPreprocessConfig {
        agc: if options.agc_min_c.is_some() {
            ThermalAgc::FixedCelsius
        } else {
            ThermalAgc::MinMax
        },
        agc_min_c: options.agc_min_c,
        agc_max_c: options.agc_max_c,
        radiometric: match options.radiometric {
            RadiometricArg::CentiKelvin => Radiometric::CentiKelvin,
            RadiometricArg::Infiray64 => Radiometric::Infiray64,
        },
        ..ThermalPreprocessConfig::default()
    };
    let mut pre =
        ThermalPreprocessor::new(cfg.params()).with_context(|| "thermal preprocessing options")?;
    let tensor = match &frame {
        FrameImage::U8(a) => pre.tensor_u8(a.view()),
        FrameImage::U16(a) => pre.tensor_u16(a.view()),
        FrameImage::Rgb8(_) => bail!("{}: a thermal frame is not colour", input.display()),
    }
    .with_context(|| format!("{}", input.display()))?;
    Ok(tensor.into_dyn())
}

/// The first 5 s window of an IMU recording: `.npy` float32 `[6, N]` (needs `--rate-hz`) or a
/// CSV like the `imu_replay` source reads (rate from `--rate-hz` or the `t_s` column).
fn imu_tensor(input: &Path, options: &InputOptions) -> Result<ArrayD<f32>> {
    if let Some(rate) = options.rate_hz {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate-hz must be a positive number");
        }
    }
    let is_npy = input.extension().is_some_and(|e| e == "npy");
    if is_npy && options.rate_hz.is_none() {
        bail!("--rate-hz is required for IMU .npy input");
    }
    let format = if is_npy {
        ImuFileFormat::Npy
    } else {
        ImuFileFormat::Csv
    };
    let rec = imu_replay::load(input, format, options.rate_hz)?;
    for row in &rec.skipped {
        tracing::warn!(line = row.line, reason = %row.reason, "malformed row skipped");
    }
    let samples = rec
        .samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.with_context(|| {
                format!(
                    "{}: sample {i} is missing (a gap in the recording)",
                    input.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rate = rec.sample_rate_hz;
    let window_f = (rate * IMU_WINDOW_MS / 1000.0).round();
    // Fewer samples than one window would be stretched in time, which the model never saw.
    if (samples.len() as f64) < window_f {
        let n = samples.len();
        bail!(
            "{}: holds {n} sample{} ({} s at {rate} Hz); ImageBind's IMU window is {} s ({window_f} samples)",
            input.display(),
            if n == 1 { "" } else { "s" },
            n as f64 / rate,
            IMU_WINDOW_MS / 1000.0
        );
    }
    let window = window_f as usize;
    if samples.len() > window {
        tracing::info!(
            samples = samples.len(),
            used = window,
            "input is longer than one 5 s window; using the first window"
        );
    }
    let used = &samples[..window];
    Ok(ImuPreprocessor::new()
        .tensor_from_samples(used)
        .with_context(|| format!("{}", input.display()))?
        .into_dyn())
}

/// The first frame of a `.npy` stack, or a greyscale PNG (8 or 16 bit; an 8-bit RGB PNG is
/// turned into luma like PIL's `convert("L")`, SPEC.md §4).
fn load_frame(input: &Path, kind: FrameKind) -> Result<FrameImage> {
    if input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        return load_png(input);
    }
    let stack = load_stack(input, kind)?;
    if stack.len() > 1 {
        tracing::info!(
            frames = stack.len(),
            "input holds several frames; using the first"
        );
    }
    stack
        .frame(0)
        .with_context(|| format!("{}: no frame", input.display()))
}

fn load_png(input: &Path) -> Result<FrameImage> {
    let (file, _) = files::open_limited(input, files::MAX_RECORDING_BYTES, "a PNG frame")?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    // Expand palettes and sub-byte greys to 8 bit; keep 16-bit samples as they are.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder
        .read_info()
        .with_context(|| format!("{}: not a PNG", input.display()))?;
    let (w, h) = reader.info().size();
    if w as usize > MAX_FRAME_SIDE_PX || h as usize > MAX_FRAME_SIDE_PX {
        bail!(
            "{}: a {w}x{h} px PNG; at most {MAX_FRAME_SIDE_PX} px a side",
            input.display()
        );
    }
    let size = reader
        .output_buffer_size()
        .with_context(|| format!("{}: PNG too large", input.display()))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .with_context(|| format!("{}: cannot decode the PNG", input.display()))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let data = buf.get(..info.buffer_size()).unwrap_or(&[]);
    let shape_err = || format!("{}: PNG data does not match {w}x{h}", input.display());
    use png::{BitDepth, ColorType};
    match (info.color_type, info.bit_depth) {
        (ColorType::Grayscale, BitDepth::Sixteen) => {
            let px: Vec<u16> = data
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect();
            Ok(FrameImage::U16(
                Array2::from_shape_vec((h, w), px).with_context(shape_err)?,
            ))
        }
        (ColorType::Grayscale, BitDepth::Eight) => Ok(FrameImage::U8(
            Array2::from_shape_vec((h, w), data.to_vec()).with_context(shape_err)?,
        )),
        (ColorType::Rgb | ColorType::Rgba, BitDepth::Eight) => {
            let step = if info.color_type == ColorType::Rgb {
                3
            } else {
                4
            };
            // ITU-R 601 luma in PIL's fixed point.
            let px: Vec<u8> = data
                .chunks_exact(step)
                .map(|p| {
                    let l = u32::from(p[0]) * 19595
                        + u32::from(p[1]) * 38470
                        + u32::from(p[2]) * 7471
                        + 32768;
                    (l >> 16) as u8
                })
                .collect();
            Ok(FrameImage::U8(
                Array2::from_shape_vec((h, w), px).with_context(shape_err)?,
            ))
        }
        (ct, bd) => bail!(
            "{}: PNG is {ct:?} {bd:?}; expected 8/16-bit grey or 8-bit RGB",
            input.display()
        ),
    }
}
