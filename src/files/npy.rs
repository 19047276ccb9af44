//! `.npy` arrays from untrusted files. The header is read and checked before any data is
//! allocated: the magic and version, a header length within the file and [`MAX_HEADER_BYTES`],
//! the dtype, the layout, and the shape, whose element count times the item size (overflow
//! checked) must be exactly the bytes left in the file and at most what the caller accepts.
//! ndarray-npy then parses the header text and decodes the data; it is never handed a size that
//! was not checked first (its own reader allocates the header and the data from the sizes the
//! file declares).

use std::io::Read;
use std::path::Path;

use ndarray::{Array, Dimension, IxDyn};
use ndarray_npy::npy::header::{Header, Layout};
use ndarray_npy::ReadableElement;

use super::{check_size, human_bytes, open, FileError};

/// Longest header accepted (numpy itself refuses headers over 10 000 bytes by default).
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Most dimensions accepted (numpy's own limit is 32 or 64).
pub const MAX_DIMS: usize = 32;
/// Deepest nesting of brackets in a header: `{'shape': (…)}` is 2, a structured dtype 3 or more.
const MAX_HEADER_DEPTH: usize = 3;
const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The numeric dtypes a `.npy` header may name (others are refused by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `|b1`.
    Bool,
    /// `|i1`, `<i2`, `<i4`, `<i8` (or big-endian): bytes per item.
    Int(u8),
    /// `|u1`, `<u2`, `<u4`, `<u8` (or big-endian): bytes per item.
    Uint(u8),
    /// `<f2`, `<f4`, `<f8` (or big-endian): bytes per item.
    Float(u8),
}

impl Dtype {
    /// Bytes per item.
    #[must_use]
    pub fn item_bytes(self) -> u64 {
        match self {
            Self::Bool => 1,
            Self::Int(b) | Self::Uint(b) | Self::Float(b) => u64::from(b),
        }
    }

    /// numpy's name (`float32`, `uint16`).
    #[must_use]
    pub fn name(self) -> String {
        match self {
            Self::Bool => "bool".into(),
            Self::Int(b) => format!("int{}", u32::from(b) * 8),
            Self::Uint(b) => format!("uint{}", u32::from(b) * 8),
            Self::Float(b) => format!("float{}", u32::from(b) * 8),
        }
    }

    /// The dtype of a descriptor string (`<f4`, `|u1`, `u1`, `B`), `None` if it is not one of
    /// the numeric dtypes.
    fn parse(descr: &str) -> Option<Self> {
        if descr == "B" {
            return Some(Self::Uint(1));
        }
        let body = descr.strip_prefix(['<', '>', '|', '=']).unwrap_or(descr);
        let (kind, size) = body.split_at_checked(1)?;
        let size: u8 = size.parse().ok()?;
        match (kind, size) {
            ("b", 1) => Some(Self::Bool),
            ("i", 1 | 2 | 4 | 8) => Some(Self::Int(size)),
            ("u", 1 | 2 | 4 | 8) => Some(Self::Uint(size)),
            ("f", 2 | 4 | 8) => Some(Self::Float(size)),
            _ => None,
        }
    }
}

/// An element type read from `.npy` files.
pub trait NpyElement: ReadableElement {
    /// Its dtype.
    const DTYPE: Dtype;
}

impl NpyElement for u8 {
    const DTYPE: Dtype = Dtype::Uint(1);
}
impl NpyElement for u16 {
    const DTYPE: Dtype = Dtype::Uint(2);
}
impl NpyElement for i64 {
    const DTYPE: Dtype = Dtype::Int(8);
}
impl NpyElement for f32 {
    const DTYPE: Dtype = Dtype::Float(4);
}

/// A checked `.npy` header.
#[derive(Debug, Clone)]
pub struct NpyHeader {
    /// The dtype.
    pub dtype: Dtype,
    /// The shape.
    pub shape: Vec<usize>,
    /// Whether the data is in Fortran (column-major) order.
    pub fortran_order: bool,
    /// Bytes of data after the header (exactly what the shape needs).
    pub data_bytes: u64,
    header: Header,
}

impl NpyHeader {
    /// `[3, 4]`-style shape text for messages.
    #[must_use]
    pub fn shape_text(&self) -> String {
        shape_text(&self.shape)
    }
}

/// `[3, 4]`.
#[must_use]
pub fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}

