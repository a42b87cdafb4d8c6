//! `lookout train`: fit a classifier head on a features cache and write a run directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use lookout_host::features::FeatureSet;
use lookout_host::head::run::{CURVES_FILE, RUN_FILE};
use lookout_host::head::train::{train_features, Progress, TrainConfig, TrainedRun};
use lookout_host::report::evaluate::float_test_metrics;

use super::choices::{HeadChoice, PoolChoice, UnknownFitArgs};

/// Arguments of `lookout train`.
#[derive(Debug, clap::Args)]
#[command(
    about = "Train a classifier head on cached features",
    long_about = "Train a classifier head on a features cache made by `lookout extract`, keeping the weights of \
                  the epoch with the lowest validation loss. The validation rows are a stratified, seeded \
                  fraction of the TRAINING split; the test split is only looked at after training, for the \
                  summary. Writes RUN_DIR/{run.json, head.safetensors, history.json, curves.png}.\n\n\
                  Defaults are the tutorial's head: flatten → Linear(→256) → ReLU → Dropout(0.5) → \
                  Linear(→1) with BCE-with-logits for two classes (softmax cross-entropy for more), \
                  Adam(amsgrad) at lr 1e-3, batch 64, 5 epochs."
)]
pub struct Args {
    /// Features cache directory (written by `lookout extract`).
    #[arg(long, value_name = "FEATURES_DIR")]
    pub features: PathBuf,
    /// Train on the clean features only, even if the cache has augmented views (`extract --augment K`).
    #[arg(long)]
    pub no_augment: bool,
    /// Run directory to write.
    #[arg(long, value_name = "RUN_DIR")]
    pub out: PathBuf,
    /// Head architecture.
    #[arg(long, value_enum, default_value_t = HeadChoice::Tutorial)]
    pub head: HeadChoice,
    /// Width of the hidden layer(s).
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Dropout probability after each hidden layer during training.
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f32,
    /// Pool `[C, H, W]` features to `[C]` before the head (`avg`: global average pooling).
    #[arg(long, value_enum, default_value_t = PoolChoice::None)]
    pub pool: PoolChoice,
    /// Maximum number of epochs.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Learning rate of Adam.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Plain Adam instead of the AMSGrad variant.
    #[arg(long)]
    pub no_amsgrad: bool,
    /// Seed of initialisation, validation split, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after this many epochs without a lower validation loss.
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// Fraction of the training split held out for validation (0 keeps the last epoch).
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f32,
    /// Replace an existing run in RUN_DIR.
    #[arg(long)]
    pub force: bool,
    /// The rejection of unknown images.
    #[command(flatten)]
    pub unknown: UnknownFitArgs,
    /// Print the summary as one JSON object instead of text (progress bars still go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs `lookout train`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.out.join(RUN_FILE).exists() && !args.force {
        anyhow::bail!(
            "{} already holds a training run; pass --force to replace it or choose another --out",
            args.out.display()
        );
    }
    let features = FeatureSet::open(&args.features)
        .with_context(|| format!("cannot open the features cache {}", args.features.display()))?;
    let manifest = &features.manifest;
    let config = TrainConfig {
        head: args.head.into(),
        hidden: args.hidden,
        dropout: args.dropout,
        pool: args.pool.into(),
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        amsgrad: !args.no_amsgrad,
        seed: args.seed,
        patience: args.patience,
        val_split: args.val_split,
    };
    eprintln!(
        "Training a {:?} head on {:?} features ({} classes: {}) from {}",
        config.head,
        manifest.recipe.feature_shape,
        manifest.classes.len(),
        manifest.classes.join(", "),
        args.features.display()
    );

    let style = ProgressStyle::with_template("Epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressBar::new(0).style())
        .progress_chars("=> ");
    let mut bar: Option<ProgressBar> = None;
    let mut on_progress = |event: Progress<'_>| match event {
        Progress::EpochStart {
            epoch,
            epochs,
            batches,
        } => {
            let b = ProgressBar::new(batches as u64)
                .with_style(style.clone())
                .with_prefix(format!("{epoch}/{epochs}"));
            bar = Some(b);
        }
        Progress::Batch { loss } => {
            if let Some(b) = &bar {
                b.inc(1);
                b.set_message(format!("loss: {loss:.4}"));
            }
        }
        Progress::EpochEnd(record) => {
            if let Some(b) = bar.take() {
                let valid = match (record.valid_accuracy, record.valid_loss) {
                    (Some(a), Some(l)) => format!(" - accuracy: {a:.4} - valid_loss: {l:.4}"),
                    _ => String::new(),
                };
                b.finish_with_message(format!(
                    "{:.1}s - train_accuracy: {:.4} - train_loss: {:.4}{valid}",
                    record.seconds, record.train_accuracy, record.train_loss
                ));
            }
        }
    };
    let unknown = args.unknown.config();
    let trained = train_features(
        &features,
        &args.out,
        &config,
        unknown.as_ref(),
        !args.no_augment,
        &mut on_progress,
    )
    .with_context(|| format!("training on {}", args.features.display()))?;
    // A missing picture loses nothing the numbers do not hold: warn and go on.
    if let Err(e) = lookout_host::report::plots::training_curves(
        &trained.history.epochs,
        &args.out.join(CURVES_FILE),
    ) {
        eprintln!("warning: no training curves: {e}");
    }
    if trained.pool_already_applied {
        eprintln!(
            "note: the features are already pooled ({:?}); --pool avg had nothing to do",
            manifest.recipe.feature_shape
        );
    }
    print_summary(&args, &trained, &features)?;
    Ok(ExitCode::SUCCESS)
}

/// The summary at the end: JSON for scripts, or a few lines for a person.
fn print_summary(args: &Args, trained: &TrainedRun, features: &FeatureSet) -> anyhow::Result<()> {
    let run = &trained.run;
    let test_metrics =
        float_test_metrics(&trained.run, &args.out, features).with_context(|| {
            format!(
                "evaluating on the test split of {}",
                args.features.display()
            )
        })?;
    let test_accuracy = test_metrics.as_ref().map(|m| m.accuracy);
    let test_rows = test_metrics.as_ref().map_or(0, |m| m.examples);

    let best = &trained.history.epochs[trained.history.best_epoch - 1];
    if args.json {
        let summary = serde_json::json!({
            "run": args.out,
            "best_epoch": trained.history.best_epoch,
            "epochs_run": trained.history.epochs.len(),
            "stopped_early": trained.history.stopped_early,
            "valid_loss": best.valid_loss,
            "valid_accuracy": best.valid_accuracy,
            "test_accuracy": test_accuracy,
            "seconds": run.config.training.seconds,
        });
        println!("{summary}");
    } else {
        println!(
            "\nTrained in {:.1} s ({} epochs{}); kept epoch {} of {}",
            run.config.training.seconds,
            trained.history.epochs.len(),
            if trained.history.stopped_early {
                ", stopped early"
            } else {
                ""
            },
            trained.history.best_epoch,
            trained.history.epochs.len()
        );
        if let (Some(l), Some(a)) = (best.valid_loss, best.valid_accuracy) {
            println!(
                "  validation ({} rows): loss {l:.4}, accuracy {:.2}%",
                run.config.training.valid_examples,
                a * 100.0
            );
        }
        if let Some(a) = test_accuracy {
            println!(
                "  test ({} rows):       accuracy {:.2}%",
                test_rows,
                a * 100.0
            );
        }
        println!(
            "  run written to {} (run.json, head.safetensors, history.json, curves.png)",
            args.out.display()
        );
        println!("  next: lookout evaluate --run {}", args.out.display());
    }
    Ok(())
}
