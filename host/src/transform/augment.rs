//! The augmentation policy: which random operations make a training view, how strong, from which seed.
//!
//! A policy is written as a short spec, e.g. `crop=0.6,flip,jitter=0.3,rotate=10,blur=1.5,noise=8,jpeg=30`,
//! which is also how it is recorded in the features manifest and hashed into the cache fingerprint: the same
//! spec, seed and image give the same view, on any machine.

use std::fmt;
use std::str::FromStr;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::ops::{self, OpError};
use crate::rng::{Rng, SplitMix64};

/// The default policy: torchvision's usual random-resized-crop and flip, plus what a camera does to a frame.
pub const DEFAULT_POLICY: &str = "crop=0.6,flip,jitter=0.3,rotate=10,blur=1.5,noise=8,jpeg=30";
/// The `camera` preset: views as a fixed camera at home delivers its frames. Wider crops (a subject small or
/// partly out of the frame), dim light, sensor noise, motion blur and low resolution, each drawn with its own
/// probability so that most views carry one or two of them, not all at once. A camera whose night mode is
/// infrared adds `mono` (`camera,mono=0.25`): measured on the scene, it helps there and costs a colour camera
/// (docs/camera.md), so the preset leaves it out.
pub const CAMERA_POLICY: &str =
    "crop=0.35,flip,jitter=0.4,rotate=12,blur=2,noise=18,jpeg=25,dark=2.2,motion=0.04,lowres=0.3";

/// How training views are drawn. Each field at its neutral value turns that operation off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentPolicy {
    /// Random resized crop: the smallest area kept, as a fraction (1 = off); aspect ratio in [3/4, 4/3].
    pub crop: f32,
    /// Mirror left-right with probability ½.
    pub flip: bool,
    /// Brightness, contrast and saturation each scaled by a factor in [1 − j, 1 + j] (0 = off).
    pub jitter: f32,
    /// Rotation by up to ± this many degrees (0 = off).
    pub rotate: f32,
    /// With probability ¼, Gaussian blur of σ up to this many pixels (0 = off).
    pub blur: f32,
    /// With probability ¼, Gaussian noise of σ up to this many grey levels (0 = off).
    pub noise: f32,
    /// With probability ⅓, a JPEG round trip at a quality from this up to 95 (0 = off).
    pub jpeg: u8,
    /// With probability ⅓, dim light: gamma from 1 up to this, gain from 0.5 to 1 (0 = off).
    #[serde(default)]
    pub dark: f32,
    /// With probability ¼, horizontal motion blur over up to this fraction of the width (0 = off).
    #[serde(default)]
    pub motion: f32,
    /// With probability ¼, scaled down to a fraction from this up to 1 and back up (0 = off).
    #[serde(default)]
    pub lowres: f32,
    /// With this probability, the colour dropped (an infrared night mode: `ops::monochrome`; 0 = off).
    #[serde(default)]
    pub mono: f32,
}

impl Default for AugmentPolicy {
    fn default() -> Self {
        DEFAULT_POLICY
            .parse()
            .unwrap_or_else(|_| AugmentPolicy::none())
    }
}

impl AugmentPolicy {
    /// Every operation off.
    pub fn none() -> Self {
        AugmentPolicy {
            crop: 1.0,
            flip: false,
            jitter: 0.0,
            rotate: 0.0,
            blur: 0.0,
            noise: 0.0,
            jpeg: 0,
            dark: 0.0,
            motion: 0.0,
            lowres: 0.0,
            mono: 0.0,
        }
    }

    /// The smallest region of a photo a view can keep (its random crop at the smallest area and the most
    /// elongated aspect ratio, as fractions of each side): what the photo must be decoded at least at, so that
    /// the view still has the pixels the recipe resizes to (`lookout_shared::image_io::decode_file_for`).
    pub fn smallest_crop(&self) -> lookout_shared::Region {
        if self.crop >= 1.0 {
            return lookout_shared::Region::FULL;
        }
        // w = sqrt(area · ratio), h = sqrt(area / ratio), area ≥ crop, ratio in [3/4, 4/3]: each side at least
        // sqrt(crop · 3/4).
        let side = (self.crop.clamp(0.05, 1.0) * 0.75).sqrt();
        lookout_shared::Region {
            w: side,
            h: side,
            ..lookout_shared::Region::FULL
        }
    }

