//! Decoding real and deliberately broken files: every sample in the shared corrupt and format-mismatch
//! folders, EXIF orientation, and the colour types that must all end up as RGB8.

use std::collections::BTreeSet;
use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba};
use lookout_shared::image_io::{decode_bytes, decode_file, sniff_format, DecodeErrorKind};
use lookout_testdata::require_shared;

mod common;
use common::{encode, with_exif_orientation};

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// A JPEG whose left half is red and right half blue (16-pixel blocks, so JPEG keeps the colours clean).
fn red_blue_jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    encode(&DynamicImage::ImageRgb8(image), ImageFormat::Jpeg)
}

fn is_red(p: &Rgb<u8>) -> bool {
    p[0] > 200 && p[1] < 60 && p[2] < 60
}

fn is_blue(p: &Rgb<u8>) -> bool {
    p[0] < 60 && p[1] < 60 && p[2] > 200
}

#[test]
fn every_corrupt_sample_is_a_clear_error() {
    let shared = require_shared!();
    let dir = shared.join("data/corrupt-samples");
    let expected = [
        "not_an_image.jpg",
        "truncated_before_sof.jpg",
        "truncated_half.jpg",
        "zero_bytes.jpg",
    ];
    // A new sample must be added here with the behaviour it should have.
    assert_eq!(
        file_names(&dir),
        expected.iter().map(|s| s.to_string()).collect()
    );
    for name in expected {
        let path = dir.join(name);
        let error = decode_file(&path).expect_err(name);
        let message = error.to_string();
        eprintln!("{message}");
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}: must name the file"
        );
        match (name, &error.kind) {
            // Plain text with a .jpg name.
            ("not_an_image.jpg", DecodeErrorKind::UnknownFormat) => {}
            // SOI, APP0 and a DQT cut off in the middle: no frame header at all.
            ("truncated_before_sof.jpg", DecodeErrorKind::Truncated(_)) => {}
            // A real photo cut in half: the image crate alone would fill the rest with grey.
            ("truncated_half.jpg", DecodeErrorKind::Truncated(_)) => {}
            ("zero_bytes.jpg", DecodeErrorKind::Empty) => {}
            (name, kind) => panic!("{name}: unexpected error kind {kind:?}"),
        }
    }
    let sniffed = |name: &str| sniff_format(&std::fs::read(dir.join(name)).expect("readable"));
    assert_eq!(sniffed("not_an_image.jpg"), None);
    assert_eq!(sniffed("zero_bytes.jpg"), None);
    assert_eq!(sniffed("truncated_half.jpg"), Some(ImageFormat::Jpeg));
}

#[test]
fn webp_named_jpg_decodes_by_content() {
    let shared = require_shared!();
    let dir = shared.join("data/format-mismatch-samples");
    assert_eq!(
        file_names(&dir),
        BTreeSet::from(["webp_data_with_jpg_ext.jpg".to_string()])
    );
    let path = dir.join("webp_data_with_jpg_ext.jpg");
    let bytes = std::fs::read(&path).expect("readable");
    assert_eq!(sniff_format(&bytes), Some(ImageFormat::WebP));
    let image = decode_file(&path).expect("WebP content decodes whatever the name says");
    // The VP8 frame header says 800x450.
    assert_eq!(image.dimensions(), (800, 450));
    // A photo, not a flat fill: plenty of distinct values.
    let distinct: BTreeSet<u8> = image.as_raw().iter().copied().collect();
    assert!(
        distinct.len() > 100,
        "only {} distinct values",
        distinct.len()
    );
}

