//! `lookout-edge classify`: one line per image. With `--roi`, only that region of each image is classified
//! (cropped before preprocessing, as `watch --roi` does). An image of the bundle's background label (the empty
//! scene) is answered `nothing`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use lookout_edge::files::collect_images;
use lookout_edge::pipeline::answer;
use lookout_edge::{error_line, Model, Prediction};
use lookout_shared::Region;
use serde_json::json;

use super::common::{load_model, ms, parse_roi, round3, UnknownArgs, WeightsArg};
use super::EXIT_SOME_FAILED;

/// Arguments of `classify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .lookout bundle.
    #[arg(long, short)]
    model: PathBuf,
    /// Image files and folders (walked recursively; images are recognised by content or extension).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Print JSON lines: {"type":"result","path","label","score","ms",…}, errors, and a summary.
    #[arg(long)]
    json: bool,
    /// Threads for tract's matrix kernels (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How a q4 bundle's 4-bit weights are held: fast (convolution weights as f32 at load) or compact
    /// (least memory, slower).
    #[arg(long, value_enum, default_value_t = WeightsArg::Fast)]
    weights: WeightsArg,
    /// Also show the K most likely labels per image.
    #[arg(long, value_name = "K", default_value_t = 1)]
    top: usize,
    /// Classify only this region of each image, x,y,w,h in fractions of it (e.g. 0.25,0.5,0.5,0.5).
    #[arg(long, value_name = "x,y,w,h")]
    roi: Option<String>,
    #[command(flatten)]
    unknown: UnknownArgs,
}

/// Runs `classify`. Exit code 0 if every image was classified, 1 if some failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let roi = args.roi.as_deref().map(parse_roi).transpose()?;
    let mut model = load_model(&args.model, args.threads, args.weights, &args.unknown)?;
    let images = collect_images(&args.paths).context("listing the images")?;
    if images.is_empty() {
        anyhow::bail!("no images found in {}", display_list(&args.paths));
    }
    let mut failed = 0usize;
    let mut total_ms = 0f64;
    let mut classified = 0usize;
    let (mut unknown, mut background) = (0usize, 0usize);
    for path in &images {
        let start = Instant::now();
        match classify_one(&mut model, path, roi) {
            Ok((prediction, decode_ms)) => {
                let elapsed = ms(start.elapsed());
                total_ms += elapsed;
                classified += 1;
                unknown += usize::from(prediction.unknown);
                background += usize::from(prediction.background);
                print_result(&model, path, &prediction, decode_ms, elapsed, &args);
            }
            Err(e) => {
                failed += 1;
                if args.json {
                    println!(
                        "{}",
                        json!({"type": "error", "path": path, "error": error_line(e.as_ref())})
                    );
                } else {
                    // Decode errors already name the file.
                    let reason = error_line(e.as_ref());
                    if reason.contains(&*path.to_string_lossy()) {
                        eprintln!("{reason}");
                    } else {
                        eprintln!("{}: {reason}", path.display());
                    }
                }
            }
        }
    }
    let mean_ms = if classified == 0 {
        0.0
    } else {
        total_ms / classified as f64
    };
    if args.json {
        println!(
            "{}",
            json!({"type": "summary", "images": images.len(), "classified": classified, "failed": failed,
                   "unknown": unknown, "background": background, "mean_ms": round3(mean_ms),
                   "load_ms": round3(ms(model.load_time()))})
        );
    } else {
        eprintln!(
            "{} images, {classified} classified, {failed} failed ({unknown} unknown, {background} nothing), mean {mean_ms:.1} ms per image (model load {:.0} ms)",
            images.len(),
            ms(model.load_time())
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_SOME_FAILED)
    })
}

fn classify_one(
    model: &mut Model,
    path: &Path,
    roi: Option<Region>,
) -> anyhow::Result<(Prediction, f64)> {
    let start = Instant::now();
    let mut image = model.decode_file(path, roi.as_slice())?;
    if let Some(roi) = roi {
        image = roi.crop(&image);
    }
    let decode_ms = ms(start.elapsed());
    Ok((model.classify(&image)?, decode_ms))
}

fn top_k(prediction: &Prediction, k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..prediction.probabilities.len()).collect();
    order.sort_by(|&a, &b| prediction.probabilities[b].total_cmp(&prediction.probabilities[a]));
    order.truncate(k.max(1));
    order
}

fn print_result(
    model: &Model,
    path: &Path,
    p: &Prediction,
    decode_ms: f64,
    total_ms: f64,
    args: &Args,
) {
    let labels = model.labels();
    let name = |i: usize| labels.get(i).map_or("?", String::as_str);
    if args.json {
        let mut line = json!({
            "type": "result",
            "path": path,
            "label": name(p.label),
            "label_index": p.label,
            "score": p.score,
            "unknown": p.unknown,
            "background": p.background,
            "ood_score": p.ood_score,
            "ms": round3(total_ms),
            "decode_ms": round3(decode_ms),
            "preprocess_ms": round3(ms(p.preprocess)),
            "inference_ms": round3(ms(p.inference)),
        });
        if args.top > 1 {
            line["top"] = top_k(p, args.top)
                .into_iter()
                .map(|i| json!({"label": name(i), "label_index": i, "score": p.probabilities[i]}))
                .collect();
        }
        println!("{line}");
    } else {
        let mut text = format!(
            "{}\t{}\t{:.4}\t{:.1} ms",
            path.display(),
            answer(p, name(p.label)),
            p.score,
            total_ms
        );
        if let (true, Some(score)) = (p.unknown, p.ood_score) {
            text.push_str(&format!(
                "\t(none of the labels: out-of-distribution score {score:.3}; closest label {})",
                name(p.label)
            ));
        }
        if args.top > 1 {
            let others: Vec<String> = top_k(p, args.top)
                .into_iter()
                .skip(1)
                .map(|i| format!("{} {:.3}", name(i), p.probabilities[i]))
                .collect();
            text.push_str(&format!("\t({})", others.join(", ")));
        }
        println!("{text}");
    }
}

fn display_list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
