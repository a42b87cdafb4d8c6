//! The preprocessing recipe, and (with `std`) its implementation.
//!
//! The spec is plain data so it can travel inside a bundle header and a features file: whoever reads it
//! reproduces exactly the tensor the model was trained on.

use alloc::string::String;
use serde::{Deserialize, Serialize};

#[cfg(feature = "std")]
mod preprocessor;
#[cfg(feature = "std")]
pub use preprocessor::{preprocess, PreprocessError, Preprocessor};

/// How the decoded image is resized before the center crop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Resize {
    /// Scale so that the shorter side is this many pixels, keeping the aspect ratio (torchvision `Resize(int)`).
    ShorterSide(u32),
    /// Scale to exactly this size, ignoring the aspect ratio.
    Exact {
        /// Target width in pixels.
        width: u32,
        /// Target height in pixels.
        height: u32,
    },
}

/// Resampling filter used by the resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Filter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (triangle) filter; with antialias it matches torchvision's `antialias=True` resize.
    Bilinear,
    /// Bicubic (Catmull-Rom, a = -0.5, as PIL).
    Bicubic,
    /// Lanczos with a = 3.
    Lanczos3,
}

/// Order of the three colour channels in the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChannelOrder {
    /// Red, green, blue (PyTorch, TF).
    Rgb,
    /// Blue, green, red (Caffe-era models).
    Bgr,
}

/// Memory layout of the model input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Layout {
    /// Batch, channels, height, width (PyTorch, ONNX).
    Nchw,
    /// Batch, height, width, channels (TFLite).
    Nhwc,
}

/// The full preprocessing recipe: decode → RGB8 → resize → center crop → scale → normalise → layout, as f32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PreprocessSpec {
    /// Human-readable name of the recipe (`torchvision`, `tf-inception`, or `custom`).
    pub name: String,
    /// Resize step.
    pub resize: Resize,
    /// Resampling filter.
    pub filter: Filter,
    /// Low-pass the image when downscaling (torchvision `antialias=True`, PIL's behaviour).
    pub antialias: bool,
    /// Center crop height and width, applied after the resize; `None` keeps the resized image.
    pub crop: Option<(u32, u32)>,
    /// Pixel values are divided by this first (255.0 maps u8 to 0..1).
    pub input_scale: f32,
    /// Per-channel mean subtracted after scaling, in the model's channel order.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after the mean, in the model's channel order.
    pub std: [f32; 3],
    /// Channel order of the model input.
    pub channel_order: ChannelOrder,
    /// Layout of the model input.
    pub layout: Layout,
}

/// Largest side, in pixels, a spec may ask for: a bundle header is untrusted input, and no model input
/// or resize target of a sane recipe comes near it.
pub const MAX_SIDE: u32 = 8192;

/// What is wrong with a [`PreprocessSpec`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// A resize or crop size is zero.
    #[error("preprocessing {what} is zero pixels; give a positive size")]
    ZeroSize {
        /// Which size (`resize`, `crop`).
        what: &'static str,
    },
    /// A resize or crop size is above [`MAX_SIDE`].
    #[error(
        "preprocessing {what} of {size} pixels is above the limit of {max}; use a smaller size"
    )]
    TooLarge {
        /// Which size (`resize`, `crop`).
        what: &'static str,
        /// The offending size.
        size: u32,
        /// The limit, [`MAX_SIDE`].
        max: u32,
    },
    /// The center crop is larger than what the resize guarantees.
    #[error(
        "center crop {crop_height}x{crop_width} (h x w) is larger than the resized image \
         ({resized}); crop at most the resized size"
    )]
    CropLargerThanResize {
        /// Crop height.
        crop_height: u32,
        /// Crop width.
        crop_width: u32,
        /// The resize step, in words.
        resized: &'static str,
    },
    /// The input scale is zero, negative or not finite.
    #[error("input scale {0} must be a positive finite number (255 maps u8 pixels to 0..1)")]
    BadScale(f32),
    /// A mean is not finite.
    #[error("mean of channel {channel} is {value}; it must be a finite number")]
    BadMean {
        /// Channel index in the model's order.
        channel: usize,
        /// The offending value.
        value: f32,
    },
    /// A standard deviation is zero, negative or not finite.
    #[error("std of channel {channel} is {value}; it must be a positive finite number")]
    BadStd {
        /// Channel index in the model's order.
        channel: usize,
        /// The offending value.
        value: f32,
    },
    /// The output size depends on the image (shorter-side resize without a crop).
    #[error(
        "the tensor size would depend on each image's aspect ratio (shorter-side resize without a crop); \
         add a center crop or use an exact resize"
    )]
    NoFixedShape,
}

