//! `lookout predict`: label photos with a trained run (its backbone, then its head).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use lookout_host::features::extractor::{ExtractOptions, FeatureExtractor};
use lookout_host::head::run::Run;
use lookout_host::head::unknown::normalized_rows;
use lookout_host::report::ood::list_images;
use lookout_host::report::plots::{prediction_grid, GridItem};
use lookout_models::backbone::Backbone;
use lookout_shared::Region;

/// Arguments of `lookout predict`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Label photos with a trained run",
    long_about = "Label photos with a trained run: each image goes through the run's backbone with the \
                  preprocessing it was trained with, then through its head. Prints one line per image \
                  (label, score of that label, path); --json prints one JSON object; --grid draws the first \
                  nine photos titled with their label and score."
)]
pub struct Args {
    /// Run directory written by `lookout train` (its float backbone and head).
    #[arg(
        long,
        value_name = "RUN_DIR",
        required_unless_present = "model",
        conflicts_with = "model"
    )]
    pub run: Option<PathBuf>,
    /// An exported bundle instead of a run: images go through the edge runtime exactly as on the Pi.
    #[arg(long, value_name = "MODEL.lookout")]
    pub model: Option<PathBuf>,
    /// Photos to label, or folders of them (walked as `lookout-edge classify` walks them; bad files in a
    /// folder are listed with the reason).
    #[arg(value_name = "IMAGE|DIR", required = true)]
    pub images: Vec<PathBuf>,
    /// Draw a 3×3 grid of the (first nine) photos with their predictions to this PNG.
    #[arg(long, value_name = "PNG")]
    pub grid: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Classify only this region of each image, x,y,w,h in fractions of its width and height (e.g.
    /// 0.3,0.5,0.4,0.5): what `lookout-edge classify/watch --roi` crop, the same pixels.
    #[arg(long, value_name = "X,Y,W,H")]
    pub roi: Option<Region>,
}

/// One image's prediction.
#[derive(Debug, serde::Serialize)]
struct Prediction {
    path: PathBuf,
    label: Option<String>,
    score: Option<f32>,
    scores: Option<Vec<f32>>,
    error: Option<String>,
    /// The rejection's out-of-distribution score, when the run or bundle has one.
    ood_score: Option<f32>,
    /// None of the classes (the label is then only the closest one).
    unknown: bool,
    /// The camera's empty scene (the background label): nothing there.
    background: bool,
}

/// The images of the command line, folders walked in sorted order with the one image-file rule; what a folder
/// holds that is not a readable image comes back as a failed prediction (path and reason).
fn expand_folders(paths: &[PathBuf]) -> anyhow::Result<(Vec<PathBuf>, Vec<Prediction>)> {
    let mut images = Vec::new();
    let mut bad = Vec::new();
    for path in paths {
        if !path.is_dir() {
            images.push(path.clone());
            continue;
        }
        let (found, skipped) = list_images(path)?;
        if found.is_empty() && skipped.is_empty() {
            anyhow::bail!("{}: the folder holds no images", path.display());
        }
        images.extend(found);
        bad.extend(skipped.into_iter().map(|s| Prediction {
            path: s.path,
            label: None,
            score: None,
            scores: None,
            error: Some(s.reason),
            ood_score: None,
            unknown: false,
            background: false,
        }));
    }
    Ok((images, bad))
}

