//! The one implementation of [`PreprocessSpec`], shared by host (feature extraction) and edge (inference).
//!
//! Resize and center crop happen in one `fast_image_resize` call: the crop of the resized image is mapped
//! back to a rectangle of the source, and the resampler reads source pixels outside that rectangle where the
//! filter reaches them, exactly as a full resize followed by a crop would. A lookup table then normalises
//! and transposes the u8 pixels in one pass.

use fast_image_resize as fir;
use fir::images::{Image, ImageRef};
use fir::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::{ChannelOrder, Filter, Layout, PreprocessSpec, Resize, SpecError};

/// Why an image could not be preprocessed.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The recipe itself is invalid.
    #[error("invalid preprocessing recipe: {0}")]
    Spec(#[from] SpecError),
    /// The image has no pixels.
    #[error("the image is empty ({width}x{height} pixels)")]
    EmptyImage {
        /// Image width.
        width: u32,
        /// Image height.
        height: u32,
    },
    /// The output slice does not have [`Preprocessor::tensor_len`] elements.
    #[error("output buffer holds {got} floats but the tensor needs {expected}")]
    OutputLength {
        /// What the tensor needs.
        expected: usize,
        /// What the caller passed.
        got: usize,
    },
    /// The resampler refused the images (a bug: sizes are checked before).
    #[error("resize failed: {0}")]
    Resize(String),
}

/// Runs one [`PreprocessSpec`] over many images, reusing its buffers: after the first image, a call
/// allocates nothing but the small coefficient tables `fast_image_resize` builds per call.
pub struct Preprocessor {
    spec: PreprocessSpec,
    resizer: Resizer,
    algorithm: ResizeAlg,
    /// Output height and width (after the crop).
    out_height: u32,
    out_width: u32,
    /// Resized and cropped RGB8 pixels, `out_height * out_width * 3`.
    pixels: Vec<u8>,
    /// `lut[c][v]` is the normalised value of u8 value `v` in source channel `c` (R, G, B).
    lut: [[f32; 256]; 3],
    /// For each model channel, the source channel (R=0, G=1, B=2) it reads.
    source_channel: [usize; 3],
    input_shape: [usize; 4],
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("spec", &self.spec)
            .field("input_shape", &self.input_shape)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    /// A preprocessor for `spec`; fails if the spec is invalid or has no fixed output size.
    pub fn new(spec: &PreprocessSpec) -> Result<Self, PreprocessError> {
        let input_shape = spec.input_shape()?;
        let (out_height, out_width) = spec.output_size()?;
        let algorithm = match (spec.filter, spec.antialias) {
            (Filter::Nearest, _) => ResizeAlg::Nearest,
            // Convolution widens the kernel by the downscale factor (PIL's and torchvision's antialias);
            // Interpolation keeps it fixed (OpenCV-like, torchvision's antialias=False).
            (filter, true) => ResizeAlg::Convolution(filter_type(filter)),
            (filter, false) => ResizeAlg::Interpolation(filter_type(filter)),
        };
        let source_channel = match spec.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        // Same f32 operations, in the same order, as torchvision's `to(float) / 255` then
        // `(x - mean) / std`, so that equal u8 pixels give bit-identical floats.
        let mut lut = [[0f32; 256]; 3];
        for (model_channel, &source) in source_channel.iter().enumerate() {
            for (value, slot) in lut[source].iter_mut().enumerate() {
                *slot = (value as f32 / spec.input_scale - spec.mean[model_channel])
                    / spec.std[model_channel];
            }
        }
        Ok(Self {
            spec: spec.clone(),
            resizer: Resizer::new(),
            algorithm,
            out_height,
            out_width,
            pixels: vec![0; out_height as usize * out_width as usize * 3],
            lut,
            source_channel,
            input_shape,
        })
    }

