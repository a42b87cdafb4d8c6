//! A bundle under camera conditions: accuracy per condition.

use std::path::Path;

use plotters::prelude::*;

use super::{draw_error, draw_legend, register_font, save_rgb, PlotError, FAMILY};

/// Accuracy per camera condition as bars, the clean photos first and the mean of the conditions as a line.
pub fn conditions_chart(
    report: &crate::report::conditions::ConditionsReport,
    path: &Path,
) -> Result<(), PlotError> {
    if report.conditions.is_empty() {
        return Err(PlotError::Empty("no conditions"));
    }
    register_font();
    let bars: Vec<(&str, f64)> = std::iter::once(&report.clean)
        .chain(&report.conditions)
        .map(|c| (c.name, c.accuracy * 100.0))
        .collect();
    let (width, height) = (900u32, 450u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    let err = draw_error(path);
    let low = bars.iter().map(|b| b.1).fold(100.0f64, f64::min);
    let floor = ((low - 10.0) / 10.0).floor().max(0.0) * 10.0;
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let names: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "accuracy under camera conditions ({} test photos)",
                    report.images
                ),
                (FAMILY, 24),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..bars.len() as f64 - 0.5, floor..100.0)
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len())
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    names.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("accuracy, %")
            .label_style((FAMILY, 14))
            .draw()
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, &(_, acc))| {
                let colour = if i == 0 { GREEN } else { BLUE };
                Rectangle::new(
                    [(i as f64 - 0.35, floor), (i as f64 + 0.35, acc)],
                    colour.mix(0.6).filled(),
                )
            }))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, &(_, acc))| {
                Text::new(
                    format!("{acc:.1}"),
                    (i as f64 - 0.2, acc + (100.0 - floor) * 0.01),
                    (FAMILY, 13),
                )
            }))
            .map_err(|e| err(e.to_string()))?;
        let mean = report.mean_accuracy * 100.0;
        chart
            .draw_series(LineSeries::new(
                [(0.5, mean), (bars.len() as f64 - 0.5, mean)],
                RED.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(format!("mean of the conditions {mean:.1}%"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight).map_err(&err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    save_rgb(path, width, height, buffer)
}
