//! The image operations, each in one place: what augmentation draws from at random and what the camera
//! conditions apply at fixed strengths. Each is a pure function of the image and its parameters (noise takes
//! its seed), so a view or a condition is reproducible from its recorded parameters.
//!
//! The `image` crate does crops, resizing, flips and JPEG coding; `imageproc` does rotation, Gaussian and
//! motion blur and noise; the per-pixel colour maps are a few lines each here.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::{self, FilterType};
use image::{ImageReader, RgbImage};
use imageproc::filter::{gaussian_blur_f32, horizontal_filter};
use imageproc::geometric_transformations::{rotate_about_center, Border, Interpolation};

/// Why an operation could not produce an image (only JPEG coding can fail, on a degenerate image).
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct OpError {
    op: &'static str,
    #[source]
    source: image::ImageError,
}

/// The `w × h` window at (`x`, `y`) in fractions of the image (clamped inside it, at least 1 pixel).
pub fn crop_fraction(image: &RgbImage, x: f32, y: f32, w: f32, h: f32) -> RgbImage {
    let (iw, ih) = image.dimensions();
    let cw = ((w.clamp(0.0, 1.0) * iw as f32).round() as u32).clamp(1, iw);
    let ch = ((h.clamp(0.0, 1.0) * ih as f32).round() as u32).clamp(1, ih);
    let cx = ((x.clamp(0.0, 1.0) * iw as f32).round() as u32).min(iw - cw);
    let cy = ((y.clamp(0.0, 1.0) * ih as f32).round() as u32).min(ih - ch);
    imageops::crop_imm(image, cx, cy, cw, ch).to_image()
}

/// Mirrors left and right.
pub fn flip_horizontal(image: &RgbImage) -> RgbImage {
    imageops::flip_horizontal(image)
}

