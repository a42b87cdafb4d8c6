//! `watch --motion`: run the model only when something moved, so a Pi watching an empty, still scene rests.
//!
//! Each region (the frame, the `--roi`, or each zone) keeps a small grey picture of its background (64×48,
//! updated a little at every frame). A frame moved when enough of its small picture differs from the
//! background. Each picture is divided by its own mean brightness first, so a lamp switched on or a cloud (the
//! whole scene brighter or darker) is not motion; a change of light in one part of the scene is, for 10 s, after
//! which the changed scene becomes the background. Only still frames are learnt into the background, so a
//! visitor's leaving is not motion for long. When nothing moved, the region's last answer stands for the
//! frame: smoothing, events and MQTT go on as if it had been classified, and a still scene keeps its state.
//! The model runs anyway every `heartbeat`, and for a few frames after motion stops (what left must be seen).

use std::time::{Duration, Instant};

use image::RgbImage;

/// Settings of the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionOptions {
    /// Share of the region that must change for the frame to count as motion (lower: more sensitive).
    pub area: f32,
    /// Run the model at least this often, motion or not.
    pub heartbeat: Duration,
    /// Frames the model keeps running after motion stops.
    pub hangover: u32,
}

impl Default for MotionOptions {
    fn default() -> Self {
        MotionOptions {
            area: 0.01,
            heartbeat: Duration::from_secs(30),
            hangover: 5,
        }
    }
}

/// One region's background and what the gate decided last.
#[derive(Debug, Clone, Default)]
pub struct MotionGate {
    background: Option<Vec<f32>>,
    last_run: Option<Instant>,
    since_motion: u32,
    moving_since: Option<Instant>,
    /// The share of the region that differed from the background at the last frame.
    pub changed: f32,
}

/// Width and height of the small picture.
const SIZE: (u32, u32) = (64, 48);
/// How much of each still frame goes into the background (noise, slow light). A frame that moved is not taken
/// in at all: a visitor must not become the background, or its leaving would look like motion for seconds.
const LEARN: f32 = 0.05;
/// Motion that lasts this long is a new scene (a lamp lighting one corner, a parked car, a cat asleep at the
/// bowl): it becomes the background at once, and the region rests until something moves again.
const ABSORB: Duration = Duration::from_secs(10);
/// A pixel differs when it is this far from the background, relative to the mean brightness (sensor noise in
/// the dark stays under it once averaged into the small picture).
const PIXEL: f32 = 0.15;

/// The region as a small grey picture, each pixel divided by the picture's mean.
fn small_picture(image: &RgbImage) -> Vec<f32> {
    let grey = image::imageops::grayscale(image);
    let small = image::imageops::thumbnail(&grey, SIZE.0, SIZE.1);
    let values: Vec<f32> = small.pixels().map(|p| f32::from(p.0[0])).collect();
    let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
    // A black frame (a lens cap, a dead camera) is one flat picture, not a division by zero.
    let scale = if mean > 1.0 { 1.0 / mean } else { 0.0 };
    values.iter().map(|v| v * scale).collect()
}

impl MotionGate {
    /// Whether the model should run on `region` (the pixels it would classify) at `now`; learns the frame
    /// into the background either way.
    pub fn should_run(&mut self, region: &RgbImage, now: Instant, options: &MotionOptions) -> bool {
        let picture = small_picture(region);
        let moved = match &mut self.background {
            Some(background) if background.len() == picture.len() => {
                let differing = background
                    .iter()
                    .zip(&picture)
                    .filter(|(b, p)| (*b - *p).abs() > PIXEL)
                    .count();
                self.changed = differing as f32 / picture.len().max(1) as f32;
                let moved = self.changed >= options.area;
                if !moved {
                    self.moving_since = None;
                    for (b, p) in background.iter_mut().zip(&picture) {
                        *b += (p - *b) * LEARN;
                    }
                } else if now.saturating_duration_since(*self.moving_since.get_or_insert(now))
                    >= ABSORB
                {
                    background.copy_from_slice(&picture);
                    self.moving_since = None;
                }
                moved
            }
            _ => {
                self.background = Some(picture);
                true
            }
        };
        self.since_motion = if moved {
            0
        } else {
            self.since_motion.saturating_add(1)
        };
        let due = self
            .last_run
            .is_none_or(|last| now.saturating_duration_since(last) >= options.heartbeat);
        let run = moved || self.since_motion <= options.hangover || due;
        if run {
            self.last_run = Some(now);
        }
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(brightness: f32, square: Option<(u32, u32)>) -> RgbImage {
        RgbImage::from_fn(320, 240, |x, y| {
            // A textured scene: stripes and a gradient.
            let base = 40.0 + ((x / 16 + y / 24) % 2) as f32 * 60.0 + y as f32 * 0.2;
            let inside = square
                .is_some_and(|(sx, sy)| (sx..sx + 60).contains(&x) && (sy..sy + 60).contains(&y));
            let v = if inside { 230.0 } else { base * brightness };
            image::Rgb([v.min(255.0) as u8; 3])
        })
    }

    #[test]
    fn something_entering_is_motion_a_brighter_lamp_is_not_and_a_still_scene_rests() {
        let options = MotionOptions {
            area: 0.01,
            heartbeat: Duration::from_secs(3600),
            hangover: 2,
        };
        let mut gate = MotionGate::default();
        let t = Instant::now();
        assert!(
            gate.should_run(&scene(1.0, None), t, &options),
            "the first frame runs"
        );
        let runs: Vec<bool> = (0..10)
            .map(|_| gate.should_run(&scene(1.0, None), t, &options))
            .collect();
        // The first frame's run, then the hangover, then rest.
        assert_eq!(runs.iter().filter(|r| **r).count(), 2, "{runs:?}");
        assert!(
            !gate.should_run(&scene(1.6, None), t, &options),
            "a lamp: {}",
            gate.changed
        );
        assert!(
            gate.should_run(&scene(1.0, Some((100, 80))), t, &options),
            "a visitor: {}",
            gate.changed
        );
        // Motion that lasts is a new scene: taken in after 10 s, then the region rests.
        let lamp = scene(1.0, Some((200, 20)));
        assert!(gate.should_run(&lamp, t, &options));
        assert!(
            gate.should_run(&lamp, t + Duration::from_secs(11), &options),
            "still moving at 11 s"
        );
        let rest: Vec<bool> = (0..4)
            .map(|_| gate.should_run(&lamp, t + Duration::from_secs(12), &options))
            .collect();
        assert_eq!(rest, [true, true, false, false], "the hangover, then rest");
        // The heartbeat runs the model on a still scene now and then.
        let later = t + Duration::from_secs(3601);
        let mut rested = MotionGate::default();
        rested.should_run(&scene(1.0, None), t, &options);
        for _ in 0..5 {
            rested.should_run(&scene(1.0, None), t, &options);
        }
        assert!(!rested.should_run(&scene(1.0, None), t, &options));
        assert!(rested.should_run(&scene(1.0, None), later, &options));
    }
}
