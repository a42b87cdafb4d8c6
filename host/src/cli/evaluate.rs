//! `lookout evaluate`: test-split metrics of a trained run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::ProgressBar;
use lookout_host::features::FeatureSet;
use lookout_host::head::run::{Run, CONFUSION_FILE, OOD_PLOT_FILE};
use lookout_host::report::conditions::{
    evaluate_conditions, ConditionsReport, CONDITIONS_PLOT_FILE,
};
use lookout_host::report::evaluate::float_test_metrics;
use lookout_host::report::ood::{evaluate_ood, OodReport, ScoreResult};
use lookout_shared::bundle::OutputKind;

/// Arguments of `lookout evaluate`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Evaluate a trained run on the test split",
    long_about = "Evaluate a trained run on the test split of its features cache: accuracy, per-class precision, \
                  recall and F1, and the confusion matrix (also drawn to RUN_DIR/confusion.png). With --json, \
                  prints one JSON object with at least `accuracy` (0..1), `per_class` and `confusion`."
)]
pub struct Args {
    /// Run directory written by `lookout train`.
    #[arg(long, value_name = "RUN_DIR", required = true)]
    pub run: PathBuf,
    /// Evaluate this exported bundle instead of the run's float head: the test split's image files go through
    /// the edge runtime exactly as on the Pi.
    #[arg(long, value_name = "MODEL.lookout")]
    pub model: Option<PathBuf>,
    /// Features cache to evaluate on, if it moved since training (default: the one recorded in run.json).
    #[arg(long, value_name = "FEATURES_DIR")]
    pub features: Option<PathBuf>,
    /// Also measure the rejection of what is none of the classes on this folder of photos of other things
    /// (any images, nested or not): how many are wrongly accepted, the AUROC, every candidate score side by
    /// side, and a histogram in RUN_DIR/ood.png.
    #[arg(long, value_name = "DIR")]
    pub ood: Option<PathBuf>,
    /// With --ood: calibrate the candidate scores to keep this fraction of validation photos (default: what
    /// the run's rejection was calibrated to, else 0.95).
    #[arg(long, value_name = "FRACTION", requires = "ood")]
    pub unknown_keep: Option<f32>,
    /// With --model: also measure the bundle on the test photos under camera conditions (low light, motion
    /// blur, noise, JPEG quality 20, a 15° tilt, off-centre, low resolution, an infrared night mode's
    /// monochrome) at fixed seeded strengths;
    /// accuracy per condition and the mean, drawn to RUN_DIR/conditions.png.
    #[arg(long, requires = "model")]
    pub conditions: bool,
    /// Print one compact JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `lookout evaluate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let run = Run::load(&args.run)
        .with_context(|| format!("cannot load the run {}", args.run.display()))?;
    let (metrics, source) = match &args.model {
        Some(model) => {
            let metrics =
                lookout_host::report::evaluate_bundle::evaluate_bundle(model, &args.run, args.json)
                    .with_context(|| format!("cannot evaluate {}", model.display()))?;
            (metrics, model.clone())
        }
        None => (float_metrics(&args, &run)?, args.run.clone()),
    };
    let ood = match &args.ood {
        Some(dir) => Some(ood_report(&args, &run, dir)?),
        None => None,
    };
    let conditions = match (&args.model, args.conditions) {
        (Some(model), true) => Some(conditions_report(&args, model)?),
        _ => None,
    };
    let confusion_png = args.run.join(CONFUSION_FILE);
    let plot_result = lookout_host::report::plots::confusion_matrix(&metrics, &confusion_png);
    if args.json {
        let mut value = serde_json::to_value(&metrics)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("threshold".into(), serde_json::json!(threshold(&run)));
            object.insert("output".into(), serde_json::to_value(run.config.output)?);
            object.insert("run".into(), serde_json::json!(args.run));
            if let Some(ood) = &ood {
                object.insert("ood".into(), serde_json::to_value(ood)?);
            }
            if let Some(conditions) = &conditions {
                object.insert("conditions".into(), serde_json::to_value(conditions)?);
            }
        }
        println!("{value}");
    } else {
        println!(
            "Test split, {}: {} images, accuracy {:.2}% ({} of {})\n",
            source.display(),
            metrics.examples,
            metrics.accuracy * 100.0,
            metrics
                .confusion
                .iter()
                .enumerate()
                .map(|(i, row)| row[i])
                .sum::<usize>(),
            metrics.examples
        );
        print!("{}", metrics.to_table());
        match metrics.unknown_rate {
            Some(rate) => println!(
                "\nunknown: {:.1}% of these photos of the classes are called none of them (measure photos of \
                 other things with --ood DIR)",
                rate * 100.0
            ),
            None => println!("\nunknown: no rejection; every image gets one of the classes"),
        }
        match threshold(&run) {
            Some(t) => println!(
                "\ndecision: {} when sigmoid(logit) ≥ {t}, else {}",
                run.config.classes[1], run.config.classes[0]
            ),
            None => println!("\ndecision: the class with the highest softmax score"),
        }
    }
    match plot_result {
        Ok(()) if !args.json => println!("confusion matrix drawn to {}", confusion_png.display()),
        Ok(()) => {}
        Err(err) => eprintln!("warning: no confusion matrix picture: {err}"),
    }
    if let (Some(ood), false) = (&ood, args.json) {
        print!("{}", ood_table(ood));
    }
    if let (Some(conditions), false) = (&conditions, args.json) {
        print!("{}", conditions.to_table());
        println!("drawn to {}", args.run.join(CONDITIONS_PLOT_FILE).display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--conditions`: the bundle under camera conditions; draws RUN_DIR/conditions.png.
fn conditions_report(args: &Args, model: &std::path::Path) -> anyhow::Result<ConditionsReport> {
    let bar = lookout_host::bundle::measure::progress_bar(0, "camera conditions", !args.json);
    let report = evaluate_conditions(model, &args.run, &bar)
        .with_context(|| format!("measuring {} under camera conditions", model.display()))?;
    bar.finish_and_clear();
    let png = args.run.join(CONDITIONS_PLOT_FILE);
    if let Err(e) = lookout_host::report::plots::conditions_chart(&report, &png) {
        eprintln!("warning: no conditions chart: {e}");
    }
    Ok(report)
}

fn open_features(args: &Args, run: &Run) -> anyhow::Result<(FeatureSet, PathBuf)> {
    let features_dir = args
        .features
        .clone()
        .unwrap_or_else(|| run.config.features.dir.clone());
    let features = FeatureSet::open(&features_dir).with_context(|| {
        format!(
            "cannot open the features cache {} (pass --features DIR if it moved)",
            features_dir.display()
        )
    })?;
    check_same_features(run, &features)?;
    Ok((features, features_dir))
}

/// `--ood`: the rejection measured on a folder of photos of other things; draws RUN_DIR/ood.png.
fn ood_report(args: &Args, run: &Run, dir: &std::path::Path) -> anyhow::Result<OodReport> {
    let (features, _) = open_features(args, run)?;
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0).with_message("photos of other things")
    };
    let report = evaluate_ood(run, &args.run, &features, dir, args.unknown_keep, &bar)
        .with_context(|| format!("measuring the rejection on {}", dir.display()))?;
    let (inside, outside, threshold) = &report.histogram;
    let png = args.run.join(OOD_PLOT_FILE);
    match lookout_host::report::plots::ood_histogram(inside, outside, *threshold, &png) {
        Ok(()) if !args.json => eprintln!("score histogram drawn to {}", png.display()),
        Ok(()) => {}
        Err(err) => eprintln!("warning: no histogram picture: {err}"),
    }
    for bad in &report.skipped {
        eprintln!("skipped {}: {}", bad.path.display(), bad.reason);
    }
    Ok(report)
}

fn ood_table(r: &OodReport) -> String {
    let mut out = format!(
        "\nPhotos of other things: {} (plus {} test photos of the classes); thresholds keep {:.0}% of {} validation photos\n\n",
        r.ood_images,
        r.test_images,
        r.keep * 100.0,
        r.validation_images
    );
    // The first column as wide as its longest name (the exported score's says what its bank holds).
    let width = r
        .candidates
        .iter()
        .chain(&r.exported)
        .map(|s| s.score.chars().count())
        .max()
        .unwrap_or(0)
        .max(40);
    out.push_str(&format!(
        "{:<width$} {:>10} {:>11} {:>13} {:>8}\n",
        "score", "test kept", "kept acc.", "OOD accepted", "AUROC"
    ));
    let row = |s: &ScoreResult| {
        format!(
            "{:<width$} {:>9.1}% {:>10.2}% {:>12.1}% {:>8.4}\n",
            s.score,
            s.test_kept * 100.0,
            s.kept_accuracy * 100.0,
            s.ood_accepted * 100.0,
            s.auroc
        )
    };
    for candidate in &r.candidates {
        out.push_str(&row(candidate));
    }
    match &r.exported {
        Some(exported) => out.push_str(&row(exported)),
        None => out.push_str("(this run has no rejection of its own: trained with --no-unknown or before it existed)\n"),
    }
    out.push_str(
        "\nthe photos of other things most like the classes (score, lower = more alike):\n",
    );
    for (path, score) in &r.closest {
        out.push_str(&format!("  {score:.4}  {}\n", path.display()));
    }
    out
}

/// Test-split metrics of the run's float head on its cached features.
fn float_metrics(
    args: &Args,
    run: &Run,
) -> anyhow::Result<lookout_host::report::evaluate::Metrics> {
    let (features, features_dir) = open_features(args, run)?;
    let metrics = float_test_metrics(run, &args.run, &features)
        .context("cannot measure the head on the test features")?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{} has an empty test split: nothing to evaluate",
                features_dir.display()
            )
        })?;
    Ok(metrics)
}

fn threshold(run: &Run) -> Option<f32> {
    (run.config.output == OutputKind::Sigmoid).then_some(run.config.threshold)
}

/// Refuses features that do not come from the run's backbone, preprocessing and classes.
pub(crate) fn check_same_features(run: &Run, features: &FeatureSet) -> anyhow::Result<()> {
    let recorded = &run.config.features;
    let manifest = &features.manifest;
    let dir = features.dir.display();
    if manifest.classes != run.config.classes {
        anyhow::bail!(
            "{dir} has classes {:?}, the run was trained on {:?}",
            manifest.classes,
            run.config.classes
        );
    }
    if let Some(why) = manifest.recipe.mismatch(&recorded.recipe) {
        anyhow::bail!("{dir} holds features made otherwise than the run's: {why}");
    }
    Ok(())
}
