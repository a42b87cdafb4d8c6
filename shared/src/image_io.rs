//! Image decoding shared by host and edge: bytes or a file in, upright RGB8 out, or one clear error.
//!
//! - The format comes from the content, never from the file name (a WebP named `.jpg` decodes).
//! - EXIF orientation is applied, so the pixels are the upright photo a person sees.
//! - Grey, grey + alpha, RGBA, CMYK JPEG and 16-bit images all become RGB8.
//! - A truncated JPEG is an error: decoders fill the missing part with grey instead of failing, which would
//!   silently train on (or classify) half a photo.
//! - Decompression bombs are refused before any pixel buffer is allocated.
//! - [`decode_file_for`] decodes a large JPEG at 1/2, 1/4 or 1/8 of its size where a preprocessing recipe
//!   would throw the rest of the detail away in its resize (libjpeg's DCT scaling, PIL's `draft`): a 12 Mpixel
//!   phone photo in a third of the time, and the resize after it reads 16 to 64 times fewer pixels.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::preprocess::{PreprocessSpec, Resize};
use crate::region::Region;

/// Largest image accepted, in pixels (64 Mpixel: beyond any camera a user would point at Lookout).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Most memory a decoder may allocate for one image: 64 Mpixel of 16-bit RGBA, plus headroom.
pub const MAX_DECODE_BYTES: u64 = 640 * 1024 * 1024;

/// Why an image could not be decoded, and which file it was.
#[derive(Debug, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct DecodeError {
    /// The file (or the name the bytes came under).
    pub path: PathBuf,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// What went wrong while decoding an image.
#[derive(Debug, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
    /// The file has no bytes.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// The content is not an image format Lookout reads.
    #[error("not an image Lookout can read (expected JPEG, PNG, WebP, GIF, BMP or TIFF content)")]
    UnknownFormat,
    /// The file ends before the image does.
    #[error("the image is truncated ({0}); the file was probably cut short while copying or downloading")]
    Truncated(String),
    /// The content is damaged.
    #[error("the image data is corrupt: {0}")]
    Corrupt(String),
    /// The format is recognised but this variant of it is not supported.
    #[error("unsupported image variant: {0}")]
    Unsupported(String),
    /// The image is larger than [`MAX_PIXELS`] or would need more than [`MAX_DECODE_BYTES`].
    #[error(
        "the image is too large to decode safely{}; the limit is {max_pixels} pixels and {max_bytes} bytes of \
         decoder memory (a decompression bomb, or a photo that needs downscaling first)",
        describe_size(*dimensions)
    )]
    TooLarge {
        /// Width and height from the header, where the decoder got that far.
        dimensions: Option<(u32, u32)>,
        /// [`MAX_PIXELS`].
        max_pixels: u64,
        /// [`MAX_DECODE_BYTES`].
        max_bytes: u64,
    },
}

impl DecodeErrorKind {
    fn too_large(dimensions: Option<(u32, u32)>) -> Self {
        Self::TooLarge {
            dimensions,
            max_pixels: MAX_PIXELS,
            max_bytes: MAX_DECODE_BYTES,
        }
    }

    fn at(self, path: &Path) -> DecodeError {
        DecodeError {
            path: path.to_path_buf(),
            kind: self,
        }
    }
}

/// Reads and decodes the image file at `path` (format from the content, EXIF orientation applied).
pub fn decode_file(path: &Path) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeErrorKind::Io(e).at(path))?;
    decode_bytes(&bytes, path)
}

/// Decodes an encoded image held in memory; `origin` names it in error messages only.
pub fn decode_bytes(bytes: &[u8], origin: &Path) -> Result<RgbImage, DecodeError> {
    decode(bytes).map_err(|kind| kind.at(origin))
}

/// Reads and decodes the image file at `path` for `spec`, which will see each of `regions` of it (the whole
/// image when there are none): a JPEG at least twice as large as the recipe's resize needs is decoded smaller
/// in the DCT domain ([`decode_bytes_for`]). Every path that turns a file or an encoded frame into a model
/// input (feature extraction, the export's gate, `evaluate`, `predict`, `lookout-edge classify` and `watch`)
/// decodes through this, so an image gives the same tensor on the host and on the edge.
pub fn decode_file_for(
    path: &Path,
    spec: &PreprocessSpec,
    regions: &[Region],
) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeErrorKind::Io(e).at(path))?;
    decode_bytes_for(&bytes, path, spec, regions)
}

