//! What a vision replay plays: PNG and JPEG pictures (a folder's, in file-name order, or a
//! glob's, in name order) or a `.npy` uint8 stack `[N, H, W, 3]` (or one `[H, W, 3]` picture),
//! decoded to RGB frames before anything runs. Every size a header declares is checked before
//! the pixels are allocated (`preprocess::vision::decode` for pictures, `files::npy` for stacks),
//! and all frames together hold at most [`files::MAX_RECORDING_BYTES`].

use std::path::{Path, PathBuf};

use ndarray::{Array3, Array4, Axis, Ix3, Ix4};

use crate::files::npy::{self, Dtype};
use crate::files::{self, human_bytes, FileError};
use crate::preprocess::vision::decode::{decode_image, DecodeError};
use crate::preprocess::vision::frame::MAX_FRAME_PIXELS;

/// Why a vision recording cannot be used. Every message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum VisionFileError {
    /// Missing, unreadable, too large, or a `.npy` of the wrong dtype or shape.
    #[error(transparent)]
    File(#[from] FileError),
    /// A picture that cannot be decoded (truncated, not PNG or JPEG, absurd declared size).
    #[error("{path}: {source}")]
    Decode {
        /// The picture.
        path: PathBuf,
        /// Why.
        source: DecodeError,
    },
    /// A folder or glob without a picture.
    #[error("{path}: no PNG or JPEG pictures ({where_})")]
    NoPictures {
        /// The folder or pattern.
        path: PathBuf,
        /// Where they were looked for.
        where_: &'static str,
    },
    /// A glob pattern that is not one.
    #[error("{pattern}: not a usable glob pattern: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// The frames together decode to more than a recording may hold.
    #[error("{path}: the pictures decode to more than the {limit} a recording may hold")]
    TooMuch {
        /// The folder or pattern.
        path: PathBuf,
        /// The limit, rounded.
        limit: String,
    },
}

/// Where the frames of a vision recording come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisionInput {
    /// A `.npy` uint8 stack.
    Npy(PathBuf),
    /// One picture.
    Picture(PathBuf),
    /// The pictures of a folder, by file name.
    Folder(PathBuf),
    /// The files a glob pattern matches, by name.
    Glob(String),
}