/// Brightness (× `brightness`), contrast (towards the mean grey by `contrast`) and saturation (towards each
/// pixel's grey by `saturation`); 1.0 leaves each unchanged.
pub fn color_jitter(image: &RgbImage, brightness: f32, contrast: f32, saturation: f32) -> RgbImage {
    let luma = |p: &image::Rgb<u8>| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
    let pixels = (image.width() as f64 * image.height() as f64).max(1.0);
    let mean = (image.pixels().map(|p| luma(p) as f64).sum::<f64>() / pixels) as f32 * brightness;
    let mut out = image.clone();
    for p in out.pixels_mut() {
        let grey = luma(p) * brightness;
        for c in p.0.iter_mut() {
            let v = *c as f32 * brightness;
            let v = grey + (v - grey) * saturation;
            let v = mean + (v - mean) * contrast;
            *c = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Colour dropped, each pixel its luma (BT.601) in all three channels: a camera's infrared night mode (an
/// IR-lit scene, the IR-cut filter out) delivers such frames, as do most home webcams after dark.
pub fn monochrome(image: &RgbImage) -> RgbImage {
    color_jitter(image, 1.0, 1.0, 0.0)
}

/// Darker and with crushed shadows, as a sensor in dim light: `255 · gain · (v / 255)^gamma`.
pub fn low_light(image: &RgbImage, gamma: f32, gain: f32) -> RgbImage {
    let lut: Vec<u8> = (0..=255u32)
        .map(|v| {
            (255.0 * gain * (v as f32 / 255.0).powf(gamma))
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    let mut out = image.clone();
    for c in out.iter_mut() {
        *c = lut[*c as usize];
    }
    out
}

/// Rotates by `degrees` clockwise about the centre; the corners take the nearest edge pixel (a tilted camera
/// sees more of the scene, not black corners).
pub fn rotate(image: &RgbImage, degrees: f32) -> RgbImage {
    rotate_about_center(
        image,
        degrees.to_radians(),
        Interpolation::Bilinear,
        Border::Replicate,
    )
}

/// Gaussian blur (out of focus) with `sigma` in pixels; 0 leaves the image as it is.
pub fn gaussian_blur(image: &RgbImage, sigma: f32) -> RgbImage {
    if sigma <= 0.0 {
        return image.clone();
    }
    gaussian_blur_f32(image, sigma)
}

/// Horizontal motion blur over `length` pixels (a box kernel: the camera or the subject moved during the
/// exposure).
pub fn motion_blur(image: &RgbImage, length: u32) -> RgbImage {
    if length <= 1 {
        return image.clone();
    }
    let kernel = vec![1.0f32 / length as f32; length as usize];
    horizontal_filter(image, &kernel)
}

/// Gaussian sensor noise of `sigma` grey levels, drawn from `seed`.
pub fn gaussian_noise(image: &RgbImage, sigma: f32, seed: u64) -> RgbImage {
    if sigma <= 0.0 {
        return image.clone();
    }
    imageproc::noise::gaussian_noise(image, 0.0, sigma as f64, seed)
}

/// Encodes as JPEG at `quality` (1–100) and decodes again: the blocks and ringing of a cheap camera's stream.
pub fn jpeg_roundtrip(image: &RgbImage, quality: u8) -> Result<RgbImage, OpError> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
        .encode_image(image)
        .map_err(|source| OpError {
            op: "JPEG encoding",
            source,
        })?;
    let decoded = ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Jpeg)
        .decode()
        .map_err(|source| OpError {
            op: "JPEG decoding",
            source,
        })?;
    Ok(decoded.to_rgb8())
}

/// Scales down by `factor` (e.g. 0.25) and back up to the original size: detail a low resolution loses.
pub fn downscale_upscale(image: &RgbImage, factor: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    let sw = ((w as f32 * factor).round() as u32).max(1);
    let sh = ((h as f32 * factor).round() as u32).max(1);
    let small = imageops::resize(image, sw, sh, FilterType::Triangle);
    imageops::resize(&small, w, h, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4×2 image with distinct pixels.
    fn tiny() -> RgbImage {
        RgbImage::from_fn(4, 2, |x, y| {
            image::Rgb([(x * 60) as u8, (y * 200) as u8, 100])
        })
    }

    #[test]
    fn crops_flips_and_colour_maps_give_known_pixels() {
        let img = tiny();
        let c = crop_fraction(&img, 0.5, 0.0, 0.5, 0.5);
        assert_eq!(c.dimensions(), (2, 1));
        assert_eq!(c.get_pixel(0, 0).0, [120, 0, 100]);
        // A window past the edge is moved inside.
        assert_eq!(
            crop_fraction(&img, 0.9, 0.9, 0.5, 0.5).get_pixel(0, 0).0,
            [120, 200, 100]
        );
        assert_eq!(flip_horizontal(&img).get_pixel(0, 0).0, [180, 0, 100]);
        assert_eq!(color_jitter(&img, 1.0, 1.0, 1.0), img);
        // Saturation 0: every pixel its own grey.
        let grey = color_jitter(&img, 1.0, 1.0, 0.0);
        let p = grey.get_pixel(3, 1).0;
        assert!(p[0] == p[1] && p[1] == p[2], "{p:?}");
        assert_eq!(
            p[0],
            (0.299f32 * 180.0 + 0.587 * 200.0 + 0.114 * 100.0).round() as u8
        );
        // Brightness halves (contrast and saturation neutral).
        assert_eq!(
            color_jitter(&img, 0.5, 1.0, 1.0).get_pixel(3, 0).0,
            [90, 0, 50]
        );
        // Gamma 2, gain 0.5: 180 → 255 · 0.5 · (180/255)² = 63.5 → 64.
        assert_eq!(low_light(&img, 2.0, 0.5).get_pixel(3, 0).0[0], 64);
    }

    #[test]
    fn blurs_rotation_noise_and_resampling_behave() {
        let img = RgbImage::from_fn(32, 16, |x, _| {
            image::Rgb(if x < 16 { [0; 3] } else { [255; 3] })
        });
        // Motion blur over 4 px: the step becomes a ramp across the edge, flat far from it.
        let m = motion_blur(&img, 4);
        assert_eq!(m.get_pixel(2, 8).0, [0; 3]);
        assert_eq!(m.get_pixel(29, 8).0, [255; 3]);
        let ramp = m.get_pixel(15, 8).0[0];
        assert!(ramp > 0 && ramp < 255, "{ramp}");
        assert_eq!(gaussian_blur(&img, 0.0), img);
        assert!(gaussian_blur(&img, 2.0).get_pixel(15, 8).0[0] > 0);
        // 180° about the centre mirrors both axes.
        let r = rotate(&img, 180.0);
        assert_eq!(r.get_pixel(3, 8).0, [255; 3]);
        assert_eq!(r.get_pixel(28, 8).0, [0; 3]);
        // Noise is seeded: same seed, same image; another seed, another.
        assert_eq!(gaussian_noise(&img, 10.0, 7), gaussian_noise(&img, 10.0, 7));
        assert_ne!(gaussian_noise(&img, 10.0, 7), gaussian_noise(&img, 10.0, 8));
        assert_eq!(downscale_upscale(&img, 0.25).dimensions(), (32, 16));
        let j = jpeg_roundtrip(&img, 20).unwrap();
        assert_eq!(j.dimensions(), (32, 16));
        assert!(j.get_pixel(2, 8).0[0] < 40 && j.get_pixel(29, 8).0[0] > 215);
    }
}