/// [`decode_bytes`] for `spec` and `regions` (see [`decode_file_for`]). A JPEG is decoded at the smallest of
/// 1/8, 1/4 and 1/2 of its size that still gives the recipe's resize at least as many pixels as it keeps
/// across every region; anything else (another format, a recipe that samples without antialiasing, a 16-bit
/// or CMYK JPEG, a photo too small to scale) is decoded as [`decode_bytes`] does.
pub fn decode_bytes_for(
    bytes: &[u8],
    origin: &Path,
    spec: &PreprocessSpec,
    regions: &[Region],
) -> Result<RgbImage, DecodeError> {
    let fits = |width: u32, height: u32| {
        if regions.is_empty() {
            keeps_detail(spec, 1.0, 1.0, width, height)
        } else {
            regions
                .iter()
                .all(|r| keeps_detail(spec, f64::from(r.w), f64::from(r.h), width, height))
        }
    };
    decode_scaled(bytes, &fits).map_err(|kind| kind.at(origin))
}

/// Whether an upright image of `width × height` still gives `spec`'s resize at least the pixels it keeps of a
/// region `fw × fh` of it (fractions), so that decoding the photo smaller loses nothing the model would see.
/// Only for antialiased resizes: they low-pass the image by the downscale factor (as DCT scaling does); a
/// resize that samples single pixels would see other pixels.
fn keeps_detail(spec: &PreprocessSpec, fw: f64, fh: f64, width: u32, height: u32) -> bool {
    if !spec.antialias {
        return false;
    }
    let (w, h) = (f64::from(width) * fw, f64::from(height) * fh);
    match spec.resize {
        Resize::ShorterSide(side) => w.min(h) >= f64::from(side),
        Resize::Exact { width, height } => w >= f64::from(width) && h >= f64::from(height),
    }
}

/// The DCT scales tried, smallest image first (the divisor of each side).
const DCT_SCALES: [u32; 3] = [8, 4, 2];

fn decode_scaled(
    bytes: &[u8],
    fits: &dyn Fn(u32, u32) -> bool,
) -> Result<RgbImage, DecodeErrorKind> {
    if bytes.is_empty() || sniff_format(bytes) != Some(ImageFormat::Jpeg) {
        return decode(bytes);
    }
    check_jpeg_complete(bytes)?;
    // The header and the EXIF orientation as `decode` reads them; the pixels from a decoder that scales.
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Jpeg)
        .into_decoder()
        .map_err(from_image_error)?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    drop(decoder);
    if width == 0 || height == 0 || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return decode(bytes);
    }
    // The region and the recipe are upright; a photo stored sideways swaps its sides.
    let upright = |w: u32, h: u32| {
        if swaps_sides(orientation) {
            (h, w)
        } else {
            (w, h)
        }
    };
    let fits_upright = |w: u32, h: u32| {
        let (w, h) = upright(w, h);
        fits(w, h)
    };
    let Some(divisor) = DCT_SCALES
        .into_iter()
        .find(|d| fits_upright(width.div_ceil(*d), height.div_ceil(*d)))
    else {
        return decode(bytes);
    };
    let (Ok(request_w), Ok(request_h)) = (
        u16::try_from(width.div_ceil(divisor)),
        u16::try_from(height.div_ceil(divisor)),
    ) else {
        return decode(bytes);
    };
    // The scaled decode is a shortcut: a JPEG this decoder refuses (arithmetic coding, a damaged segment it
    // reads more strictly) is decoded as stored, which reads it or says what is wrong with it.
    let mut jpeg = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let Ok((w, h)) = jpeg.scale(request_w, request_h) else {
        return decode(bytes);
    };
    let (w, h) = (u32::from(w), u32::from(h));
    let format = jpeg.info().map(|i| i.pixel_format);
    if !fits_upright(w, h)
        || !matches!(
            format,
            Some(jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8)
        )
    {
        return decode(bytes);
    }
    let Ok(pixels) = jpeg.decode() else {
        return decode(bytes);
    };
    let rgb = match format {
        Some(jpeg_decoder::PixelFormat::L8) => {
            image::GrayImage::from_raw(w, h, pixels).map(|g| DynamicImage::ImageLuma8(g).to_rgb8())
        }
        _ => RgbImage::from_raw(w, h, pixels),
    };
    let Some(rgb) = rgb else {
        return decode(bytes);
    };
    let mut image = DynamicImage::ImageRgb8(rgb);
    image.apply_orientation(orientation);
    Ok(to_rgb8(image))
}

/// Whether applying `orientation` turns the stored image a quarter turn (its width becomes its height).
fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The image format of `bytes`, from their content (magic numbers), or `None` if they are no image format
/// Lookout reads. Cheap: looks at the first bytes only; use it to pick images out of a folder.
pub fn sniff_format(bytes: &[u8]) -> Option<ImageFormat> {
    let format = image::guess_format(bytes).ok()?;
    SUPPORTED_FORMATS.contains(&format).then_some(format)
}

