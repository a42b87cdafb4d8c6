//! PNG pictures of a run: training curves, the confusion matrix, a grid of labelled photos.
//!
//! plotters draws into an in-memory RGB buffer (text through ab_glyph with the bundled DejaVu Sans, so no
//! system fonts are needed); the `image` crate encodes it and the file is written atomically.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

mod conditions;
mod ood;

pub use conditions::conditions_chart;
pub use ood::ood_histogram;

use crate::head::train::EpochRecord;
use crate::report::evaluate::Metrics;

/// DejaVu Sans (Bitstream Vera licence, see assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// One curve: legend name, value per epoch, colour.
type Series = (&'static str, Vec<Option<f32>>, RGBColor);

/// Errors drawing or writing a picture.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed.
    #[error("drawing {path} failed: {message}")]
    Draw {
        /// The picture.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// An input photo could not be read.
    #[error("{path}: {message}")]
    Image {
        /// The photo.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The PNG could not be written.
    #[error(transparent)]
    Write(#[from] lookout_shared::atomic::WriteError),
    /// Nothing to draw.
    #[error("nothing to draw: {0}")]
    Empty(&'static str),
}

fn register_font() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok())
}

/// The series' legend, in the one style of every plot: a white box with a black border at `position`.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(|e| e.to_string())
}

fn draw_error(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |message| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    }
}

