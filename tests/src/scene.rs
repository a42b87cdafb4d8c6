//! A fixed camera at night, built from real photos: the test bench for zones, the background answer and the
//! rejection calibrated for camera frames.
//!
//! The scene is a real ImageNet photo (a picket fence, as a porch might look) at 640×480; a "bowl" zone in its
//! lower middle is where visitors appear. A visit is a real photo (a cat from the cats-vs-dogs set, or another
//! animal from the ImageNet sample: the raccoon's stand-ins) pasted into the zone, small in the frame; every
//! frame then goes through the camera: dim light (gamma and gain), sensor noise, and a JPEG at the quality a
//! webcam streams. Light levels and noise seeds differ frame by frame, so no two empty frames are the same.
//!
//! Nothing here is tuned to the frames of a real camera this project does not have: the scene and the visitors
//! are whatever `../shared` holds, and the light levels span dusk to a dark night.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{imageops, Rgb, RgbImage};
use lookout_shared::Region;

/// Frame size, as a cheap webcam delivers it.
pub const FRAME: (u32, u32) = (640, 480);
/// Where the bowl is: visitors appear here, and `--zone bowl=…` / `--roi` name it.
pub const BOWL: &str = "0.3,0.4,0.4,0.55";
/// The ImageNet photo the scene is made of.
pub const SCENE_PHOTO: &str = "n03930313_picket_fence.JPEG";
/// Other animals at the bowl (none of them a cat or a dog): what a raccoon is to a cats-vs-dogs model.
pub const VISITORS: [&str; 6] = [
    "n02361337_marmot.JPEG",
    "n02441942_weasel.JPEG",
    "n02444819_otter.JPEG",
    "n02328150_Angora.JPEG",
    "n01877812_wallaby.JPEG",
    "n02510455_giant_panda.JPEG",
];

/// How dark a frame is and how much the sensor adds.
#[derive(Debug, Clone, Copy)]
pub struct Light {
    /// `out = 255 · gain · (in / 255)^gamma`.
    pub gamma: f32,
    /// See `gamma`.
    pub gain: f32,
    /// Gaussian sensor noise, grey levels.
    pub noise: f32,
}

/// What the camera does after dark: keep its colour sensor on (a porch light lights the scene), or switch to
/// its infrared night mode (IR-cut filter out, IR LEDs on), which delivers monochrome frames, as a Pi NoIR
/// camera and most home webcams do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NightMode {
    /// Colour frames.
    Colour,
    /// Monochrome frames: each pixel's luma, the sensor's noise the same in all three channels.
    Infrared,
}

/// Dusk, evening, night, dark night: the light levels frames are drawn from.
pub const LIGHTS: [Light; 4] = [
    Light {
        gamma: 1.4,
        gain: 0.8,
        noise: 6.0,
    },
    Light {
        gamma: 1.9,
        gain: 0.6,
        noise: 10.0,
    },
    Light {
        gamma: 2.4,
        gain: 0.45,
        noise: 14.0,
    },
    Light {
        gamma: 2.9,
        gain: 0.35,
        noise: 18.0,
    },
];

/// The scene photo at frame size.
pub fn scene(shared: &Path) -> RgbImage {
    let photo = image::open(shared.join("data/imagenet-sample").join(SCENE_PHOTO))
        .expect("the scene photo from the ImageNet sample")
        .to_rgb8();
    imageops::resize(&photo, FRAME.0, FRAME.1, imageops::FilterType::Triangle)
}

/// `visitor` pasted into the bowl zone of `scene`, filling most of it (a centre crop of the photo, so the
/// animal is not squashed).
pub fn with_visitor(scene: &RgbImage, visitor: &Path) -> RgbImage {
    let zone: Region = BOWL.parse().expect("bowl zone");
    let (left, top, width, height) = zone.pixels(scene.width(), scene.height());
    let photo = image::open(visitor).expect("visitor photo").to_rgb8();
    // Centre-crop the photo to the zone's aspect ratio, then resize it to 70 % of the zone, bottom-centred.
    let (pw, ph) = photo.dimensions();
    let target = width as f32 / height as f32;
    let (cw, ch) = if pw as f32 / ph as f32 > target {
        ((ph as f32 * target) as u32, ph)
    } else {
        (pw, (pw as f32 / target) as u32)
    };
    let cropped = imageops::crop_imm(&photo, (pw - cw) / 2, (ph - ch) / 2, cw, ch).to_image();
    let (vw, vh) = (width * 7 / 10, height * 7 / 10);
    let small = imageops::resize(&cropped, vw, vh, imageops::FilterType::Triangle);
    let mut frame = scene.clone();
    imageops::overlay(
        &mut frame,
        &small,
        i64::from(left + (width - vw) / 2),
        i64::from(top + height - vh),
    );
    frame
}