/// File extensions that say "this is meant to be an image". A file named so whose content is not one, a
/// directory named so, or a link named so that leads nowhere is reported as a bad file by the folder walkers,
/// never ignored in silence; any other file counts as an image only by its content.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff", "pgm", "ppm", "ico",
];

/// Enough leading bytes for every magic number [`sniff_format`] knows.
const SNIFF_LEN: u64 = 64;

/// Whether the file name ends in one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(e))
    })
}

/// What one entry of an image folder is, by the one rule both folder walkers (the host's data sets, the edge's
/// `classify DIR` and `dir:` source) follow. Symbolic links are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderEntry {
    /// A directory to walk into.
    Directory,
    /// A file whose first bytes are an image format Lookout reads.
    Image {
        /// Size in bytes.
        len: u64,
        /// Last modification time, where the file system has one.
        modified: Option<std::time::SystemTime>,
    },
    /// Meant to be an image (named so, or an empty file) but unusable: report it with this reason.
    Bad(String),
    /// Anything else (a `notes.txt`, a socket): not an image, ignored.
    Other,
}

/// Examines one folder entry (see [`FolderEntry`]); never blocks on a named pipe and never fails: what cannot
/// be read is [`FolderEntry::Bad`] when it is named like an image, [`FolderEntry::Other`] when not.
pub fn examine_folder_entry(path: &Path) -> FolderEntry {
    use std::io::Read;
    let named_like_image = has_image_extension(path);
    let bad_or_other = |reason: String| {
        if named_like_image {
            FolderEntry::Bad(reason)
        } else {
            FolderEntry::Other
        }
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            // A dangling link is named like an image more often than not (`ln -s ../photos/*.jpg`): report
            // it even without the extension, since the user put it there on purpose.
            return if is_link {
                FolderEntry::Bad(format!("broken symbolic link: {e}"))
            } else {
                bad_or_other(format!("cannot read it: {e}"))
            };
        }
    };
    if meta.is_dir() {
        return if named_like_image {
            FolderEntry::Bad(
                "a directory named like an image file; rename it to walk into it".into(),
            )
        } else {
            FolderEntry::Directory
        };
    }
    if !meta.is_file() {
        return bad_or_other("not a regular file (a pipe, socket or device)".into());
    }
    let mut head = Vec::with_capacity(SNIFF_LEN as usize);
    let read =
        std::fs::File::open(path).and_then(|file| file.take(SNIFF_LEN).read_to_end(&mut head));
    if let Err(e) = read {
        return bad_or_other(format!("cannot read it: {e}"));
    }
    if sniff_format(&head).is_some() {
        FolderEntry::Image {
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    } else if head.is_empty() {
        FolderEntry::Bad("empty file".into())
    } else {
        bad_or_other("content is not a known image format".into())
    }
}

/// What [`walk_images`] found, in walk order: each image (`None`) and each file meant to be one that is
/// unusable (`Some(reason)`).
pub type WalkedImages = Vec<(PathBuf, Option<String>)>;

/// Every image under `dir`, recursively, in sorted order, judged by [`examine_folder_entry`] (the rule the
/// data sets follow), with the unusable ones and why; hidden files and folders (`.name`) are skipped. The one
/// walk behind `lookout predict`, `lookout evaluate --ood`, `lookout-edge classify` and `--source dir:`.
/// An unreadable folder is an error naming it.
pub fn walk_images(dir: &Path) -> Result<WalkedImages, (PathBuf, io::Error)> {
    let mut found = Vec::new();
    walk_into(dir, &mut found)?;
    Ok(found)
}

fn walk_into(dir: &Path, found: &mut WalkedImages) -> Result<(), (PathBuf, io::Error)> {
    let error = |e| (dir.to_path_buf(), e);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        match examine_folder_entry(&path) {
            FolderEntry::Directory => walk_into(&path, found)?,
            FolderEntry::Image { .. } => found.push((path, None)),
            FolderEntry::Bad(reason) => found.push((path, Some(reason))),
            FolderEntry::Other => {}
        }
    }
    Ok(())
}

/// The formats the `image` features of this crate decode.
const SUPPORTED_FORMATS: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
];

fn decode(bytes: &[u8]) -> Result<RgbImage, DecodeErrorKind> {
    if bytes.is_empty() {
        return Err(DecodeErrorKind::Empty);
    }
    let format = sniff_format(bytes).ok_or(DecodeErrorKind::UnknownFormat)?;
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(from_image_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(DecodeErrorKind::Corrupt(format!(
            "the header says {width}x{height} pixels"
        )));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(DecodeErrorKind::too_large(Some((width, height))));
    }
    // A damaged EXIF block should not make an intact photo unreadable: decode it as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| match from_image_error(e) {
        DecodeErrorKind::TooLarge { .. } => DecodeErrorKind::too_large(Some((width, height))),
        other => other,
    })?;
    image.apply_orientation(orientation);
    Ok(to_rgb8(image))
}