    /// The photo at `path` decoded for drawing this policy's views before `spec`: a large JPEG at 1/2, 1/4 or
    /// 1/8 where even the smallest crop keeps the pixels the recipe needs. Besides the time (a view's blur,
    /// noise and rotation over 12 Mpixel), it keeps the views' strength: blur and noise are in pixels of the
    /// decoded photo, so a phone photo decoded as stored saw them sixteen times fainter than a 500-pixel photo.
    pub fn decode_photo(
        &self,
        path: &std::path::Path,
        spec: &lookout_shared::PreprocessSpec,
    ) -> Result<RgbImage, lookout_shared::image_io::DecodeError> {
        lookout_shared::image_io::decode_file_for(path, spec, &[self.smallest_crop()])
    }

    /// View number `view` (1, 2, …) of the image at `key` (its path in the data set), under `seed`: the same
    /// three give the same view.
    pub fn view(
        &self,
        image: &RgbImage,
        key: &str,
        view: u32,
        seed: u64,
    ) -> Result<RgbImage, OpError> {
        let mut mix = SplitMix64::new(
            seed ^ fnv1a(key) ^ u64::from(view).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut rng = Rng::new(mix.next_u64());
        let mut out = image.clone();
        if self.crop < 1.0 {
            let area = rng.uniform(self.crop.clamp(0.05, 1.0), 1.0);
            let ratio = rng.uniform((3f32 / 4.0).ln(), (4f32 / 3.0).ln()).exp();
            let w = (area * ratio).sqrt().min(1.0);
            let h = (area / ratio).sqrt().min(1.0);
            let (x, y) = (rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h));
            out = ops::crop_fraction(&out, x, y, w, h);
        }
        if self.flip && rng.next_f32() < 0.5 {
            out = ops::flip_horizontal(&out);
        }
        if self.rotate > 0.0 {
            out = ops::rotate(&out, rng.uniform(-self.rotate, self.rotate));
        }
        if self.jitter > 0.0 {
            let j = self.jitter.min(0.95);
            let mut factor = || rng.uniform(1.0 - j, 1.0 + j);
            let (b, c, s) = (factor(), factor(), factor());
            out = ops::color_jitter(&out, b, c, s);
        }
        // Drawn only when on, so that a policy without it keeps the views it always had.
        if self.mono > 0.0 && rng.next_f32() < self.mono {
            out = ops::monochrome(&out);
        }
        // Light, then optics, then the sensor and the encoder: the order a camera applies them in.
        if self.dark > 1.0 && rng.next_f32() < 1.0 / 3.0 {
            let gamma = rng.uniform(1.0, self.dark);
            out = ops::low_light(&out, gamma, rng.uniform(0.5, 1.0));
        }
        if self.motion > 0.0 && rng.next_f32() < 0.25 {
            let length = rng.uniform(0.0, self.motion) * out.width() as f32;
            out = ops::motion_blur(&out, length.round() as u32);
        }
        if self.lowres > 0.0 && rng.next_f32() < 0.25 {
            out = ops::downscale_upscale(&out, rng.uniform(self.lowres, 1.0));
        }
        if self.blur > 0.0 && rng.next_f32() < 0.25 {
            out = ops::gaussian_blur(&out, rng.uniform(0.3, self.blur.max(0.3)));
        }
        if self.noise > 0.0 && rng.next_f32() < 0.25 {
            let sigma = rng.uniform(1.0, self.noise.max(1.0));
            out = ops::gaussian_noise(&out, sigma, mix.next_u64());
        }
        if self.jpeg > 0 && rng.next_f32() < 1.0 / 3.0 {
            let low = self.jpeg.min(95);
            let quality = low + rng.below(usize::from(95 - low) + 1) as u8;
            out = ops::jpeg_roundtrip(&out, quality)?;
        }
        Ok(out)
    }
}