impl PreprocessSpec {
    /// Names accepted by [`PreprocessSpec::preset`].
    pub const PRESETS: &'static [&'static str] = &["torchvision", "tf-inception"];

    /// torchvision's ImageNet recipe, as `MobileNet_V3_Large_Weights.DEFAULT.transforms()`: shorter side to 232
    /// (bilinear, antialiased), center crop 224, /255, ImageNet mean and std, RGB, NCHW.
    pub fn torchvision() -> Self {
        Self {
            name: String::from("torchvision"),
            resize: Resize::ShorterSide(232),
            filter: Filter::Bilinear,
            antialias: true,
            crop: Some((224, 224)),
            input_scale: 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            channel_order: ChannelOrder::Rgb,
            layout: Layout::Nchw,
        }
    }

    /// The TF/Inception-style recipe of the ONNX backbones: shorter side to 256 (bilinear, antialiased),
    /// center crop 224, /255, mean = std = 0.5 (pixels in -1..1), RGB, NCHW.
    pub fn tf_inception() -> Self {
        Self {
            name: String::from("tf-inception"),
            resize: Resize::ShorterSide(256),
            filter: Filter::Bilinear,
            antialias: true,
            crop: Some((224, 224)),
            input_scale: 255.0,
            mean: [0.5; 3],
            std: [0.5; 3],
            channel_order: ChannelOrder::Rgb,
            layout: Layout::Nchw,
        }
    }

    /// The preset called `name` (one of [`PreprocessSpec::PRESETS`]), if there is one.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "torchvision" => Some(Self::torchvision()),
            "tf-inception" => Some(Self::tf_inception()),
            _ => None,
        }
    }

    /// Checks that the recipe can be run and yields a fixed-size tensor.
    pub fn validate(&self) -> Result<(), SpecError> {
        fn check_side(what: &'static str, size: u32) -> Result<(), SpecError> {
            if size == 0 {
                Err(SpecError::ZeroSize { what })
            } else if size > MAX_SIDE {
                Err(SpecError::TooLarge {
                    what,
                    size,
                    max: MAX_SIDE,
                })
            } else {
                Ok(())
            }
        }
        // The size the resize guarantees for (height, width), and the same in words for errors.
        let (min_height, min_width, resized) = match self.resize {
            Resize::ShorterSide(side) => {
                check_side("resize", side)?;
                (side, side, "shorter side")
            }
            Resize::Exact { width, height } => {
                check_side("resize", width)?;
                check_side("resize", height)?;
                (height, width, "exact size")
            }
        };
        match self.crop {
            Some((crop_height, crop_width)) => {
                check_side("crop", crop_height)?;
                check_side("crop", crop_width)?;
                if crop_height > min_height || crop_width > min_width {
                    return Err(SpecError::CropLargerThanResize {
                        crop_height,
                        crop_width,
                        resized,
                    });
                }
            }
            None if matches!(self.resize, Resize::ShorterSide(_)) => {
                return Err(SpecError::NoFixedShape)
            }
            None => {}
        }
        if !(self.input_scale.is_finite() && self.input_scale > 0.0) {
            return Err(SpecError::BadScale(self.input_scale));
        }
        for (channel, (&mean, &std)) in self.mean.iter().zip(&self.std).enumerate() {
            if !mean.is_finite() {
                return Err(SpecError::BadMean {
                    channel,
                    value: mean,
                });
            }
            if !(std.is_finite() && std > 0.0) {
                return Err(SpecError::BadStd {
                    channel,
                    value: std,
                });
            }
        }
        Ok(())
    }

    /// Height and width of the tensor this recipe produces.
    fn output_size(&self) -> Result<(u32, u32), SpecError> {
        self.validate()?;
        match (self.crop, self.resize) {
            (Some((height, width)), _) => Ok((height, width)),
            (None, Resize::Exact { width, height }) => Ok((height, width)),
            (None, Resize::ShorterSide(_)) => Err(SpecError::NoFixedShape),
        }
    }

    /// Shape of the model input for one image (batch 1), in the spec's layout: `[1, 3, h, w]` or `[1, h, w, 3]`.
    pub fn input_shape(&self) -> Result<[usize; 4], SpecError> {
        let (height, width) = self.output_size()?;
        let (height, width) = (height as usize, width as usize);
        Ok(match self.layout {
            Layout::Nchw => [1, 3, height, width],
            Layout::Nhwc => [1, height, width, 3],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_named() {
        for &name in PreprocessSpec::PRESETS {
            let spec = PreprocessSpec::preset(name).expect("listed preset exists");
            assert_eq!(spec.name, name);
            assert_eq!(spec.validate(), Ok(()));
            assert_eq!(spec.input_shape(), Ok([1, 3, 224, 224]));
        }
        assert_eq!(PreprocessSpec::preset("imagenet"), None);
        let nhwc = PreprocessSpec {
            layout: Layout::Nhwc,
            crop: Some((160, 192)),
            ..PreprocessSpec::tf_inception()
        };
        assert_eq!(nhwc.input_shape(), Ok([1, 160, 192, 3]));
    }

    #[test]
    fn invalid_specs_are_refused() {
        let base = PreprocessSpec::torchvision;
        let cases = [
            (
                PreprocessSpec {
                    crop: None,
                    ..base()
                },
                SpecError::NoFixedShape,
            ),
            (
                PreprocessSpec {
                    resize: Resize::ShorterSide(0),
                    ..base()
                },
                SpecError::ZeroSize { what: "resize" },
            ),
            (
                PreprocessSpec {
                    crop: Some((0, 224)),
                    ..base()
                },
                SpecError::ZeroSize { what: "crop" },
            ),
            (
                PreprocessSpec {
                    resize: Resize::ShorterSide(100_000),
                    ..base()
                },
                SpecError::TooLarge {
                    what: "resize",
                    size: 100_000,
                    max: MAX_SIDE,
                },
            ),
            (
                PreprocessSpec {
                    crop: Some((240, 224)),
                    ..base()
                },
                SpecError::CropLargerThanResize {
                    crop_height: 240,
                    crop_width: 224,
                    resized: "shorter side",
                },
            ),
            (
                PreprocessSpec {
                    input_scale: 0.0,
                    ..base()
                },
                SpecError::BadScale(0.0),
            ),
            (
                PreprocessSpec {
                    std: [0.2, -1.0, 0.2],
                    ..base()
                },
                SpecError::BadStd {
                    channel: 1,
                    value: -1.0,
                },
            ),
            (
                PreprocessSpec {
                    mean: [0.2, 0.2, f32::INFINITY],
                    ..base()
                },
                SpecError::BadMean {
                    channel: 2,
                    value: f32::INFINITY,
                },
            ),
        ];
        for (spec, error) in cases {
            assert_eq!(spec.validate(), Err(error.clone()));
            assert_eq!(spec.input_shape(), Err(error));
        }
        let exact = PreprocessSpec {
            resize: Resize::Exact {
                width: 300,
                height: 200,
            },
            crop: None,
            ..base()
        };
        assert_eq!(exact.input_shape(), Ok([1, 3, 200, 300]));
    }

    #[cfg(feature = "std")]
    #[test]
    fn sizes_follow_torchvision() {
        use preprocessor::{crop_offset, resized_size};
        // int(232 * 500 / 375) = 309; portrait keeps the width at 232.
        assert_eq!(resized_size(Resize::ShorterSide(232), 500, 375), (309, 232));
        assert_eq!(resized_size(Resize::ShorterSide(232), 375, 500), (232, 309));
        assert_eq!(resized_size(Resize::ShorterSide(256), 300, 300), (256, 256));
        // Python's round(): (233 - 224) / 2 = 4.5 -> 4, (235 - 224) / 2 = 5.5 -> 6.
        assert_eq!(crop_offset((233, 235), (224, 224)), (4, 6));
        assert_eq!(crop_offset((309, 232), (224, 224)), (42, 4));
    }
}