/// Converts any decoded image to RGB8. Alpha is dropped, not composited over a background: that is what
/// PIL's `convert("RGB")` does, which the PyTorch pipelines Lookout's models come from use, so a model sees
/// the same pixels here as where it was made.
fn to_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        // 16-bit and float images are scaled to 0..255 with rounding; grey is replicated to R, G and B.
        other => other.to_rgb8(),
    }
}

fn describe_size(dimensions: Option<(u32, u32)>) -> String {
    dimensions
        .map(|(width, height)| format!(" ({width}x{height} pixels)"))
        .unwrap_or_default()
}

fn from_image_error(error: ImageError) -> DecodeErrorKind {
    match error {
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            DecodeErrorKind::Truncated(String::from("the data ends early"))
        }
        ImageError::IoError(e) => DecodeErrorKind::Io(e),
        ImageError::Limits(_) => DecodeErrorKind::too_large(None),
        ImageError::Unsupported(e) => DecodeErrorKind::Unsupported(e.to_string()),
        ImageError::Decoding(e) => {
            let message = e.to_string();
            if looks_truncated(&message) {
                DecodeErrorKind::Truncated(message)
            } else {
                DecodeErrorKind::Corrupt(message)
            }
        }
        other => DecodeErrorKind::Corrupt(other.to_string()),
    }
}

/// Whether a decoder's message says the data ran out (decoders report it as text, not as a type).
fn looks_truncated(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "unexpected eof",
        "unexpected end",
        "no more bytes",
        "end of file",
        "not enough data",
        "truncated",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Checks that a JPEG holds a complete image: its headers are all there, and an end-of-image marker (FF D9)
/// follows the first scan. Inside entropy-coded data every FF byte is followed by 00 or a restart marker, so
/// an FF D9 there is a real marker; one in an EXIF thumbnail comes before the first scan and does not count.
/// Bytes after the EOI (phone cameras append data) are accepted: the image itself is whole.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), DecodeErrorKind> {
    const EOI: [u8; 2] = [0xFF, 0xD9];
    let first_scan = match first_scan_offset(bytes) {
        HeaderWalk::Scan(offset) => offset,
        HeaderWalk::Truncated => {
            return Err(DecodeErrorKind::Truncated(String::from(
                "the JPEG ends inside its headers, before any image data",
            )))
        }
        HeaderWalk::EndBeforeScan => {
            return Err(DecodeErrorKind::Corrupt(String::from(
                "the JPEG has no image data (no scan)",
            )))
        }
        // Stray bytes between segments: decoders skip them, so fall back to the last scan marker found by
        // a plain search (an FF DA cannot occur inside entropy-coded data either).
        HeaderWalk::Malformed => bytes
            .windows(2)
            .rposition(|w| w == [0xFF, 0xDA])
            .ok_or_else(|| {
                DecodeErrorKind::Corrupt(String::from("the JPEG has no image data (no scan)"))
            })?,
    };
    if bytes[first_scan..].windows(2).any(|w| w == EOI) {
        Ok(())
    } else {
        Err(DecodeErrorKind::Truncated(String::from(
            "the JPEG has no end-of-image marker after its image data",
        )))
    }
}

enum HeaderWalk {
    /// Offset of the first start-of-scan marker.
    Scan(usize),
    /// The bytes end inside a header segment.
    Truncated,
    /// An end-of-image marker before any scan.
    EndBeforeScan,
    /// Bytes that are not a marker where one should be.
    Malformed,
}

/// Walks the JPEG marker segments from SOI to the first SOS, skipping each by its length.
fn first_scan_offset(bytes: &[u8]) -> HeaderWalk {
    let mut pos = 2; // after SOI (FF D8), which sniff_format checked
    loop {
        if pos >= bytes.len() {
            return HeaderWalk::Truncated;
        }
        if bytes[pos] != 0xFF {
            return HeaderWalk::Malformed;
        }
        // Any number of FF fill bytes may precede a marker.
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return HeaderWalk::Truncated;
        };
        pos += 1;
        match marker {
            0xDA => return HeaderWalk::Scan(pos - 2),
            0xD9 => return HeaderWalk::EndBeforeScan,
            // Markers without a length field.
            0x01 | 0xD0..=0xD8 => continue,
            0x00 => return HeaderWalk::Malformed,
            _ => {
                let Some(length) = bytes.get(pos..pos + 2) else {
                    return HeaderWalk::Truncated;
                };
                let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
                if length < 2 {
                    return HeaderWalk::Malformed;
                }
                pos += length;
                if pos > bytes.len() {
                    return HeaderWalk::Truncated;
                }
            }
        }
    }
}
