//! The rejection against photos of other things: score histograms.

use std::path::Path;

use plotters::prelude::*;

use super::{draw_error, draw_legend, register_font, save_rgb, PlotError, FAMILY};

/// Histograms of the out-of-distribution score for photos of the classes (blue) and photos of other things
/// (red), with the threshold as a vertical line: how far apart the two are is the whole story of rejection.
pub fn ood_histogram(
    in_distribution: &[f32],
    ood: &[f32],
    threshold: f32,
    path: &Path,
) -> Result<(), PlotError> {
    if in_distribution.is_empty() || ood.is_empty() {
        return Err(PlotError::Empty("no scores"));
    }
    register_font();
    let (width, height) = (900u32, 450u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    let err = draw_error(path);
    let finite = |v: &&f32| v.is_finite();
    let low = in_distribution
        .iter()
        .chain(ood)
        .filter(finite)
        .copied()
        .fold(f32::INFINITY, f32::min);
    let high = in_distribution
        .iter()
        .chain(ood)
        .filter(finite)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let (low, high) = if high > low {
        (low, high)
    } else {
        (low - 0.5, low + 0.5)
    };
    let bins = 40usize;
    let width_of_bin = (high - low) / bins as f32;
    let fractions = |scores: &[f32]| -> Vec<f32> {
        let mut counts = vec![0usize; bins];
        for &s in scores.iter().filter(|s| s.is_finite()) {
            let bin = (((s - low) / width_of_bin) as usize).min(bins - 1);
            counts[bin] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f32 / scores.len() as f32)
            .collect()
    };
    let (inside, outside) = (fractions(in_distribution), fractions(ood));
    let top = inside
        .iter()
        .chain(&outside)
        .copied()
        .fold(0.0f32, f32::max)
        * 1.1;
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("out-of-distribution score", (FAMILY, 24))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(low..high, 0f32..top.max(1e-3))
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("score (higher: less like the training photos)")
            .y_desc("fraction of photos")
            .label_style((FAMILY, 14))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (name, values, colour) in [
            ("photos of the classes (test split)", &inside, BLUE),
            ("photos of other things", &outside, RED),
        ] {
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| {
                    let x0 = low + i as f32 * width_of_bin;
                    Rectangle::new(
                        [(x0, 0.0), (x0 + width_of_bin, v)],
                        colour.mix(0.45).filled(),
                    )
                }))
                .map_err(|e| err(e.to_string()))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                [(threshold, 0.0), (threshold, top)],
                BLACK.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(format!("threshold {threshold:.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(&err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    save_rgb(path, width, height, buffer)
}