/// FNV-1a of a string: a stable, platform-independent key for an image's path.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl fmt::Display for AugmentPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.crop < 1.0 {
            parts.push(format!("crop={}", self.crop));
        }
        if self.flip {
            parts.push("flip".into());
        }
        for (name, v) in [
            ("jitter", self.jitter),
            ("rotate", self.rotate),
            ("blur", self.blur),
            ("noise", self.noise),
        ] {
            if v > 0.0 {
                parts.push(format!("{name}={v}"));
            }
        }
        if self.jpeg > 0 {
            parts.push(format!("jpeg={}", self.jpeg));
        }
        for (name, v) in [
            ("dark", self.dark),
            ("motion", self.motion),
            ("lowres", self.lowres),
            ("mono", self.mono),
        ] {
            if v > 0.0 {
                parts.push(format!("{name}={v}"));
            }
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&parts.join(","))
    }
}

impl FromStr for AugmentPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A preset may come first; what follows it changes or adds single operations (`camera,mono=0.25`).
        let mut parts = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .peekable();
        let preset = match parts.peek().copied() {
            Some("default") => Some(DEFAULT_POLICY.parse()?),
            Some("camera") => Some(CAMERA_POLICY.parse()?),
            Some("none") => Some(AugmentPolicy::none()),
            _ => None,
        };
        if preset.is_some() {
            parts.next();
        }
        let mut policy = preset.unwrap_or_else(AugmentPolicy::none);
        for part in parts {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            let number = |lo: f32, hi: f32| -> Result<f32, String> {
                let v = value.ok_or_else(|| format!("{key} needs a value, e.g. {key}={hi}"))?;
                v.parse::<f32>()
                    .ok()
                    .filter(|x| (lo..=hi).contains(x))
                    .ok_or_else(|| format!("{key}={v}: a number from {lo} to {hi}"))
            };
            match key {
                "crop" => policy.crop = number(0.05, 1.0)?,
                "flip" if value.is_none() => policy.flip = true,
                "jitter" => policy.jitter = number(0.0, 0.95)?,
                "rotate" => policy.rotate = number(0.0, 45.0)?,
                "blur" => policy.blur = number(0.0, 5.0)?,
                "noise" => policy.noise = number(0.0, 50.0)?,
                "jpeg" => policy.jpeg = number(0.0, 95.0)?.round() as u8,
                "dark" => policy.dark = number(1.0, 4.0)?,
                "motion" => policy.motion = number(0.0, 0.2)?,
                "lowres" => policy.lowres = number(0.05, 1.0)?,
                "mono" => policy.mono = number(0.0, 1.0)?,
                _ => {
                    return Err(format!(
                        "{part:?} is not an augmentation; the spec is comma-separated from crop=AREA, flip, \
                         jitter=J, rotate=DEGREES, blur=SIGMA, noise=SIGMA, jpeg=QUALITY, dark=GAMMA, \
                         motion=FRACTION, lowres=FRACTION, mono=P, optionally after a preset (default, camera, \
                         none), e.g. {CAMERA_POLICY} or camera,mono=0.25"
                    ))
                }
            }
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_reads_back_as_written() {
        let p: AugmentPolicy = DEFAULT_POLICY.parse().unwrap();
        assert_eq!(p.to_string(), DEFAULT_POLICY);
        assert_eq!(p, AugmentPolicy::default());
        assert_eq!(
            "none".parse::<AugmentPolicy>().unwrap(),
            AugmentPolicy::none()
        );
        assert_eq!(AugmentPolicy::none().to_string(), "none");
        let camera: AugmentPolicy = "camera".parse().unwrap();
        assert_eq!(camera.to_string(), CAMERA_POLICY);
        assert_eq!(CAMERA_POLICY.parse::<AugmentPolicy>().unwrap(), camera);
        assert!(camera.dark > 1.0 && camera.motion > 0.0 && camera.lowres > 0.0);
        // A preset, then what overrides it.
        let infrared: AugmentPolicy = "camera,mono=0.25".parse().unwrap();
        assert_eq!(infrared.to_string(), format!("{CAMERA_POLICY},mono=0.25"));
        assert_eq!(
            "default,noise=20".parse::<AugmentPolicy>().unwrap().noise,
            20.0
        );
        assert_eq!(
            "default".parse::<AugmentPolicy>().unwrap(),
            AugmentPolicy::default()
        );
        assert!("crop=2"
            .parse::<AugmentPolicy>()
            .unwrap_err()
            .contains("0.05 to 1"));
        assert!("sharpen=1"
            .parse::<AugmentPolicy>()
            .unwrap_err()
            .contains("not an augmentation"));
        assert!("blur"
            .parse::<AugmentPolicy>()
            .unwrap_err()
            .contains("needs a value"));
    }

    #[test]
    fn views_are_reproducible_and_differ_by_view_key_and_seed() {
        let image = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 128])
        });
        let p = AugmentPolicy::default();
        let a = p.view(&image, "Cat/1.jpg", 1, 42).unwrap();
        assert_eq!(a, p.view(&image, "Cat/1.jpg", 1, 42).unwrap());
        assert_ne!(a, p.view(&image, "Cat/1.jpg", 2, 42).unwrap());
        assert_ne!(a, p.view(&image, "Cat/2.jpg", 1, 42).unwrap());
        assert_ne!(a, p.view(&image, "Cat/1.jpg", 1, 43).unwrap());
        // No operation: the image itself.
        assert_eq!(
            AugmentPolicy::none().view(&image, "k", 1, 1).unwrap(),
            image
        );
    }

    #[test]
    fn mono_drops_the_colour_of_about_its_share_of_views_and_leaves_other_policies_alone() {
        let image = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 200])
        });
        let grey = |v: &RgbImage| v.pixels().all(|p| p[0] == p[1] && p[1] == p[2]);
        let always: AugmentPolicy = "mono=1".parse().unwrap();
        assert_eq!(always.to_string(), "mono=1");
        assert!(grey(&always.view(&image, "k", 1, 1).unwrap()));
        let policy: AugmentPolicy = "jitter=0.3,mono=0.25".parse().unwrap();
        let grey_views = (1..=400)
            .filter(|&v| grey(&policy.view(&image, "k", v, 3).unwrap()))
            .count();
        assert!((70..=130).contains(&grey_views), "{grey_views} of 400");
        // Off, it draws nothing: the views of a policy without it are the ones it always gave.
        let without: AugmentPolicy = "jitter=0.3".parse().unwrap();
        let with_zero: AugmentPolicy = "jitter=0.3,mono=0".parse().unwrap();
        assert_eq!(
            without.view(&image, "k", 1, 3).unwrap(),
            with_zero.view(&image, "k", 1, 3).unwrap()
        );
        assert!("mono=2"
            .parse::<AugmentPolicy>()
            .unwrap_err()
            .contains("0 to 1"));
    }

    #[test]
    fn every_view_of_a_photo_decoded_at_its_smallest_crop_keeps_the_pixels_the_recipe_needs() {
        // The least a photo may be decoded at for a 256-pixel resize: its shorter side times the smallest crop's
        // side just reaches 256. Every view drawn from it must still give the resize 256 pixels (one less for
        // rounding); a side fraction only a little too large (sqrt(crop), the square crop's) lets some fall short.
        for (name, policy) in [("camera", CAMERA_POLICY), ("default", DEFAULT_POLICY)] {
            let policy: AugmentPolicy = policy.parse().unwrap();
            let side = policy.smallest_crop().w;
            let short = (256.0 / side).ceil() as u32;
            let image = RgbImage::from_pixel(short * 4 / 3, short, image::Rgb([90, 120, 150]));
            let smallest = (1..=400)
                .map(|view| {
                    let v = policy.view(&image, "cat.1.jpg", view, 7).unwrap();
                    v.width().min(v.height())
                })
                .min()
                .unwrap();
            assert!(smallest >= 255, "{name}: a view of {smallest} pixels");
        }
        assert_eq!(
            AugmentPolicy::none().smallest_crop(),
            lookout_shared::Region::FULL
        );
    }
}
