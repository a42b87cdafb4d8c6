//! Decode + preprocess cost per real photo (first 50 cats of cats-vs-dogs), split into decode and
//! preprocess, with the `image` crate's own resize as the reference in the same run.
//!
//! `cargo bench -p lookout-shared --bench preprocess`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use image::imageops::{self, FilterType};
use image::RgbImage;
use lookout_shared::image_io::decode_bytes;
use lookout_shared::preprocess::{PreprocessSpec, Preprocessor, Resize};

const IMAGES: usize = 50;

fn photos() -> Option<Vec<(PathBuf, Vec<u8>)>> {
    let Some(shared) = lookout_testdata::shared_dir() else {
        lookout_testdata::skip_message("benches/preprocess");
        return None;
    };
    let dir = shared.join("data/cats-vs-dogs/Cat");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .collect();
    paths.sort();
    paths.truncate(IMAGES);
    Some(
        paths
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                (path, bytes)
            })
            .collect(),
    )
}

/// The same recipe done the straightforward way: `image`'s resize of the whole image, then crop, then
/// normalise (torchvision's order of operations).
fn reference_preprocess(spec: &PreprocessSpec, image: &RgbImage, out: &mut [f32]) {
    let Resize::ShorterSide(side) = spec.resize else {
        unreachable!("presets resize the shorter side")
    };
    let (crop_h, crop_w) = spec.crop.expect("presets crop");
    let (w, h) = image.dimensions();
    let (rw, rh) = if w <= h {
        (side, (u64::from(side) * u64::from(h) / u64::from(w)) as u32)
    } else {
        ((u64::from(side) * u64::from(w) / u64::from(h)) as u32, side)
    };
    let resized = imageops::resize(image, rw, rh, FilterType::Triangle);
    let top = (f64::from(rh - crop_h) / 2.0).round_ties_even() as u32;
    let left = (f64::from(rw - crop_w) / 2.0).round_ties_even() as u32;
    let cropped = imageops::crop_imm(&resized, left, top, crop_w, crop_h).to_image();
    let plane = (crop_h * crop_w) as usize;
    for (i, p) in cropped.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(p[c]) / spec.input_scale - spec.mean[c]) / spec.std[c];
        }
    }
}

fn bench(c: &mut Criterion) {
    let Some(photos) = photos() else { return };
    let spec = PreprocessSpec::torchvision();
    let decoded: Vec<RgbImage> = photos
        .iter()
        .map(|(path, bytes)| decode_bytes(bytes, path).expect("the cats decode"))
        .collect();
    let mut preprocessor = Preprocessor::new(&spec).expect("valid preset");
    let mut out = vec![0f32; preprocessor.tensor_len()];

    // Each iteration handles the next photo in turn, so times are per image, averaged over all 50.
    let mut group = c.benchmark_group("per_image");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let mut next = 0usize;
    group.bench_function("decode", |b| {
        b.iter(|| {
            let (path, bytes) = &photos[next % photos.len()];
            next += 1;
            black_box(decode_bytes(bytes, path).expect("decodes"))
        })
    });
    group.bench_function("preprocess_fast_image_resize", |b| {
        b.iter(|| {
            let image = &decoded[next % decoded.len()];
            next += 1;
            preprocessor
                .run_into(image, &mut out)
                .expect("preprocesses");
            black_box(&out);
        })
    });
    group.bench_function("preprocess_image_crate_reference", |b| {
        b.iter(|| {
            let image = &decoded[next % decoded.len()];
            next += 1;
            reference_preprocess(&spec, image, &mut out);
            black_box(&out);
        })
    });
    group.finish();

    // One plain pass of each over the 50 photos, for a side-by-side ratio in a single line.
    let time_all = |f: &mut dyn FnMut(&RgbImage)| {
        let start = Instant::now();
        decoded.iter().for_each(&mut *f);
        start.elapsed() / decoded.len() as u32
    };
    let ours = time_all(&mut |image| {
        preprocessor
            .run_into(image, &mut out)
            .expect("preprocesses")
    });
    let mut reference_out = vec![0f32; out.len()];
    let reference = time_all(&mut |image| reference_preprocess(&spec, image, &mut reference_out));
    println!(
        "preprocess per image over {} photos: fast_image_resize {ours:?}, image crate {reference:?} \
         (image crate / ours = {:.1}x)",
        decoded.len(),
        reference.as_secs_f64() / ours.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
