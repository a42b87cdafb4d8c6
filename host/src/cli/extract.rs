//! `lookout extract`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use lookout_host::features::device::DeviceChoice;
use lookout_host::features::extract::{
    extract_folder, ExtractJob, ExtractReport, DEFAULT_SHARD_SIZE,
};
use lookout_host::features::extractor::ExtractOptions;
use lookout_models::backbone::Backbone;
use lookout_shared::preprocess::{PreprocessSpec, Resize};

use super::choices::PoolChoice;

/// How images are preprocessed for a backbone given as a file (catalogue backbones know their own).
#[derive(Debug, Clone, clap::Args)]
pub struct PreprocessArgs {
    /// Preprocessing preset: `tf-inception` (resize 256, crop 224, pixels to -1..1: the ONNX backbones of the
    /// Lookout docs) or `torchvision` (resize 232, crop 224, ImageNet mean/std).
    #[arg(long, value_name = "PRESET", value_parser = clap::builder::PossibleValuesParser::new(PreprocessSpec::PRESETS))]
    pub preprocess: Option<String>,
    /// Resize the shorter side to this many pixels (overrides the preset).
    #[arg(long, value_name = "PIXELS")]
    pub resize: Option<u32>,
    /// Center-crop to this many pixels square (overrides the preset).
    #[arg(long, value_name = "PIXELS")]
    pub crop: Option<u32>,
    /// Per-channel mean after scaling pixels to 0..1, `R,G,B` (overrides the preset).
    #[arg(long, value_name = "R,G,B", value_delimiter = ',', num_args = 3)]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation, `R,G,B` (overrides the preset).
    #[arg(long, value_name = "R,G,B", value_delimiter = ',', num_args = 3)]
    pub std: Option<Vec<f32>>,
}

impl PreprocessArgs {
    /// The recipe these flags describe, `None` when none was given. Explicit values without a preset start
    /// from the torchvision recipe.
    pub fn to_spec(&self) -> anyhow::Result<Option<PreprocessSpec>> {
        let explicit = self.resize.is_some()
            || self.crop.is_some()
            || self.mean.is_some()
            || self.std.is_some();
        let mut spec = match (&self.preprocess, explicit) {
            (Some(name), _) => PreprocessSpec::preset(name)
                .with_context(|| format!("unknown preprocessing preset {name:?}"))?,
            (None, true) => PreprocessSpec::torchvision(),
            (None, false) => return Ok(None),
        };
        if explicit {
            spec.name = "custom".into();
        }
        if let Some(side) = self.resize {
            spec.resize = Resize::ShorterSide(side);
        }
        if let Some(crop) = self.crop {
            spec.crop = Some((crop, crop));
        }
        let three = |v: &Vec<f32>, what: &str| -> anyhow::Result<[f32; 3]> {
            <[f32; 3]>::try_from(v.as_slice())
                .map_err(|_| anyhow::anyhow!("--{what} needs exactly three values R,G,B"))
        };
        if let Some(mean) = &self.mean {
            spec.mean = three(mean, "mean")?;
        }
        if let Some(std) = &self.std {
            spec.std = three(std, "std")?;
        }
        spec.validate().context("invalid preprocessing flags")?;
        Ok(Some(spec))
    }
}

/// Arguments of `lookout extract`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    lookout extract --data photos/ --backbone mobilenet_v3_large --out features/\n  \
    lookout extract --data photos/ --backbone lite0_features.onnx --preprocess tf-inception --out features/ --pool avg")]