impl VisionInput {
    /// What `path` names: a glob when it holds `*`, `?` or `[`, else a folder, a `.npy` stack or
    /// a picture.
    #[must_use]
    pub fn of(path: &Path) -> Self {
        let text = path.to_string_lossy();
        if text.contains(['*', '?', '[']) {
            Self::Glob(text.into_owned())
        } else if path.is_dir() {
            Self::Folder(path.to_path_buf())
        } else if has_extension(path, &["npy"]) {
            Self::Npy(path.to_path_buf())
        } else {
            Self::Picture(path.to_path_buf())
        }
    }
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The picture files of `input`, in name order (a folder: its PNG and JPEG files; a glob: every
/// file it matches).
///
/// # Errors
/// [`VisionFileError`] for an unreadable folder, a bad pattern, or no picture.
pub fn picture_paths(input: &VisionInput) -> Result<Vec<PathBuf>, VisionFileError> {
    let (paths, path, where_) = match input {
        VisionInput::Npy(p) | VisionInput::Picture(p) => return Ok(vec![p.clone()]),
        VisionInput::Folder(dir) => {
            let entries = std::fs::read_dir(dir).map_err(|e| FileError::io(dir, &e))?;
            let mut paths = Vec::new();
            for entry in entries {
                let p = entry.map_err(|e| FileError::io(dir, &e))?.path();
                if p.is_file() && has_extension(&p, &["png", "jpg", "jpeg"]) {
                    paths.push(p);
                }
            }
            paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
            (paths, dir.clone(), "files ending .png, .jpg or .jpeg")
        }
        VisionInput::Glob(pattern) => {
            let bad = |message: String| VisionFileError::Pattern {
                pattern: pattern.clone(),
                message,
            };
            let mut paths = Vec::new();
            // glob yields paths in alphabetical order.
            for entry in glob::glob(pattern).map_err(|e| bad(e.to_string()))? {
                let p = entry.map_err(|e| bad(e.to_string()))?;
                if p.is_file() {
                    paths.push(p);
                }
            }
            (paths, PathBuf::from(pattern), "files the pattern matches")
        }
    };
    if paths.is_empty() {
        return Err(VisionFileError::NoPictures { path, where_ });
    }
    Ok(paths)
}

/// Decodes the PNG or JPEG at `path` to `[H, W, 3]` RGB.
///
/// # Errors
/// [`VisionFileError`] naming the file.
pub fn load_picture(path: &Path) -> Result<Array3<u8>, VisionFileError> {
    let bytes = files::read_bytes(path, files::MAX_RECORDING_BYTES, "a picture")?;
    decode_image(&bytes)
        .map(|img| img.into_array())
        .map_err(|source| VisionFileError::Decode {
            path: path.to_path_buf(),
            source,
        })
}

/// Loads a `.npy` uint8 stack `[N, H, W, 3]` (or one `[H, W, 3]` picture); the header is checked
/// before any pixel is read.
///
/// # Errors
/// [`VisionFileError`] naming the file and what is wrong.
pub fn load_npy(path: &Path) -> Result<Array4<u8>, VisionFileError> {
    let (mut file, len) = files::open(path)?;
    let header = npy::read_header(&mut file, len, path)?;
    let refuse = |why: &str| {
        VisionFileError::File(FileError::format(
            path,
            format!(
                "is {} {}; a vision recording must be uint8 [N, H, W, 3] or [H, W, 3]{why}",
                header.dtype.name(),
                header.shape_text()
            ),
        ))
    };
    let (height_px, width_px) = match (header.dtype, &header.shape[..]) {
        (Dtype::Uint(1), [_, h, w, 3] | [h, w, 3]) => (*h, *w),
        _ => return Err(refuse("")),
    };
    if height_px.saturating_mul(width_px) > MAX_FRAME_PIXELS {
        return Err(refuse(&format!(
            " of at most {MAX_FRAME_PIXELS} px a frame"
        )));
    }
    let (limit, what) = (files::MAX_RECORDING_BYTES, "a vision recording");
    let stack = if header.shape.len() == 4 {
        npy::read_data::<u8, Ix4>(&mut file, &header, path, limit, what)?
    } else {
        npy::read_data::<u8, Ix3>(&mut file, &header, path, limit, what)?.insert_axis(Axis(0))
    };
    if stack.is_empty() {
        return Err(refuse(" with at least one pixel"));
    }
    Ok(stack)
}

/// Every frame of `input`, in replay order.
///
/// # Errors
/// [`VisionFileError`] naming the first file that cannot be used.
pub fn load_frames(input: &VisionInput) -> Result<Vec<Array3<u8>>, VisionFileError> {
    if let VisionInput::Npy(path) = input {
        let stack = load_npy(path)?;
        return Ok(stack.outer_iter().map(|f| f.to_owned()).collect());
    }
    let mut total: u64 = 0;
    let mut frames = Vec::new();
    for path in picture_paths(input)? {
        let frame = load_picture(&path)?;
        total = total.saturating_add(frame.len() as u64);
        if total > files::MAX_RECORDING_BYTES {
            let path = match input {
                VisionInput::Glob(p) => PathBuf::from(p),
                VisionInput::Folder(p) | VisionInput::Picture(p) | VisionInput::Npy(p) => p.clone(),
            };
            return Err(VisionFileError::TooMuch {
                path,
                limit: human_bytes(files::MAX_RECORDING_BYTES),
            });
        }
        frames.push(frame);
    }
    Ok(frames)
}

/// The first frame of `path` (a `.npy` stack's first, or the picture): what `edgebind
/// preprocess vision` and `embed vision` read.
///
/// # Errors
/// [`VisionFileError`] naming the file.
pub fn first_frame(path: &Path) -> Result<Array3<u8>, VisionFileError> {
    if has_extension(path, &["npy"]) {
        let stack = load_npy(path)?;
        if stack.len_of(Axis(0)) > 1 {
            tracing::info!(
                frames = stack.len_of(Axis(0)),
                "input holds several frames; using the first"
            );
        }
        return Ok(stack.index_axis_move(Axis(0), 0));
    }
    load_picture(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A `w` x `h` RGB PNG whose pixels are all `value`.
    fn png(path: &Path, w: u32, h: u32, value: u8) {
        let file = std::fs::File::create(path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let data = vec![value; (w * h * 3) as usize];
        enc.write_header().unwrap().write_image_data(&data).unwrap();
    }

    #[test]
    fn a_folder_plays_its_pictures_in_file_name_order_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("b.png"), 4, 3, 20);
        png(&dir.path().join("a.PNG"), 5, 2, 10);
        png(&dir.path().join("c.png"), 2, 2, 30);
        std::fs::write(dir.path().join("README"), "not a picture").unwrap();
        std::fs::create_dir(dir.path().join("d.png")).unwrap();
        let input = VisionInput::of(dir.path());
        assert_eq!(input, VisionInput::Folder(dir.path().to_path_buf()));
        let frames = load_frames(&input).unwrap();
        let firsts: Vec<(u8, (usize, usize, usize))> =
            frames.iter().map(|f| (f[[0, 0, 0]], f.dim())).collect();
        assert_eq!(
            firsts,
            vec![(10, (2, 5, 3)), (20, (3, 4, 3)), (30, (2, 2, 3))]
        );
    }

    #[test]
    fn a_glob_takes_what_it_matches_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for (name, v) in [
            ("f2.png", 2),
            ("f10.png", 10),
            ("f1.png", 1),
            ("g1.png", 99),
        ] {
            png(&dir.path().join(name), 2, 2, v);
        }
        let pattern = dir.path().join("f*.png");
        let input = VisionInput::of(&pattern);
        assert!(matches!(input, VisionInput::Glob(_)));
        let values: Vec<u8> = load_frames(&input)
            .unwrap()
            .iter()
            .map(|f| f[[0, 0, 0]])
            .collect();
        // Name order, as `ls` sorts: f1, f10, f2.
        assert_eq!(values, vec![1, 10, 2]);
        let none = VisionInput::of(&dir.path().join("x*.jpg"));
        let err = load_frames(&none).unwrap_err().to_string();
        assert!(
            err.ends_with("x*.jpg: no PNG or JPEG pictures (files the pattern matches)"),
            "{err}"
        );
        let bad = VisionInput::Glob(format!("{}/[", dir.path().display()));
        assert!(matches!(
            load_frames(&bad),
            Err(VisionFileError::Pattern { .. })
        ));
    }

    #[test]
    fn a_truncated_picture_in_a_folder_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("a.png"), 64, 48, 1);
        png(&dir.path().join("b.png"), 64, 48, 2);
        let b = dir.path().join("b.png");
        let bytes = std::fs::read(&b).unwrap();
        std::fs::write(&b, &bytes[..bytes.len() - 30]).unwrap();
        let err = load_frames(&VisionInput::of(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}: PNG:", b.display())), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = load_frames(&VisionInput::of(empty.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("no PNG or JPEG pictures (files ending .png, .jpg or .jpeg)"),
            "{err}"
        );
    }

    #[test]
    fn npy_stacks_and_single_pictures_load_and_other_shapes_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let stack = dir.path().join("s.npy");
        let a = Array4::<u8>::from_shape_fn((3, 4, 5, 3), |(n, _, _, c)| (n * 10 + c) as u8);
        ndarray_npy::write_npy(&stack, &a).unwrap();
        let frames = load_frames(&VisionInput::of(&stack)).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2][[0, 0, 1]], 21);
        assert_eq!(first_frame(&stack).unwrap(), a.index_axis(Axis(0), 0));
        let one = dir.path().join("one.npy");
        ndarray_npy::write_npy(&one, &Array3::<u8>::zeros((4, 5, 3))).unwrap();
        assert_eq!(load_npy(&one).unwrap().dim(), (1, 4, 5, 3));
        let rgba = dir.path().join("rgba.npy");
        ndarray_npy::write_npy(&rgba, &Array3::<u8>::zeros((4, 5, 4))).unwrap();
        let err = load_npy(&rgba).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "is uint8 [4, 5, 4]; a vision recording must be uint8 [N, H, W, 3] or [H, W, 3]"
            ),
            "{err}"
        );
        let empty = dir.path().join("empty.npy");
        ndarray_npy::write_npy(&empty, &Array4::<u8>::zeros((0, 4, 5, 3))).unwrap();
        let err = load_npy(&empty).unwrap_err().to_string();
        assert!(err.ends_with("with at least one pixel"), "{err}");
    }
}
