//! `lookout fit`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lookout_host::fit::{fit, FitOptions, FitReport, DEFAULT_BACKBONE};
use lookout_host::head::train::TrainConfig;

use super::choices::{AugmentArgs, HeadChoice, PoolChoice, UnknownFitArgs};
use super::export::ExportGateArgs;
use super::extract::PreprocessArgs;

/// Arguments of `lookout fit`.
#[derive(Debug, clap::Args)]
#[command(
    about = "The whole job: extract → train → evaluate → export, keeping every intermediate",
    long_about = "The whole job in one command: extract backbone features from an ImageFolder (one sub-folder \
                  of photos per class; cached, so a second fit reuses them), train the tutorial's head, evaluate \
                  it on a held-out test split, and export one model bundle for `lookout-edge`.\n\n\
                  Every intermediate (features, run, plots) is kept in a work folder, by default \
                  `<out stem>.lookout-work/` next to --out, so each step can be re-run by hand with the \
                  individual commands.\n\n\
                  The default backbone, mobilenet_v3_large, is downloaded on first use; without network, pass \
                  --backbone FILE.onnx --preprocess tf-inception|torchvision."
)]
pub struct Args {
    /// ImageFolder: one sub-folder of photos per class.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// The bundle to write, e.g. `model.lookout`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Frames of the camera's empty scene (nothing in it), e.g. sorted from `lookout-edge watch --capture`:
    /// learnt as one more answer, `background` ("nothing" on the edge), which is neither a class nor unknown
    /// and never fires an event. The folder can be anywhere; its images are split like a class's.
    #[arg(long, value_name = "DIR")]
    pub background: Option<PathBuf>,
    /// Backbone: a catalogue name (see `lookout backbone list`) or an .onnx / .nnef.tar file.
    #[arg(long, value_name = "NAME|FILE", default_value = DEFAULT_BACKBONE)]
    pub backbone: String,
    /// Preprocessing of a backbone given as a file (catalogue backbones know their own).
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    /// Work folder for the intermediates (default: `<out stem>.lookout-work` next to --out).
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    /// Pool the backbone's feature map at extraction (`avg`: a much smaller, faster head).
    #[arg(long, value_enum, default_value_t = PoolChoice::None)]
    pub pool: PoolChoice,
    /// Head architecture.
    #[arg(long, value_enum, default_value_t = HeadChoice::Tutorial)]
    pub head: HeadChoice,
    /// Training epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Fraction of each class held out for the test split.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    pub test_split: f64,
    /// Seed of the split and of training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Precision and the accuracy gate of the export.
    #[command(flatten)]
    pub gate: ExportGateArgs,
    /// The rejection of unknown images.
    #[command(flatten)]
    pub unknown: UnknownFitArgs,
    /// Augmented views of the training photos.
    #[command(flatten)]
    pub augment: AugmentArgs,
    /// After export, measure the bundle on the test photos under camera conditions (low light, motion blur,
    /// noise, JPEG 20, tilt, off-centre, low resolution, infrared monochrome): 9 passes over the test split.
    #[arg(long)]
    pub conditions: bool,
    /// Print the summary as JSON on stdout (no progress bars).
    #[arg(long)]
    pub json: bool,
}

/// Runs `lookout fit`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut options = FitOptions::new(&args.data, &args.out);
    options.backbone = args.backbone.clone();
    options.background = args.background.clone();
    options.preprocess = args.preprocess.to_spec()?;
    options.work_dir = args.work.clone();
    options.pool = args.pool.into();
    options.test_fraction = args.test_split;
    options.seed = args.seed;
    options.train = TrainConfig {
        head: args.head.into(),
        epochs: args.epochs,
        seed: args.seed,
        ..TrainConfig::default()
    };
    options.unknown = args.unknown.config();
    options.precision = args.gate.precision;
    options.max_drop_points = args.gate.max_drop;
    options.force = args.gate.force;
    options.augment = args.augment.job();
    options.conditions = args.conditions;
    options.progress = !args.json;
    let progress = options.progress;
    let mut on_step = |step: &str| {
        if progress {
            eprintln!("{step}");
        }
    };
    let report = fit(&options, &mut on_step).with_context(|| {
        format!(
            "fitting {} into {}",
            args.data.display(),
            args.out.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(r: &FitReport) -> String {
    let e = &r.export;
    let mut out = format!(
        "\nDone. {} ({} precision, {:.1} MB)\n  backbone:  {}\n  data:      {} training, {} test images{}\n  \
         accuracy:  {:.2}% on the test split through the edge runtime (float head: {:.2}%)\n  \
         agreement: {:.2}% same label as the float head\n  plots:     {}\n  work:      {} (features{}, run)\n",
        e.path.display(),
        e.precision,
        e.file_size as f64 / 1e6,
        r.backbone,
        r.train_images,
        r.test_images,
        if r.skipped.is_empty() { String::new() } else { format!(", {} unreadable files skipped", r.skipped.len()) },
        e.accuracy * 100.0,
        r.float_metrics.accuracy * 100.0,
        e.agreement * 100.0,
        r.plots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        r.work_dir.display(),
        if r.features_reused { " reused" } else { "" },
    );
    if let Some(label) = &r.background {
        out.push_str(&format!(
            "  background: the empty scene is learnt as '{label}': answered \"nothing\" on the edge, never an event\n"
        ));
    }
    let calibrated_on = match &r.unknown {
        Some(u) if u.calibrated_on_views > 0 => format!(
            "{} validation photos and {} camera-like views of them; the bank: {} photos and {} views",
            u.calibrated_on - u.calibrated_on_views,
            u.calibrated_on_views,
            u.bank_size - u.bank_views,
            u.bank_views
        ),
        Some(u) => format!("{} clean validation photos", u.calibrated_on),
        None => String::new(),
    };
    match e.unknown_rate {
        Some(rate) => out.push_str(&format!(
            "  unknown:   {:.1}% of the test photos are called none of the classes (calibrated to reject {:.0}% \
             of {calibrated_on}); measure it on photos of other things with `lookout evaluate --run {} --ood DIR`\n",
            rate * 100.0,
            r.unknown_keep.map_or(0.0, |k| (1.0 - k) * 100.0),
            r.run_dir.display()
        )),
        None => out.push_str("  unknown:   off: every image gets one of the classes\n"),
    }
    out.push_str(&super::export::weights_lines(e));
    if r.augment_views > 0 {
        out.push_str(&format!(
            "  augment:   trained on each photo and {} augmented views of it\n",
            r.augment_views
        ));
    }
    if let Some(c) = &r.conditions {
        out.push_str(&c.to_table());
    }
    for skipped in r.skipped.iter().take(5) {
        out.push_str(&format!("  skipped:   {skipped}\n"));
    }
    for warning in &r.warnings {
        out.push_str(&format!("  warning:   {warning}\n"));
    }
    out.push_str(&format!("next, on the Pi: {}\n", r.next));
    out
}