#[test]
fn real_photos_decode_including_greyscale_jpeg() {
    let shared = require_shared!();
    let cat = decode_file(&shared.join("data/cats-vs-dogs/Cat/cat.1.jpg")).expect("decodes");
    assert!(cat.width() > 100 && cat.height() > 100);
    // A single-component (greyscale) JPEG of the ImageNet sample comes back as RGB with R = G = B.
    let grey =
        decode_file(&shared.join("data/imagenet-sample/n04372370_switch.JPEG")).expect("decodes");
    assert!(grey.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    assert!(
        grey.pixels().any(|p| p[0] != grey.get_pixel(0, 0)[0]),
        "not a flat image"
    );
}

#[test]
fn exif_orientation_is_applied() {
    let jpeg = red_blue_jpeg(32, 16);
    let plain = decode_bytes(&jpeg, Path::new("plain.jpg")).expect("decodes");
    assert_eq!(plain.dimensions(), (32, 16));
    assert!(is_red(plain.get_pixel(2, 8)) && is_blue(plain.get_pixel(29, 8)));

    // 6: the camera was turned; rotate 90° clockwise to view. The left (red) half ends up on top.
    let rotated =
        decode_bytes(&with_exif_orientation(&jpeg, 6), Path::new("rot90.jpg")).expect("decodes");
    assert_eq!(rotated.dimensions(), (16, 32));
    assert!(
        is_red(rotated.get_pixel(8, 2)),
        "{:?}",
        rotated.get_pixel(8, 2)
    );
    assert!(
        is_blue(rotated.get_pixel(8, 29)),
        "{:?}",
        rotated.get_pixel(8, 29)
    );

    // 3: upside down; rotate 180°. Red moves to the right.
    let flipped =
        decode_bytes(&with_exif_orientation(&jpeg, 3), Path::new("rot180.jpg")).expect("decodes");
    assert_eq!(flipped.dimensions(), (32, 16));
    assert!(is_blue(flipped.get_pixel(2, 8)) && is_red(flipped.get_pixel(29, 8)));

    // 1: as stored.
    let upright =
        decode_bytes(&with_exif_orientation(&jpeg, 1), Path::new("rot0.jpg")).expect("decodes");
    assert_eq!(upright, plain);
}

#[test]
fn colour_types_become_rgb8() {
    let grey = ImageBuffer::from_fn(8, 4, |x, y| Luma([(x * 30 + y) as u8]));
    let decoded = decode_bytes(
        &encode(&DynamicImage::ImageLuma8(grey.clone()), ImageFormat::Png),
        Path::new("g.png"),
    )
    .expect("grey PNG");
    for (x, y, p) in decoded.enumerate_pixels() {
        let v = grey.get_pixel(x, y)[0];
        assert_eq!(p, &Rgb([v, v, v]));
    }

    let grey_alpha = ImageBuffer::from_fn(8, 4, |x, _| LumaA([(x * 30) as u8, 0]));
    let decoded = decode_bytes(
        &encode(&DynamicImage::ImageLumaA8(grey_alpha), ImageFormat::Png),
        Path::new("ga.png"),
    )
    .expect("grey+alpha PNG");
    assert_eq!(decoded.get_pixel(5, 1), &Rgb([150, 150, 150]));

    // Alpha is dropped, not composited: a fully transparent pixel keeps its colour (PIL's convert("RGB")).
    let rgba = ImageBuffer::from_fn(8, 4, |x, y| {
        Rgba([
            (x * 30) as u8,
            (y * 60) as u8,
            77,
            if x < 4 { 0 } else { 255 },
        ])
    });
    let decoded = decode_bytes(
        &encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
        Path::new("rgba.png"),
    )
    .expect("RGBA PNG");
    assert_eq!(decoded.get_pixel(1, 2), &Rgb([30, 120, 77]));
    assert_eq!(decoded.get_pixel(6, 3), &Rgb([180, 180, 77]));

    // 16 bits per channel: v * 257 maps back to exactly v.
    let rgb16 = ImageBuffer::from_fn(8, 4, |x, y| {
        Rgb([(x * 30) as u16 * 257, (y * 60) as u16 * 257, 65535])
    });
    let decoded = decode_bytes(
        &encode(&DynamicImage::ImageRgb16(rgb16), ImageFormat::Png),
        Path::new("16.png"),
    )
    .expect("16-bit PNG");
    assert_eq!(decoded.get_pixel(7, 3), &Rgb([210, 180, 255]));
}

#[test]
fn truncated_jpeg_is_an_error_and_trailing_bytes_are_not() {
    let shared = require_shared!();
    let photo = std::fs::read(shared.join("data/cats-vs-dogs/Dog/dog.10.jpg")).expect("readable");
    let origin = Path::new("dog.10.jpg");
    let whole = decode_bytes(&photo, origin).expect("the intact photo decodes");

    for keep in [photo.len() - 2, photo.len() * 3 / 4, photo.len() / 10] {
        let error = decode_bytes(&photo[..keep], origin).expect_err("cut JPEG");
        assert!(
            matches!(error.kind, DecodeErrorKind::Truncated(_)),
            "cut at {keep}: {error}"
        );
    }

    // Phones append data after the end-of-image marker; the image itself is whole.
    let mut padded = photo.clone();
    padded.extend_from_slice(&[0u8; 100]);
    padded.extend_from_slice(b"some trailer a camera wrote");
    assert_eq!(
        decode_bytes(&padded, origin).expect("trailing bytes are fine"),
        whole
    );
}

#[test]
fn truncated_png_is_an_error() {
    // Noise does not compress, so cutting the file cuts the pixel data.
    let mut state = 0x1234_5678u32;
    let noise = RgbImage::from_fn(64, 64, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let png = encode(&DynamicImage::ImageRgb8(noise.clone()), ImageFormat::Png);
    assert_eq!(
        decode_bytes(&png, Path::new("noise.png")).expect("whole PNG"),
        noise
    );
    for keep in [png.len() / 2, png.len() - 20] {
        let error = decode_bytes(&png[..keep], Path::new("noise.png")).expect_err("cut PNG");
        assert!(
            matches!(
                error.kind,
                DecodeErrorKind::Truncated(_) | DecodeErrorKind::Corrupt(_)
            ),
            "cut at {keep}: {error}"
        );
        eprintln!("PNG cut at {keep}/{}: {error}", png.len());
    }
}

#[test]
fn decompression_bomb_is_refused() {
    let shared = require_shared!();
    let mut photo =
        std::fs::read(shared.join("data/cats-vs-dogs/Cat/cat.10.jpg")).expect("readable");
    // Rewrite the baseline frame header (FF C0, length, precision, height, width) to 30000 x 30000.
    let sof = photo
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline JPEG");
    photo[sof + 5..sof + 7].copy_from_slice(&30000u16.to_be_bytes());
    photo[sof + 7..sof + 9].copy_from_slice(&30000u16.to_be_bytes());
    let error = decode_bytes(&photo, Path::new("bomb.jpg")).expect_err("900 Mpixel");
    assert!(
        matches!(error.kind, DecodeErrorKind::TooLarge { .. }),
        "{error}"
    );
    eprintln!("{error}");

    // A BMP header claiming 10000 x 10000 pixels, with 16 bytes of data.
    let mut bmp = Vec::new();
    bmp.extend_from_slice(b"BM");
    bmp.extend_from_slice(&(54u32 + 16).to_le_bytes()); // file size
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes()); // pixel data offset
    bmp.extend_from_slice(&40u32.to_le_bytes()); // BITMAPINFOHEADER
    bmp.extend_from_slice(&10_000i32.to_le_bytes());
    bmp.extend_from_slice(&10_000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes()); // planes
    bmp.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    bmp.extend_from_slice(&[0; 24]); // no compression, sizes and palette left to defaults
    bmp.extend_from_slice(&[0; 16]);
    assert_eq!(sniff_format(&bmp), Some(ImageFormat::Bmp));
    let error = decode_bytes(&bmp, Path::new("bomb.bmp")).expect_err("100 Mpixel");
    assert!(
        matches!(
            error.kind,
            DecodeErrorKind::TooLarge {
                dimensions: Some((10_000, 10_000)),
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn the_one_image_walk_is_sorted_recursive_skips_hidden_and_names_the_unusable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let png = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 4, Rgb([9, 9, 9]))),
        ImageFormat::Png,
    );
    let root = dir.path();
    std::fs::create_dir_all(root.join("b/c")).expect("folders");
    std::fs::create_dir_all(root.join(".thumbnails")).expect("hidden folder");
    for name in [
        "b/c/2.png",
        "b/1.png",
        "a.png",
        ".hidden.png",
        ".thumbnails/t.png",
    ] {
        std::fs::write(root.join(name), &png).expect("image");
    }
    std::fs::write(root.join("empty.jpg"), b"").expect("empty file");
    std::fs::write(root.join("notes.txt"), b"not an image").expect("text");
    let walked = lookout_shared::image_io::walk_images(root).expect("walk");
    let names: Vec<(String, bool)> = walked
        .iter()
        .map(|(path, problem)| {
            let name = path
                .strip_prefix(root)
                .expect("inside")
                .display()
                .to_string();
            (name, problem.is_some())
        })
        .collect();
    assert_eq!(
        names,
        [
            ("a.png".to_string(), false),
            ("b/1.png".to_string(), false),
            ("b/c/2.png".to_string(), false),
            ("empty.jpg".to_string(), true),
        ]
    );
    let missing = root.join("nope");
    let (path, _) = lookout_shared::image_io::walk_images(&missing).expect_err("no folder");
    assert_eq!(path, missing);
}