    /// The recipe this preprocessor runs.
    pub fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    /// Number of f32 values in one image's tensor.
    pub fn tensor_len(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Shape of one image's tensor (batch 1), in the spec's layout.
    pub fn input_shape(&self) -> [usize; 4] {
        self.input_shape
    }

    /// Preprocesses `image` into `out`, which must hold exactly [`Preprocessor::tensor_len`] values.
    pub fn run_into(&mut self, image: &RgbImage, out: &mut [f32]) -> Result<(), PreprocessError> {
        let expected = self.tensor_len();
        if out.len() != expected {
            return Err(PreprocessError::OutputLength {
                expected,
                got: out.len(),
            });
        }
        self.resize_and_crop(image)?;
        self.normalise_into(out);
        Ok(())
    }

    /// Preprocesses `image` into a new tensor of [`Preprocessor::tensor_len`] values.
    pub fn run(&mut self, image: &RgbImage) -> Result<Vec<f32>, PreprocessError> {
        let mut out = vec![0f32; self.tensor_len()];
        self.run_into(image, &mut out)?;
        Ok(out)
    }

    /// The resized and center-cropped RGB8 pixels of the last image run (row-major, `h * w * 3`).
    pub fn last_pixels(&self) -> &[u8] {
        &self.pixels
    }

    fn resize_and_crop(&mut self, image: &RgbImage) -> Result<(), PreprocessError> {
        let (width, height) = image.dimensions();
        if width == 0 || height == 0 {
            return Err(PreprocessError::EmptyImage { width, height });
        }
        let (resized_width, resized_height) = resized_size(self.spec.resize, width, height);
        let (top, left) = crop_offset(
            (resized_height, resized_width),
            (self.out_height, self.out_width),
        );
        // The crop rectangle of the resized image, in source coordinates. The resampler centres output
        // pixel j at left_src + (j + 0.5) * scale, which is where a full resize puts pixel left + j.
        let scale_x = f64::from(width) / f64::from(resized_width);
        let scale_y = f64::from(height) / f64::from(resized_height);
        let options = ResizeOptions::new().resize_alg(self.algorithm).crop(
            f64::from(left) * scale_x,
            f64::from(top) * scale_y,
            f64::from(self.out_width) * scale_x,
            f64::from(self.out_height) * scale_y,
        );
        let source = ImageRef::new(width, height, image.as_raw(), PixelType::U8x3)
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
        let mut target = Image::from_slice_u8(
            self.out_width,
            self.out_height,
            &mut self.pixels,
            PixelType::U8x3,
        )
        .map_err(|e| PreprocessError::Resize(e.to_string()))?;
        self.resizer
            .resize(&source, &mut target, &options)
            .map_err(|e| PreprocessError::Resize(e.to_string()))
    }

    fn normalise_into(&self, out: &mut [f32]) {
        let plane = self.out_height as usize * self.out_width as usize;
        let [r_lut, g_lut, b_lut] = &self.lut;
        match self.spec.layout {
            Layout::Nchw => {
                // Model channel k reads source channel source_channel[k]: split the output into planes
                // indexed by source channel so the loop below stays branch-free.
                let (first, rest) = out.split_at_mut(plane);
                let (second, third) = rest.split_at_mut(plane);
                let mut planes: [Option<&mut [f32]>; 3] = [None, None, None];
                for (plane_out, &source) in
                    [first, second, third].into_iter().zip(&self.source_channel)
                {
                    planes[source] = Some(plane_out);
                }
                if let [Some(r), Some(g), Some(b)] = planes {
                    for (i, px) in self.pixels.chunks_exact(3).enumerate() {
                        r[i] = r_lut[px[0] as usize];
                        g[i] = g_lut[px[1] as usize];
                        b[i] = b_lut[px[2] as usize];
                    }
                }
            }
            Layout::Nhwc => {
                let [c0, c1, c2] = self.source_channel;
                for (px, o) in self.pixels.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
                    o[0] = self.lut[c0][px[c0] as usize];
                    o[1] = self.lut[c1][px[c1] as usize];
                    o[2] = self.lut[c2][px[c2] as usize];
                }
            }
        }
    }
}

/// Preprocesses one image with `spec` (builds a [`Preprocessor`]; keep one to process many images).
pub fn preprocess(spec: &PreprocessSpec, image: &RgbImage) -> Result<Vec<f32>, PreprocessError> {
    Preprocessor::new(spec)?.run(image)
}

fn filter_type(filter: Filter) -> FilterType {
    match filter {
        // Unreachable through Preprocessor::new (nearest has its own algorithm); box is its convolution twin.
        Filter::Nearest => FilterType::Box,
        Filter::Bilinear => FilterType::Bilinear,
        // PIL's bicubic is Catmull-Rom (a = -0.5).
        Filter::Bicubic => FilterType::CatmullRom,
        Filter::Lanczos3 => FilterType::Lanczos3,
    }
}

/// Size (width, height) of the resized image, as torchvision's `Resize` computes it: the long side is
/// `int(size * long / short)`, truncated.
pub(crate) fn resized_size(resize: Resize, width: u32, height: u32) -> (u32, u32) {
    match resize {
        Resize::Exact { width, height } => (width, height),
        Resize::ShorterSide(side) => {
            let (short, long) = (width.min(height), width.max(height));
            // Exact integer floor: equal to Python's float truncation, as side * long / short is never
            // within one float ulp of the next integer for image-sized numbers.
            let new_long = (u64::from(side) * u64::from(long) / u64::from(short)).max(1);
            let new_long = u32::try_from(new_long).unwrap_or(u32::MAX);
            if width <= height {
                (side, new_long)
            } else {
                (new_long, side)
            }
        }
    }
}

/// Top and left offset of a centered crop, as torchvision's `center_crop`: `int(round((h - crop) / 2.0))`,
/// with Python's round-half-to-even.
pub(crate) fn crop_offset(resized: (u32, u32), crop: (u32, u32)) -> (u32, u32) {
    let offset = |size: u32, crop: u32| {
        (f64::from(size.saturating_sub(crop)) / 2.0).round_ties_even() as u32
    };
    (offset(resized.0, crop.0), offset(resized.1, crop.1))
}