fn read_exact(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<(), FileError> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FileError::format(path, "not a .npy file (it ends inside the header)")
        } else {
            FileError::io(path, &e)
        }
    })
}

/// Reads and checks the header from `reader`, positioned at the start of a file of `file_len`
/// bytes; leaves `reader` at the first data byte.
///
/// # Errors
/// [`FileError::Format`] naming what is wrong (or an I/O error).
pub fn read_header(
    reader: &mut impl Read,
    file_len: u64,
    path: &Path,
) -> Result<NpyHeader, FileError> {
    let not_npy = |what: &str| FileError::format(path, format!("not a .npy file ({what})"));
    let (start, len_bytes, header_len) = read_preamble(reader, path)?;
    let preamble = 8 + len_bytes;
    if header_len > MAX_HEADER_BYTES {
        return Err(FileError::format(
            path,
            format!("header of {header_len} bytes is longer than the {MAX_HEADER_BYTES} accepted"),
        ));
    }
    let data_offset = (preamble + header_len) as u64;
    if data_offset > file_len {
        return Err(not_npy(&format!(
            "the header declares {header_len} bytes but the file has {file_len} in all"
        )));
    }
    // The parser wants the whole header, preamble included.
    let mut bytes = Vec::with_capacity(preamble + header_len);
    bytes.extend_from_slice(&start);
    if len_bytes == 2 {
        bytes.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        bytes.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    bytes.resize(preamble + header_len, 0);
    read_exact(reader, &mut bytes[preamble..], path)?;
    check_nesting(&bytes[preamble..]).map_err(|m| not_npy(&m))?;
    let header = Header::from_reader(&mut bytes.as_slice())
        .map_err(|e| not_npy(&format!("bad header: {}", one_line(&e.to_string()))))?;
    let Some(descr) = header.type_descriptor.as_string() else {
        return Err(FileError::format(
            path,
            "has a structured dtype; a plain numeric array is needed",
        ));
    };
    let dtype = Dtype::parse(descr).ok_or_else(|| {
        FileError::format(path, format!("dtype {descr:?} is not a numeric array type"))
    })?;
    let data_bytes = check_data_size(dtype, &header.shape, file_len - data_offset, path)?;
    Ok(NpyHeader {
        dtype,
        shape: header.shape.clone(),
        fortran_order: header.layout == Layout::Fortran,
        data_bytes,
        header,
    })
}

/// The magic, version and header length: the first 8 bytes, the length's width in bytes and
/// the length.
fn read_preamble(
    reader: &mut impl Read,
    path: &Path,
) -> Result<([u8; 8], usize, usize), FileError> {
    let not_npy = |what: &str| FileError::format(path, format!("not a .npy file ({what})"));
    let mut start = [0u8; 8];
    read_exact(reader, &mut start, path)?;
    if &start[..6] != MAGIC {
        return Err(not_npy("no \\x93NUMPY magic"));
    }
    match start[6] {
        1 => {
            let mut b = [0u8; 2];
            read_exact(reader, &mut b, path)?;
            Ok((start, 2, usize::from(u16::from_le_bytes(b))))
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            read_exact(reader, &mut b, path)?;
            let len = u32::from_le_bytes(b);
            Ok((start, 4, usize::try_from(len).unwrap_or(usize::MAX)))
        }
        v => Err(not_npy(&format!("format version {v} is unknown"))),
    }
}

/// Checks that `shape` of `dtype` is exactly the `data_left` bytes after the header (before
/// anything is allocated for it); returns that size.
fn check_data_size(
    dtype: Dtype,
    shape: &[usize],
    data_left: u64,
    path: &Path,
) -> Result<u64, FileError> {
    if shape.len() > MAX_DIMS {
        return Err(FileError::format(
            path,
            format!("has {} dimensions; at most {MAX_DIMS}", shape.len()),
        ));
    }
    let declared = shape
        .iter()
        .try_fold(dtype.item_bytes(), |acc, &d| acc.checked_mul(d as u64));
    let shape = shape_text(shape);
    match declared {
        Some(d) if d == data_left => Ok(d),
        Some(d) => Err(FileError::format(
            path,
            format!(
                "header declares {} {shape} = {} of data, but the file holds {}",
                dtype.name(),
                human_bytes(d),
                human_bytes(data_left)
            ),
        )),
        None => Err(FileError::format(
            path,
            format!(
                "header declares {} {shape}, more bytes than any file can hold; the file holds {}",
                dtype.name(),
                human_bytes(data_left)
            ),
        )),
    }
}

/// The header parser's message on one line: its first line and what it expected (it quotes the
/// header over several lines, with a caret).
fn one_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim);
    let mut out: String = lines.next().unwrap_or_default().to_string();
    if let Some(expected) = lines.find_map(|l| l.strip_prefix("= ")) {
        out.push_str("; ");
        out.push_str(expected);
    }
    let out: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Refuses header text nested deeper than any plain array needs: the header parser's memory
