//! A region of a frame, in fractions of its width and height: what `--roi` and `--zone` name.
//!
//! A fixed camera sees a lot it should not judge: a cat is small in a porch frame, and the bowl is where it
//! matters. A region is cropped from the frame **before** preprocessing, so the model sees the region as it would
//! see a photo; the host (`lookout predict --roi`) and the edge (`classify`, `watch`, `bench`) crop with this one
//! type, so a region means the same pixels on both sides.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// A rectangle in fractions of the frame: `x, y` its top-left corner, `w, h` its size, each in `0..=1`, the
/// rectangle inside the frame. Written `x,y,w,h` (e.g. `0.25,0.5,0.5,0.5`: the bottom half's middle).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Region {
    /// Left edge, a fraction of the frame's width.
    pub x: f32,
    /// Top edge, a fraction of the frame's height.
    pub y: f32,
    /// Width, a fraction of the frame's width.
    pub w: f32,
    /// Height, a fraction of the frame's height.
    pub h: f32,
}

/// Why a region's text or numbers are not a region.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegionError {
    /// Not four comma-separated numbers.
    #[error("a region is four numbers x,y,w,h (fractions of the frame, e.g. 0.25,0.5,0.5,0.5), got '{0}'")]
    Syntax(alloc::string::String),
    /// A number outside 0..=1, an empty rectangle, or one reaching past the frame's edge.
    #[error(
        "region {x},{y},{w},{h} is not inside the frame: x and y are 0 to 1, w and h above 0, x + w and y + h \
         at most 1 (fractions of the frame's width and height)"
    )]
    Outside {
        /// As given.
        x: f32,
        /// As given.
        y: f32,
        /// As given.
        w: f32,
        /// As given.
        h: f32,
    },
}

/// Slack for fractions written with a few decimals (`0.333,0.333,0.334,…` adds up to 1.000 only roughly).
const EDGE_SLACK: f32 = 1e-3;

impl Region {
    /// The whole frame.
    pub const FULL: Region = Region {
        x: 0.0,
        y: 0.0,
        w: 1.0,
        h: 1.0,
    };

    /// A region, checked: inside the frame and not empty.
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Result<Region, RegionError> {
        let inside = [x, y, w, h].iter().all(|v| v.is_finite())
            && (0.0..=1.0).contains(&x)
            && (0.0..=1.0).contains(&y)
            && w > 0.0
            && h > 0.0
            && x + w <= 1.0 + EDGE_SLACK
            && y + h <= 1.0 + EDGE_SLACK;
        if inside {
            Ok(Region { x, y, w, h })
        } else {
            Err(RegionError::Outside { x, y, w, h })
        }
    }

    /// True for the whole frame (cropping it is a no-op).
    pub fn is_full(&self) -> bool {
        *self == Region::FULL
    }

    /// The pixel rectangle `(left, top, width, height)` of this region in a `width × height` frame: edges
    /// rounded to the nearest pixel, at least one pixel each way, never past the frame.
    pub fn pixels(&self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        let edge = |fraction: f32, size: u32| -> u32 {
            // Rounded half up by hand: `f32::round` needs std, and firmware builds this crate without it.
            let px = fraction.clamp(0.0, 1.0) * size as f32 + 0.5;
            (px as u32).min(size)
        };
        let left = edge(self.x, width).min(width.saturating_sub(1));
        let top = edge(self.y, height).min(height.saturating_sub(1));
        let right = edge(self.x + self.w, width).max(left + 1).min(width);
        let bottom = edge(self.y + self.h, height).max(top + 1).min(height);
        (
            left,
            top,
            right.saturating_sub(left),
            bottom.saturating_sub(top),
        )
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{},{}", self.x, self.y, self.w, self.h)
    }
}

impl FromStr for Region {
    type Err = RegionError;

    fn from_str(text: &str) -> Result<Region, RegionError> {
        let syntax = || RegionError::Syntax(text.into());
        let mut numbers = [0f32; 4];
        let mut parts = text.split(',');
        for slot in &mut numbers {
            *slot = parts
                .next()
                .and_then(|part| part.trim().parse::<f32>().ok())
                .ok_or_else(syntax)?;
        }
        if parts.next().is_some() {
            return Err(syntax());
        }
        let [x, y, w, h] = numbers;
        Region::new(x, y, w, h)
    }
}

#[cfg(feature = "std")]
impl Region {
    /// The region's pixels as a new image (the whole image, copied, for [`Region::FULL`]).
    pub fn crop(&self, image: &image::RgbImage) -> image::RgbImage {
        let (left, top, width, height) = self.pixels(image.width(), image.height());
        image::imageops::crop_imm(image, left, top, width, height).to_image()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_and_prints_back() {
        let region: Region = "0.25, 0.5,0.5,0.5".parse().unwrap();
        assert_eq!(region, Region::new(0.25, 0.5, 0.5, 0.5).unwrap());
        assert_eq!(region.to_string(), "0.25,0.5,0.5,0.5");
        assert_eq!(region.to_string().parse::<Region>().unwrap(), region);
    }

    #[test]
    fn refuses_what_is_not_a_region_inside_the_frame() {
        for text in [
            "",
            "0.1,0.1,0.5",
            "0.1,0.1,0.5,0.5,0.1",
            "a,b,c,d",
            "0.1;0.1;0.5;0.5",
        ] {
            assert!(
                matches!(text.parse::<Region>(), Err(RegionError::Syntax(_))),
                "{text}"
            );
        }
        for text in [
            "-0.1,0,0.5,0.5",
            "0,0,0,0.5",
            "0.6,0,0.5,0.5",
            "0,0.9,1,0.2",
            "NaN,0,1,1",
            "0,0,inf,1",
        ] {
            assert!(
                matches!(text.parse::<Region>(), Err(RegionError::Outside { .. })),
                "{text}"
            );
        }
        // Thirds written with three decimals still reach the edge.
        assert!("0.667,0,0.334,1".parse::<Region>().is_ok());
    }

    #[test]
    fn pixels_stay_inside_and_are_never_empty() {
        assert_eq!(Region::FULL.pixels(640, 480), (0, 0, 640, 480));
        assert_eq!(
            Region::new(0.25, 0.5, 0.5, 0.5).unwrap().pixels(640, 480),
            (160, 240, 320, 240)
        );
        let tiny = Region::new(0.999, 0.999, 0.001, 0.001).unwrap();
        let (left, top, width, height) = tiny.pixels(10, 10);
        assert!(width >= 1 && height >= 1 && left + width <= 10 && top + height <= 10);
    }

    #[test]
    fn crops_the_named_pixels() {
        let image = image::RgbImage::from_fn(8, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let crop = Region::new(0.5, 0.5, 0.5, 0.5).unwrap().crop(&image);
        assert_eq!(crop.dimensions(), (4, 2));
        assert_eq!(crop.get_pixel(0, 0).0, [4, 2, 0]);
        assert_eq!(Region::FULL.crop(&image), image);
    }
}
