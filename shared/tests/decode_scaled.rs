//! A large JPEG is decoded at 1/2, 1/4 or 1/8 of its size where the preprocessing recipe keeps no more detail
//! (`image_io::decode_bytes_for`), and as stored everywhere else.
//!
//! What the model sees must not move: the tensor from the scaled decode is compared with the tensor from the
//! full decode of the same photo, against twice what was measured on a real photo enlarged to 2000 × 1500
//! (largest difference 0.039 on the -1..1 scale, five levels of 255; mean 0.0031, under half a level).

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, RgbImage};
use lookout_shared::image_io::{decode_bytes, decode_bytes_for};
use lookout_shared::preprocess::{preprocess, Filter, PreprocessSpec};
use lookout_shared::Region;
use lookout_testdata::require_shared;

mod common;
use common::{encode, with_exif_orientation};

/// A real photo enlarged to `width × height` and encoded as a JPEG of quality 90, as a phone would store it.
fn enlarged_photo(shared: &Path, width: u32, height: u32) -> Vec<u8> {
    let photo =
        lookout_shared::image_io::decode_file(&shared.join("data/cats-vs-dogs/Cat/cat.1.jpg"))
            .expect("decodes");
    let big = image::imageops::resize(&photo, width, height, FilterType::Triangle);
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&DynamicImage::ImageRgb8(big))
        .expect("encodes");
    bytes
}

/// Largest and mean absolute difference of two tensors.
fn differences(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let largest = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let mean = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    (largest, mean)
}

#[test]
fn a_phone_sized_jpeg_is_decoded_smaller_and_the_model_sees_the_same_photo() {
    let shared = require_shared!();
    let jpeg = enlarged_photo(&shared, 2000, 1500);
    let spec = PreprocessSpec::tf_inception();
    let full = decode_bytes(&jpeg, Path::new("phone.jpg")).expect("decodes");
    let scaled = decode_bytes_for(&jpeg, Path::new("phone.jpg"), &spec, &[]).expect("decodes");
    // 1/8 would leave 188 pixels on the shorter side, under the recipe's 256; 1/4 leaves 375.
    assert_eq!((full.width(), full.height()), (2000, 1500));
    assert_eq!((scaled.width(), scaled.height()), (500, 375));

    let (largest, mean) = differences(
        &preprocess(&spec, &full).expect("preprocesses"),
        &preprocess(&spec, &scaled).expect("preprocesses"),
    );
    assert!(
        largest < 0.08 && mean < 0.0063,
        "the scaled decode moved the model's input: largest {largest}, mean {mean}"
    );
}

#[test]
fn a_region_keeps_the_detail_it_needs() {
    let shared = require_shared!();
    let jpeg = enlarged_photo(&shared, 2000, 1500);
    let spec = PreprocessSpec::tf_inception();
    let at = |region: &Region| {
        let image = decode_bytes_for(
            &jpeg,
            Path::new("phone.jpg"),
            &spec,
            std::slice::from_ref(region),
        )
        .expect("decodes");
        (image.width(), image.height())
    };
    // Half the frame each way: 750 × 1/2 = 375 pixels of the region's shorter side at 1/2 (188 at 1/4).
    assert_eq!(
        at(&Region::new(0.25, 0.25, 0.5, 0.5).expect("region")),
        (1000, 750)
    );
    // A quarter of it: even 1/2 would leave 188, so the photo is decoded as stored.
    assert_eq!(
        at(&Region::new(0.0, 0.0, 0.25, 0.25).expect("region")),
        (2000, 1500)
    );
}

#[test]
fn small_photos_and_recipes_without_antialiasing_are_decoded_as_stored() {
    let shared = require_shared!();
    let spec = PreprocessSpec::tf_inception();
    // The shared photos are about 500 × 375: half of that is under 256.
    let photo = std::fs::read(shared.join("data/cats-vs-dogs/Dog/dog.1.jpg")).expect("reads");
    assert_eq!(
        decode_bytes_for(&photo, Path::new("dog.jpg"), &spec, &[]).expect("decodes"),
        decode_bytes(&photo, Path::new("dog.jpg")).expect("decodes")
    );
    // A resize that samples single pixels would see other pixels in a smaller decode.
    let jpeg = enlarged_photo(&shared, 2000, 1500);
    let nearest = PreprocessSpec {
        filter: Filter::Nearest,
        antialias: false,
        ..PreprocessSpec::tf_inception()
    };
    assert_eq!(
        decode_bytes_for(&jpeg, Path::new("phone.jpg"), &nearest, &[])
            .expect("decodes")
            .dimensions(),
        (2000, 1500)
    );
    // Other formats are decoded as stored.
    let png = encode(
        &DynamicImage::ImageRgb8(RgbImage::new(2000, 1500)),
        ImageFormat::Png,
    );
    assert_eq!(
        decode_bytes_for(&png, Path::new("big.png"), &spec, &[])
            .expect("decodes")
            .dimensions(),
        (2000, 1500)
    );
}

#[test]
fn a_photo_stored_sideways_is_scaled_by_its_upright_sides_and_turned() {
    // Stored 2048 × 1024 with the left half red, the right half blue; EXIF orientation 6 turns it a quarter
    // turn clockwise: upright it is 1024 × 2048, red on top.
    let stored = RgbImage::from_fn(2048, 1024, |x, _| {
        if x < 1024 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let jpeg = with_exif_orientation(
        &encode(&DynamicImage::ImageRgb8(stored), ImageFormat::Jpeg),
        6,
    );
    let spec = PreprocessSpec::tf_inception();
    let image = decode_bytes_for(&jpeg, Path::new("sideways.jpg"), &spec, &[]).expect("decodes");
    // Upright shorter side 1024: 1/4 leaves 256, 1/8 128.
    assert_eq!(image.dimensions(), (256, 512));
    let (top, bottom) = (image.get_pixel(128, 10), image.get_pixel(128, 500));
    assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    // The region is upright too: the top half of the upright photo is 1024 × 1024.
    let region = Region::new(0.0, 0.0, 1.0, 0.5).expect("region");
    let top_half =
        decode_bytes_for(&jpeg, Path::new("sideways.jpg"), &spec, &[region]).expect("decodes");
    assert_eq!(top_half.dimensions(), (256, 512));
}

#[test]
fn a_greyscale_jpeg_comes_back_grey_in_rgb() {
    let grey = image::GrayImage::from_fn(1600, 1200, |x, y| {
        image::Luma([((x / 8 + y / 8) % 256) as u8])
    });
    let jpeg = encode(&DynamicImage::ImageLuma8(grey), ImageFormat::Jpeg);
    let image = decode_bytes_for(
        &jpeg,
        Path::new("grey.jpg"),
        &PreprocessSpec::tf_inception(),
        &[],
    )
    .expect("decodes");
    assert_eq!(image.dimensions(), (400, 300));
    assert!(image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}
