//! YUYV (YUV 4:2:2, as UVC webcams send it uncompressed) to RGB.

use image::RgbImage;

/// Converts one YUYV frame (BT.601, limited range, the UVC default) to RGB. `stride` is the bytes per line
/// (at least `2 * width`). Returns `None` if `data` is too short for the geometry.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32, stride: u32) -> Option<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    let stride = (stride as usize).max(2 * w);
    if w == 0 || h == 0 || w % 2 != 0 || data.len() < stride * (h - 1) + 2 * w {
        return None;
    }
    let mut rgb = vec![0u8; w * h * 3];
    for (row, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
        let line = &data[row * stride..row * stride + 2 * w];
        for (pair, px) in line.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
            let (y0, u, y1, v) = (pair[0], pair[1], pair[2], pair[3]);
            convert(y0, u, v, &mut px[..3]);
            convert(y1, u, v, &mut px[3..]);
        }
    }
    RgbImage::from_raw(width, height, rgb)
}

/// Integer BT.601 limited-range conversion (the usual 8-bit fixed-point coefficients).
fn convert(y: u8, u: u8, v: u8, out: &mut [u8]) {
    let c = (i32::from(y) - 16).max(0) * 298;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    out[0] = clamp(c + 409 * e);
    out[1] = clamp(c - 100 * d - 208 * e);
    out[2] = clamp(c + 516 * d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_white_black_and_red_convert() {
        // Y U Y V for two pixels each: black, white, mid grey, and BT.601 red (Y=81, U=90, V=240).
        let data = [16, 128, 235, 128, 126, 128, 126, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&data, 6, 1, 12).expect("geometry fits");
        let px = |x| img.get_pixel(x, 0).0;
        assert_eq!(px(0), [0, 0, 0]);
        assert_eq!(px(1), [255, 255, 255]);
        assert_eq!(px(2), [128, 128, 128]);
        let red = px(4);
        assert!(red[0] >= 250 && red[1] <= 5 && red[2] <= 5, "{red:?}");
    }

    #[test]
    fn short_buffers_are_rejected() {
        assert!(yuyv_to_rgb(&[0; 10], 4, 2, 8).is_none());
        assert!(yuyv_to_rgb(&[0; 16], 3, 2, 8).is_none());
    }
}