/// grows with the nesting (640 KiB at once for 10 KB of brackets).
fn check_nesting(text: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    for &b in text {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_DEPTH {
                    return Err("header nests brackets too deep".into());
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The checked header of the `.npy` file at `path` (the data is not read).
///
/// # Errors
/// [`FileError`].
pub fn probe(path: &Path) -> Result<NpyHeader, FileError> {
    let (mut file, len) = open(path)?;
    read_header(&mut file, len, path)
}

/// Reads an `A` array of `D` dimensions from the file at `path`, refusing more than `limit`
/// bytes of data (`what` names the use in that message).
///
/// # Errors
/// [`FileError`] naming the file and what is wrong.
pub fn read<A: NpyElement, D: Dimension>(
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Array<A, D>, FileError> {
    let (mut file, len) = open(path)?;
    read_from(&mut file, len, path, limit, what)
}

/// [`read`] from any reader positioned at the start of a `.npy` file of `file_len` bytes
/// (`path` names it in messages).
///
/// # Errors
/// As [`read`].
pub fn read_from<A: NpyElement, D: Dimension>(
    reader: &mut impl Read,
    file_len: u64,
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Array<A, D>, FileError> {
    let header = read_header(reader, file_len, path)?;
    read_data(reader, &header, path, limit, what)
}

/// Reads the data after `header` (which [`read_header`] checked) as an `A` array of `D`
/// dimensions.
///
/// # Errors
/// As [`read`].
pub fn read_data<A: NpyElement, D: Dimension>(
    reader: &mut impl Read,
    header: &NpyHeader,
    path: &Path,
    limit: u64,
    what: &'static str,
) -> Result<Array<A, D>, FileError> {
    if header.dtype != A::DTYPE {
        return Err(FileError::format(
            path,
            format!(
                "is {} {}; {what} must be {}",
                header.dtype.name(),
                header.shape_text(),
                A::DTYPE.name()
            ),
        ));
    }
    if let Some(ndim) = D::NDIM {
        if header.shape.len() != ndim {
            return Err(FileError::format(
                path,
                format!(
                    "has shape {}; {what} must have {ndim} dimensions",
                    header.shape_text()
                ),
            ));
        }
    }
    check_size(path, header.data_bytes, limit, what)?;
    // The count times the item size was checked against the bytes in the file.
    let count = usize::try_from(header.data_bytes / A::DTYPE.item_bytes())
        .map_err(|_| FileError::format(path, "is too large for this machine"))?;
    let data = A::read_to_end_exact_vec(&mut *reader, &header.header.type_descriptor, count)
        .map_err(|e| FileError::format(path, format!("cannot read the data: {e}")))?;
    let shape = IxDyn(&header.shape);
    let array = if header.fortran_order {
        Array::from_shape_vec(ndarray::ShapeBuilder::f(shape), data)
    } else {
        Array::from_shape_vec(shape, data)
    }
    .map_err(|e| FileError::format(path, format!("data does not fit its shape: {e}")))?;
    array
        .into_dimensionality::<D>()
        .map_err(|e| FileError::format(path, format!("unexpected shape: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ndarray::{Array2, Ix2, Ix3};

    /// A version 1.0 `.npy` with `header_text` (padded like numpy) and `data`.
    pub(crate) fn npy_bytes(header_text: &str, data: &[u8]) -> Vec<u8> {
        let mut text = header_text.to_string();
        while (10 + text.len() + 1) % 64 != 0 {
            text.push(' ');
        }
        text.push('\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn read_bytes<A: NpyElement, D: Dimension>(bytes: &[u8]) -> Result<Array<A, D>, FileError> {
        read_from(
            &mut &bytes[..],
            bytes.len() as u64,
            Path::new("x.npy"),
            1 << 20,
            "a test array",
        )
    }

    #[test]
    fn a_huge_declared_shape_in_a_small_file_is_refused_before_allocating() {
        let bytes = npy_bytes(
            "{'descr':'|u1','fortran_order':False,'shape':(3000000,1000000,8)}",
            &[],
        );
        assert_eq!(bytes.len(), 128);
        let e = read_bytes::<u8, Ix3>(&bytes).unwrap_err().to_string();
        assert_eq!(
            e,
            "x.npy: header declares uint8 [3000000, 1000000, 8] = 21.8 TiB of data, but the file holds 0 B"
        );
        let overflow = npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551615, 2), }",
            &[],
        );
        let e = read_bytes::<f32, Ix2>(&overflow).unwrap_err().to_string();
        assert!(e.contains("more bytes than any file can hold"), "{e}");
    }

    #[test]
    fn a_header_length_beyond_the_file_or_the_limit_is_refused() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[2, 0]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"{}");
        let e = read_bytes::<f32, Ix2>(&bytes).unwrap_err().to_string();
        assert!(e.contains("longer than the 16384 accepted"), "{e}");
        let mut short = MAGIC.to_vec();
        short.extend_from_slice(&[1, 0, 200, 0]);
        short.extend_from_slice(b"{'descr'");
        let e = read_bytes::<f32, Ix2>(&short).unwrap_err().to_string();
        assert!(e.contains("declares 200 bytes but the file has 18"), "{e}");
    }

    #[test]
    fn deep_nesting_wrong_dtypes_and_dimensions_are_named() {
        let deep = npy_bytes(&format!("{}{}", "(".repeat(5000), ")".repeat(5000)), &[]);
        let e = read_bytes::<f32, Ix2>(&deep).unwrap_err().to_string();
        assert!(e.contains("nests brackets too deep"), "{e}");
        let f64s = npy_bytes(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }",
            &[0; 16],
        );
        let e = read_bytes::<f32, Ix2>(&f64s).unwrap_err().to_string();
        assert_eq!(e, "x.npy: is float64 [1, 2]; a test array must be float32");
        let three = npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2), }",
            &[0; 8],
        );
        let e = read_bytes::<f32, Ix2>(&three).unwrap_err().to_string();
        assert!(e.contains("must have 2 dimensions"), "{e}");
        let text = npy_bytes(
            "{'descr': '<U3', 'fortran_order': False, 'shape': (2,), }",
            &[0; 24],
        );
        let e = read_bytes::<f32, Ix2>(&text).unwrap_err().to_string();
        assert!(e.contains("\"<U3\" is not a numeric array type"), "{e}");
    }

    #[test]
    fn over_the_use_limit_is_refused_and_exact_files_are_read_in_either_order() {
        let c = npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &[1f32, 2., 3., 4., 5., 6.]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<_>>(),
        );
        let a: Array2<f32> = read_bytes(&c).unwrap();
        assert_eq!(a, ndarray::arr2(&[[1., 2., 3.], [4., 5., 6.]]));
        let f = c.replace_header_flag();
        let b: Array2<f32> = read_bytes(&f).unwrap();
        assert_eq!(b, ndarray::arr2(&[[1., 3., 5.], [2., 4., 6.]]));
        let e = read_from::<f32, Ix2>(&mut &c[..], c.len() as u64, Path::new("x.npy"), 8, "a bank")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "x.npy: 24 B is more than the 8 B accepted for a bank");
    }

    trait FortranFlag {
        fn replace_header_flag(&self) -> Vec<u8>;
    }
    impl FortranFlag for Vec<u8> {
        fn replace_header_flag(&self) -> Vec<u8> {
            let text = String::from_utf8_lossy(&self[10..64]).replace("False", "True ");
            [&self[..10], text.as_bytes(), &self[64..]].concat()
        }
    }

    #[test]
    fn files_written_by_ndarray_npy_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let a = Array2::from_shape_fn((3, 5), |(i, j)| (i * 5 + j) as u16);
        ndarray_npy::write_npy(&p, &a).unwrap();
        assert_eq!(read::<u16, Ix2>(&p, 1 << 20, "x").unwrap(), a);
        let h = probe(&p).unwrap();
        assert_eq!(
            (h.dtype, h.shape.clone(), h.data_bytes),
            (Dtype::Uint(2), vec![3, 5], 30)
        );
    }
}