/// Runs `lookout predict`.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    let (images, bad) = expand_folders(&args.images)?;
    args.images = images;
    let (classes, mut predictions) = match (&args.model, &args.run) {
        (Some(model), _) => predict_with_bundle(model, &args)?,
        (None, Some(run_dir)) => predict_with_run(run_dir, &args)?,
        (None, None) => anyhow::bail!("give --run RUN_DIR or --model MODEL.lookout"),
    };
    predictions.extend(bad);
    let failed = predictions.iter().filter(|p| p.error.is_some()).count();

    if args.json {
        let value = serde_json::json!({ "classes": classes, "predictions": predictions });
        println!("{value}");
    } else {
        for p in &predictions {
            match (&p.label, p.score, &p.error) {
                (Some(_), Some(score), _) if p.unknown => println!(
                    "unknown\t{score:.4}\t{}\t(none of the classes: out-of-distribution score {:.3})",
                    p.path.display(),
                    p.ood_score.unwrap_or(f32::NAN)
                ),
                (Some(_), Some(score), _) if p.background => println!(
                    "nothing\t{score:.4}\t{}\t(the empty scene)",
                    p.path.display()
                ),
                (Some(label), Some(score), _) => {
                    println!("{label}\t{score:.4}\t{}", p.path.display())
                }
                (_, _, Some(error)) => println!("-\t-\t{}\t({error})", p.path.display()),
                _ => {}
            }
        }
    }
    if let Some(grid) = &args.grid {
        let items: Vec<GridItem> = predictions
            .iter()
            .filter_map(|p| {
                let title = if p.unknown {
                    format!("unknown (like {} {:.2})", p.label.as_ref()?, p.score?)
                } else {
                    format!("{} {:.2}", p.label.as_ref()?, p.score?)
                };
                Some(GridItem {
                    image: p.path.clone(),
                    title,
                })
            })
            .take(9)
            .collect();
        prediction_grid(&items, grid).with_context(|| format!("cannot draw {}", grid.display()))?;
        if !args.json {
            println!("grid drawn to {}", grid.display());
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images could not be read", predictions.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Labels the images with a run's float backbone and head.
fn predict_with_run(run_dir: &Path, args: &Args) -> anyhow::Result<(Vec<String>, Vec<Prediction>)> {
    let run =
        Run::load(run_dir).with_context(|| format!("cannot load the run {}", run_dir.display()))?;
    let recorded = &run.config.features;
    let backbone = Backbone::from_file(
        &recorded.recipe.backbone.path,
        Some(recorded.recipe.preprocess.clone()),
    )
    .with_context(|| {
        format!(
            "cannot open the run's backbone {} (it must stay where it was at extraction)",
            recorded.recipe.backbone.path.display()
        )
    })?;
    if backbone.sha256 != recorded.recipe.backbone.identity.sha256 {
        anyhow::bail!(
            "{} has changed since the features were extracted (sha256 {} ≠ {}); re-extract and retrain",
            backbone.path.display(),
            backbone.sha256,
            recorded.recipe.backbone.identity.sha256
        );
    }
    let options = ExtractOptions {
        cut: recorded.recipe.backbone.identity.cut.clone(),
        pool: recorded.recipe.pooling,
        ..ExtractOptions::default()
    };
    let extractor =
        FeatureExtractor::new(&backbone, &options).context("cannot prepare the backbone")?;
    if extractor.feature_shape() != recorded.recipe.feature_shape.as_slice() {
        anyhow::bail!(
            "the backbone gives features of shape {:?}, the run was trained on {:?}",
            extractor.feature_shape(),
            recorded.recipe.feature_shape
        );
    }
    let progress = if args.images.len() > 4 && !args.json {
        ProgressBar::new(args.images.len() as u64).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        )
    } else {
        ProgressBar::hidden()
    };
    progress.set_message("Predicting");
    let outcomes = match args.roi.filter(|r| !r.is_full()) {
        None => extractor
            .extract_files(&args.images, &progress)
            .context("the backbone failed")?,
        Some(region) => {
            // Cropped one by one: the region is cut from the decoded image, before preprocessing.
            let mut worker = extractor.worker().context("cannot prepare the backbone")?;
            let mut outcomes = Vec::with_capacity(args.images.len());
            for path in &args.images {
                outcomes.push(match worker.decode_file(path, &[region]) {
                    Ok(image) => Ok(worker
                        .extract_image(&region.crop(&image))
                        .context("the backbone failed")?),
                    Err(e) => Err(e.kind.to_string()),
                });
                progress.inc(1);
            }
            outcomes
        }
    };
    progress.finish_and_clear();

    let detector = run
        .unknown_detector(run_dir)
        .context("cannot read the run's rejection of unknown images")?;
    let mut predictions = Vec::with_capacity(outcomes.len());
    for (path, outcome) in args.images.iter().zip(outcomes) {
        predictions.push(match outcome {
            Ok(features) => {
                let logits = run.head.forward(&features);
                let scores = run.scores(&logits);
                let class = run.predict(&logits);
                let ood_score = match &detector {
                    Some(d) => {
                        let (unit, _) = normalized_rows(&features, &recorded.recipe.feature_shape)?;
                        d.scores(&unit).first().copied()
                    }
                    None => None,
                };
                let unknown = match (&detector, ood_score) {
                    (Some(d), Some(score)) => score > d.threshold,
                    _ => false,
                };
                Prediction {
                    path: path.clone(),
                    label: Some(run.config.classes[class].clone()),
                    score: Some(scores[class]),
                    scores: Some(scores),
                    error: None,
                    ood_score,
                    unknown,
                    background: !unknown && run.config.background == Some(class),
                }
            }
            Err(reason) => Prediction {
                path: path.clone(),
                label: None,
                score: None,
                scores: None,
                error: Some(reason),
                ood_score: None,
                unknown: false,
                background: false,
            },
        });
    }
    Ok((run.config.classes.clone(), predictions))
}

/// Labels the images with an exported bundle through the edge runtime.
fn predict_with_bundle(
    model: &Path,
    args: &Args,
) -> anyhow::Result<(Vec<String>, Vec<Prediction>)> {
    let labelled = lookout_host::report::evaluate_bundle::predict_bundle(
        model,
        &args.images,
        args.roi.unwrap_or(Region::FULL),
        !args.json,
    )
    .with_context(|| format!("cannot run {}", model.display()))?;
    let predictions = labelled
        .predictions
        .into_iter()
        .map(|p| Prediction {
            path: p.path,
            label: p.label,
            score: p.score,
            scores: p.error.is_none().then_some(p.probabilities),
            error: p.error,
            ood_score: p.ood_score,
            unknown: p.unknown,
            background: p.background,
        })
        .collect();
    Ok((labelled.labels, predictions))
}