pub struct Args {
    /// Image folder: one sub-folder per class (class index = sorted folder name).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Backbone: a catalogue name (`lookout backbone list`) or a model file (.onnx, .nnef.tar).
    #[arg(long, value_name = "MODEL")]
    pub backbone: String,
    /// Output features directory (created; reused when the inputs are unchanged).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Frames of the camera's empty scene (nothing in it), e.g. sorted from `lookout-edge watch --capture`:
    /// learnt as one more answer, `background` ("nothing" on the edge), which is neither a class nor unknown
    /// and never fires an event. The folder can be anywhere; its images are split like a class's.
    #[arg(long, value_name = "DIR")]
    pub background: Option<PathBuf>,
    #[command(flatten)]
    pub preprocess: PreprocessArgs,
    /// Take the features from this node instead of the model output (see `lookout inspect`).
    #[arg(long, value_name = "NODE")]
    pub cut: Option<String>,
    /// Global pooling of the features: `avg` stores `[C]` per image instead of `[C, H, W]`.
    #[arg(long, value_enum, default_value_t = PoolChoice::None)]
    pub pool: PoolChoice,
    /// Fraction of every class held out for testing.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    pub test_split: f64,
    /// Seed of the stratified split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the backbone runs: auto picks a usable GPU, else the CPU.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Images per model call (default: 1 on the CPU, the fastest there; 32 on a GPU).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Images per shard file.
    #[arg(long, default_value_t = DEFAULT_SHARD_SIZE, value_name = "N")]
    pub shard_size: usize,
    /// Recompute even if the output holds features for identical inputs.
    #[arg(long)]
    pub force: bool,
    /// Augmented views of the training photos.
    #[command(flatten)]
    pub augment: super::choices::AugmentArgs,
    /// Print the summary as JSON on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// Runs `lookout extract`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let preprocess = args.preprocess.to_spec()?;
    let backbone = Backbone::resolve(&args.backbone, preprocess)
        .with_context(|| format!("cannot use backbone {}", args.backbone))?;
    let job = ExtractJob {
        data_dir: args.data.clone(),
        background_dir: args.background.clone(),
        out_dir: args.out.clone(),
        test_fraction: args.test_split,
        seed: args.seed,
        force: args.force,
        shard_size: args.shard_size,
        options: ExtractOptions {
            cut: args.cut.clone(),
            pool: args.pool.into(),
            device: args.device,
            batch: args.batch,
        },
        augment: args.augment.job(),
    };
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(0);
        let unit = match args.augment.augment {
            0 => "images".to_string(),
            k => format!(
                "backbone runs (each training photo {} times: 1 + {k} views)",
                k + 1
            ),
        };
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} extracting [{{bar:30}}] {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}"
            ))
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let report = extract_folder(&job, &backbone, &progress)
        .with_context(|| format!("extracting features of {}", args.data.display()))?;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report, &backbone);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(r: &ExtractReport, backbone: &Backbone) {
    if r.reused {
        println!(
            "Features in {} are up to date (same images, backbone, preprocessing and split): reused. Use --force to recompute.",
            r.out_dir.display()
        );
    } else {
        println!("Features written to {}", r.out_dir.display());
    }
    println!(
        "  backbone     {} ({}), features {:?}",
        backbone.name,
        backbone.path.display(),
        r.feature_shape
    );
    println!("  classes      {}", r.classes.join(", "));
    println!(
        "  images       {} train, {} test",
        r.train_images, r.test_images
    );
    if r.views > 0 {
        println!(
            "  views        {} augmented per training photo ({} run through the backbone now)",
            r.views, r.processed_views
        );
    }
    if !r.reused {
        if let Some(note) = &r.device_note {
            println!(
                "  device       {} (batch {}; no GPU: {note})",
                r.device, r.batch
            );
        } else {
            println!("  device       {} (batch {})", r.device, r.batch);
        }
        if r.resumed_shards > 0 {
            println!(
                "  resumed      {} shard(s) kept from an interrupted run, {} computed",
                r.resumed_shards, r.computed_shards
            );
        }
        let busy = (r.stages.decode_s + r.stages.preprocess_s + r.stages.model_s).max(1e-9);
        println!(
            "  time         {:.1} s, {:.1} backbone runs/s (work split: decode {:.0}%, preprocess {:.0}%, model {:.0}%)",
            r.seconds,
            r.images_per_second,
            100.0 * r.stages.decode_s / busy,
            100.0 * r.stages.preprocess_s / busy,
            100.0 * r.stages.model_s / busy
        );
    }
    if r.ignored_non_images > 0 {
        println!("  ignored      {} non-image file(s)", r.ignored_non_images);
    }
    if !r.skipped.is_empty() {
        println!(
            "  skipped      {} bad file(s) (listed in {}):",
            r.skipped.len(),
            r.out_dir.join("skipped.txt").display()
        );
        for s in r.skipped.iter().take(20) {
            println!("    {}: {}", s.path.display(), s.reason);
        }
        if r.skipped.len() > 20 {
            println!("    … and {} more", r.skipped.len() - 20);
        }
    }
}

/// `--device`: one of [`DeviceChoice::NAMES`], listed in the error when it is none of them.
fn parse_device(name: &str) -> Result<DeviceChoice, String> {
    name.parse().map_err(|_| {
        format!(
            "unknown device {name:?}; one of: {}",
            DeviceChoice::NAMES.join(", ")
        )
    })
}
