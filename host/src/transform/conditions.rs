//! Camera conditions: the test photos rendered the way a Pi camera would deliver them, each at one fixed,
//! seeded strength, so that two heads (plain and augmented) are measured on exactly the same frames.

use image::RgbImage;
use serde::Serialize;

use super::ops::{self, OpError};
use crate::rng::SplitMix64;

/// The off-centre condition's window, a fraction of each side.
const OFF_CENTRE_WINDOW: f32 = 0.6;

/// The smallest part of a photo a condition keeps (the off-centre window): what the photo is decoded at least at
/// for the conditions, so that each still has the pixels the recipe resizes to
/// (`lookout_shared::image_io::decode_file_for`). Their blur and noise are in pixels of the decoded photo, so a
/// phone photo decoded so renders them as strong as the 500-pixel photos they were measured on.
pub const SMALLEST_WINDOW: lookout_shared::Region = lookout_shared::Region {
    x: 0.0,
    y: 0.0,
    w: OFF_CENTRE_WINDOW,
    h: OFF_CENTRE_WINDOW,
};

/// One camera condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Dim light: gamma 2, gain 0.6.
    LowLight,
    /// Horizontal motion blur over 1/32 of the width.
    MotionBlur,
    /// Gaussian sensor noise, σ = 20 grey levels.
    Noise,
    /// A JPEG round trip at quality 20.
    Jpeg20,
    /// The camera tilted by 15°, clockwise or not (seeded per photo).
    Rotate15,
    /// Off-centre: a 60 % × 60 % window in a corner (seeded per photo), the subject partly out of frame.
    OffCentre,
    /// Low resolution: scaled to ¼ and back, as a subject that fills a quarter of a 640×480 frame.
    LowRes,
    /// Infrared night mode: no colour, each pixel its luma (a Pi NoIR camera or a webcam after dark).
    Infrared,
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Condition {
    /// Every condition, in report order.
    pub const ALL: [Condition; 8] = [
        Condition::LowLight,
        Condition::MotionBlur,
        Condition::Noise,
        Condition::Jpeg20,
        Condition::Rotate15,
        Condition::OffCentre,
        Condition::LowRes,
        Condition::Infrared,
    ];

    /// The name in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Condition::LowLight => "low_light",
            Condition::MotionBlur => "motion_blur",
            Condition::Noise => "noise",
            Condition::Jpeg20 => "jpeg_20",
            Condition::Rotate15 => "rotate_15",
            Condition::OffCentre => "off_centre",
            Condition::LowRes => "low_res",
            Condition::Infrared => "infrared",
        }
    }

    /// What it does, in words.
    pub fn description(self) -> &'static str {
        match self {
            Condition::LowLight => "dim light: gamma 2, gain 0.6",
            Condition::MotionBlur => "horizontal motion blur over 1/32 of the width",
            Condition::Noise => "Gaussian sensor noise, sigma 20 grey levels",
            Condition::Jpeg20 => "JPEG at quality 20",
            Condition::Rotate15 => "tilted by 15 degrees either way",
            Condition::OffCentre => "a 60% x 60% corner window: the subject partly out of frame",
            Condition::LowRes => {
                "scaled to 1/4 and back: a subject filling a quarter of a 640x480 frame"
            }
            Condition::Infrared => "an infrared night mode: no colour",
        }
    }

    /// The photo numbered `index` under this condition; `seed` fixes the per-photo draws (tilt direction,
    /// corner, noise), so every head is measured on identical frames.
    pub fn apply(self, image: &RgbImage, index: usize, seed: u64) -> Result<RgbImage, OpError> {
        let mut rng = SplitMix64::new(
            seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ self as u64,
        );
        Ok(match self {
            Condition::LowLight => ops::low_light(image, 2.0, 0.6),
            Condition::MotionBlur => ops::motion_blur(image, (image.width() / 32).max(3)),
            Condition::Noise => ops::gaussian_noise(image, 20.0, rng.next_u64()),
            Condition::Jpeg20 => ops::jpeg_roundtrip(image, 20)?,
            Condition::Rotate15 => ops::rotate(image, if rng.below(2) == 0 { 15.0 } else { -15.0 }),
            Condition::OffCentre => {
                let corner = rng.below(4);
                let (x, y) = (0.4 * (corner % 2) as f32, 0.4 * (corner / 2) as f32);
                ops::crop_fraction(image, x, y, OFF_CENTRE_WINDOW, OFF_CENTRE_WINDOW)
            }
            Condition::LowRes => ops::downscale_upscale(image, 0.25),
            Condition::Infrared => ops::monochrome(image),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_are_deterministic_and_change_the_image() {
        let image = RgbImage::from_fn(96, 64, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x * y) % 251) as u8])
        });
        for c in Condition::ALL {
            let a = c.apply(&image, 3, 42).unwrap();
            assert_eq!(a, c.apply(&image, 3, 42).unwrap(), "{}", c.name());
            assert_ne!(a, image, "{} left the image as it was", c.name());
        }
        assert_eq!(
            Condition::OffCentre
                .apply(&image, 0, 1)
                .unwrap()
                .dimensions(),
            (58, 38)
        );
        assert_eq!(serde_json::to_value(Condition::Jpeg20).unwrap(), "jpeg_20");
    }
}