/// What the camera does to a frame: a cheap lens and sensor's softness (half the detail: down to 320×240 and
/// back), dim light, sensor noise (seeded), monochrome in the infrared night mode, then JPEG at quality 75.
pub fn through_camera(frame: &RgbImage, light: Light, night: NightMode, seed: u64) -> Vec<u8> {
    let (w, h) = frame.dimensions();
    let soft = imageops::resize(
        &imageops::resize(frame, w / 2, h / 2, imageops::FilterType::Triangle),
        w,
        h,
        imageops::FilterType::Triangle,
    );
    let frame = &soft;
    let lut: Vec<u8> = (0..=255u32)
        .map(|v| {
            (255.0 * light.gain * (v as f32 / 255.0).powf(light.gamma))
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut gaussian = move || {
        // Box–Muller on a xorshift stream: enough for sensor noise, and the same on every machine.
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (uniform(), uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    };
    let mut out = RgbImage::new(frame.width(), frame.height());
    for (o, p) in out.pixels_mut().zip(frame.pixels()) {
        let Rgb([r, g, b]) = *p;
        let mut channel = |c: u8| {
            (f32::from(lut[c as usize]) + light.noise * gaussian())
                .round()
                .clamp(0.0, 255.0) as u8
        };
        *o = match night {
            NightMode::Colour => Rgb([channel(r), channel(g), channel(b)]),
            NightMode::Infrared => {
                let luma = 0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
                let v = channel(luma.round() as u8);
                Rgb([v, v, v])
            }
        };
    }
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 75)
        .encode_image(&out)
        .expect("JPEG encoding");
    bytes
}

/// One frame the scene's camera wrote.
#[derive(Debug, Clone)]
pub struct SceneFrame {
    /// The JPEG file.
    pub path: PathBuf,
    /// What is at the bowl: `cat`, `empty` or `visitor`.
    pub truth: &'static str,
}

/// Writes `count` frames of one kind into `dir` as `PREFIX-NNN-TRUTH.jpg`, cycling through `visitors` (none:
/// empty frames) and the light levels, with noise seeds from `seed`, in colour or the infrared night mode.
#[allow(clippy::too_many_arguments)] // each is one fact of the frames; a struct would only rename them
pub fn write_frames(
    dir: &Path,
    night: NightMode,
    prefix: &str,
    scene: &RgbImage,
    visitors: &[PathBuf],
    truth: &'static str,
    count: usize,
    seed: u64,
) -> Vec<SceneFrame> {
    std::fs::create_dir_all(dir).expect("frames folder");
    (0..count)
        .map(|i| {
            let frame = match visitors {
                [] => scene.clone(),
                _ => with_visitor(scene, &visitors[i % visitors.len()]),
            };
            let light = LIGHTS[(i + seed as usize) % LIGHTS.len()];
            let path = dir.join(format!("{prefix}-{i:03}-{truth}.jpg"));
            std::fs::write(
                &path,
                through_camera(&frame, light, night, seed.wrapping_add(i as u64)),
            )
            .expect("writing a frame");
            SceneFrame { path, truth }
        })
        .collect()
}

/// The visitors' photo files.
pub fn visitor_photos(shared: &Path) -> Vec<PathBuf> {
    VISITORS
        .iter()
        .map(|name| shared.join("data/imagenet-sample").join(name))
        .collect()
}

/// Writes the bowl zone of each frame to `dir` (same file names), as `watch --zone bowl=… --capture` saves what
/// it classified: what a user sorts into the data set on day one.
pub fn write_zone_crops(frames: &[SceneFrame], dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("crops folder");
    let zone: Region = BOWL.parse().expect("bowl zone");
    frames
        .iter()
        .map(|frame| {
            let image = image::open(&frame.path).expect("a scene frame").to_rgb8();
            let path = dir.join(frame.path.file_name().expect("file name"));
            zone.crop(&image).save(&path).expect("writing a crop");
            path
        })
        .collect()
}

/// A fixed camera's video for `watch --motion`: the porch still for 40 frames, a cat's visit (8), still (40),
/// another visit (8), still (30), at dusk light with fresh sensor noise in every frame; written to `dir` as
/// `NNNN.jpg` in that order. Returns which frames are visits.
pub fn still_with_visits(shared: &Path, dir: &Path) -> Vec<bool> {
    std::fs::create_dir_all(dir).expect("video folder");
    let porch = scene(shared);
    let cats = crate::photos(shared, "Cat");
    let parts: [(Option<&PathBuf>, usize); 5] = [
        (None, 40),
        (Some(&cats[310]), 8),
        (None, 40),
        (Some(&cats[311]), 8),
        (None, 30),
    ];
    let mut visits = Vec::new();
    for (visitor, count) in parts {
        let frame = visitor.map_or_else(|| porch.clone(), |cat| with_visitor(&porch, cat));
        for _ in 0..count {
            let n = visits.len();
            // Dusk light, fresh sensor noise in every frame.
            let jpeg = through_camera(&frame, LIGHTS[0], NightMode::Colour, 1000 + n as u64);
            std::fs::write(dir.join(format!("{n:04}.jpg")), jpeg).expect("frame");
            visits.push(visitor.is_some());
        }
    }
    visits
}