fn save_rgb(path: &Path, width: u32, height: u32, buffer: Vec<u8>) -> Result<(), PlotError> {
    let image =
        image::RgbImage::from_raw(width, height, buffer).ok_or_else(|| PlotError::Draw {
            path: path.to_path_buf(),
            message: "buffer size mismatch".into(),
        })?;
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| PlotError::Draw {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    lookout_shared::atomic::write_atomic(path, &png)?;
    Ok(())
}

/// Loss (left) and accuracy (right) per epoch, training and validation, as the tutorial's figure.
pub fn training_curves(history: &[EpochRecord], path: &Path) -> Result<(), PlotError> {
    if history.is_empty() {
        return Err(PlotError::Empty("no epochs"));
    }
    register_font();
    let (width, height) = (1200u32, 450u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    let err = draw_error(path);
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (left, right) = root.split_horizontally(width / 2);
        let loss_max = history
            .iter()
            .flat_map(|r| [Some(r.train_loss), r.valid_loss])
            .flatten()
            .filter(|v| v.is_finite())
            .fold(0.0f32, f32::max)
            * 1.1;
        let panels: [(&DrawingArea<_, _>, &str, f32, [Series; 2]); 2] = [
            (
                &left,
                "loss",
                loss_max.max(1e-3),
                [
                    (
                        "train_loss",
                        history.iter().map(|r| Some(r.train_loss)).collect(),
                        BLUE,
                    ),
                    (
                        "valid_loss",
                        history.iter().map(|r| r.valid_loss).collect(),
                        RED,
                    ),
                ],
            ),
            (
                &right,
                "accuracy",
                1.0,
                [
                    (
                        "train_accuracy",
                        history.iter().map(|r| Some(r.train_accuracy)).collect(),
                        BLUE,
                    ),
                    (
                        "valid_accuracy",
                        history.iter().map(|r| r.valid_accuracy).collect(),
                        RED,
                    ),
                ],
            ),
        ];
        for (area, title, y_max, series) in panels {
            curve_panel(area, title, y_max, series, history.len(), &err)?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    save_rgb(path, width, height, buffer)
}

/// One panel of the training curves: `series` over `epochs` epochs, y from 0 (or just under the lowest
/// accuracy) to `y_max`.
fn curve_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_max: f32,
    series: [Series; 2],
    epochs: usize,
    err: &impl Fn(String) -> PlotError,
) -> Result<(), PlotError> {
    let y_min = if title == "accuracy" {
        let low = series
            .iter()
            .flat_map(|s| s.1.iter().flatten().copied())
            .fold(1.0f32, f32::min);
        (low - 0.05).clamp(0.0, 0.95)
    } else {
        0.0
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f32..epochs as f32 + 0.5, y_min..y_max)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(title)
        .x_labels(epochs.min(20))
        .x_label_formatter(&|x| {
            if (x.fract()).abs() < 1e-3 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .label_style((FAMILY, 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (name, values, colour) in series {
        let points: Vec<(f32, f32)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i as f32 + 1.0, v)))
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| err(e.to_string()))?;
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(&err)?;
    Ok(())
}

/// The confusion matrix as a heat map with counts, true classes down, predictions across.
pub fn confusion_matrix(metrics: &Metrics, path: &Path) -> Result<(), PlotError> {
    let k = metrics.classes.len();
    if k == 0 {
        return Err(PlotError::Empty("no classes"));
    }
    register_font();
    let cell = (480 / k as u32).clamp(40, 160);
    let (margin_left, margin_top) = (170u32, 90u32);
    let (width, height) = (
        margin_left + cell * k as u32 + 30,
        margin_top + cell * k as u32 + 30,
    );
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    let err = draw_error(path);
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let max = metrics
            .confusion
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let title = format!(
            "confusion matrix — accuracy {:.2}%",
            metrics.accuracy * 100.0
        );
        root.draw(&Text::new(title, (10, 10), (FAMILY, 20)))
            .map_err(|e| err(e.to_string()))?;
        root.draw(&Text::new(
            "predicted →",
            (margin_left as i32, 40),
            (FAMILY, 15),
        ))
        .map_err(|e| err(e.to_string()))?;
        let label_font = (FAMILY, 14).into_font();
        let short = |s: &str| {
            if s.chars().count() > 18 {
                format!("{}…", s.chars().take(17).collect::<String>())
            } else {
                s.to_string()
            }
        };
        for (i, name) in metrics.classes.iter().enumerate() {
            let x = (margin_left + cell * i as u32 + 4) as i32;
            root.draw(&Text::new(
                short(name),
                (x, margin_top as i32 - 22),
                label_font.clone(),
            ))
            .map_err(|e| err(e.to_string()))?;
            let y = (margin_top + cell * i as u32 + cell / 2 - 7) as i32;
            root.draw(&Text::new(short(name), (10, y), label_font.clone()))
                .map_err(|e| err(e.to_string()))?;
        }
        for (t, row) in metrics.confusion.iter().enumerate() {
            for (p, &count) in row.iter().enumerate() {
                let x0 = (margin_left + cell * p as u32) as i32;
                let y0 = (margin_top + cell * t as u32) as i32;
                let shade = count as f64 / max;
                let colour = RGBColor(
                    (255.0 - 225.0 * shade) as u8,
                    (255.0 - 160.0 * shade) as u8,
                    (255.0 - 80.0 * shade) as u8,
                );
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    colour.filled(),
                ))
                .map_err(|e| err(e.to_string()))?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| err(e.to_string()))?;
                let text_colour = if shade > 0.6 { WHITE } else { BLACK };
                let text = count.to_string();
                let size = (cell as f64 / 4.0).clamp(12.0, 28.0);
                let style = (FAMILY, size).into_font().color(&text_colour);
                let text_width = (text.len() as f64 * size * 0.6) as i32;
                root.draw(&Text::new(
                    text,
                    (
                        x0 + cell as i32 / 2 - text_width / 2,
                        y0 + cell as i32 / 2 - size as i32 / 2,
                    ),
                    style,
                ))
                .map_err(|e| err(e.to_string()))?;
            }
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    save_rgb(path, width, height, buffer)
}

/// One photo of a [`prediction_grid`] and its title.
#[derive(Debug, Clone)]
pub struct GridItem {
    /// The photo (any format the `image` crate reads).
    pub image: PathBuf,
    /// Text above it, e.g. "Dog 0.98".
    pub title: String,
}

/// Up to 9 photos in a 3×3 grid, each with its title above (the tutorial's prediction figure).
pub fn prediction_grid(items: &[GridItem], path: &Path) -> Result<(), PlotError> {
    if items.is_empty() {
        return Err(PlotError::Empty("no photos"));
    }
    register_font();
    let items = &items[..items.len().min(9)];
    let columns = items.len().min(3) as u32;
    let rows = items.len().div_ceil(3) as u32;
    let (tile, title_height, gap) = (260u32, 34u32, 10u32);
    let width = columns * (tile + gap) + gap;
    let height = rows * (tile + title_height + gap) + gap;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    for (i, item) in items.iter().enumerate() {
        let photo = image::ImageReader::open(&item.image)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| PlotError::Image {
                path: item.image.clone(),
                message: e.to_string(),
            })?
            .decode()
            .map_err(|e| PlotError::Image {
                path: item.image.clone(),
                message: e.to_string(),
            })?
            .thumbnail(tile, tile)
            .to_rgb8();
        let (col, row) = (i as u32 % 3, i as u32 / 3);
        let x = gap + col * (tile + gap) + (tile - photo.width()) / 2;
        let y =
            gap + row * (tile + title_height + gap) + title_height + (tile - photo.height()) / 2;
        image::imageops::overlay(&mut canvas, &photo, x as i64, y as i64);
    }
    let mut buffer = canvas.into_raw();
    let err = draw_error(path);
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        for (i, item) in items.iter().enumerate() {
            let (col, row) = (i as u32 % 3, i as u32 / 3);
            let x = (gap + col * (tile + gap)) as i32;
            let y = (gap + row * (tile + title_height + gap) + 6) as i32;
            root.draw(&Text::new(item.title.clone(), (x, y), (FAMILY, 20)))
                .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    save_rgb(path, width, height, buffer)
}
