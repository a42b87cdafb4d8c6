//! `lookout backbone`: list, pull and import pretrained backbones.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lookout_models::cache::CachedMeta;
use lookout_models::catalogue::PresetKind;
use lookout_models::{catalogue, import, pull, Architecture, Cache, ImportRequest, PullOptions};

/// `lookout backbone` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the catalogue and what is cached.
    List {
        /// Print JSON (one array of objects) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download a catalogue backbone, verify it and convert it for tract (into the cache).
    ///
    /// The cache is $LOOKOUT_CACHE, else $XDG_CACHE_HOME/lookout, else ~/.cache/lookout. An interrupted
    /// download resumes where it stopped.
    Pull {
        /// Catalogue name, e.g. mobilenet_v3_large (see `lookout backbone list`).
        name: String,
        /// Which pretrained weights, e.g. V1 or V2 (IMAGENET1K_V2); default: the catalogue's default.
        #[arg(long)]
        weights: Option<String>,
        /// Fetch and convert again even if cached.
        #[arg(long)]
        force: bool,
    },
    /// Convert a local PyTorch state dict (.pth) into the cache, e.g. weights downloaded on another machine.
    ///
    /// Files that are catalogue weights (recognised by their sha256) are stored as those weights; other
    /// files (fine-tuned, other widths) need --name.
    Import {
        /// The .pth file (a torchvision state dict).
        file: PathBuf,
        /// Its architecture.
        #[arg(long, value_enum)]
        arch: ArchArg,
        /// The name to use it by (`lookout extract --backbone NAME`).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Architectures that `import` converts.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ArchArg {
    /// torchvision mobilenet_v3_large (any width).
    #[value(name = "mobilenet_v3_large")]
    MobilenetV3Large,
    /// torchvision mobilenet_v3_small (any width).
    #[value(name = "mobilenet_v3_small")]
    MobilenetV3Small,
    /// EfficientNet-Lite0 with lukemelas-style keys.
    #[value(name = "efficientnet_lite0")]
    EfficientnetLite0,
}

impl From<ArchArg> for Architecture {
    fn from(arch: ArchArg) -> Self {
        match arch {
            ArchArg::MobilenetV3Large => Architecture::MobilenetV3Large,
            ArchArg::MobilenetV3Small => Architecture::MobilenetV3Small,
            ArchArg::EfficientnetLite0 => Architecture::EfficientnetLite0,
        }
    }
}

/// Runs `lookout backbone`.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let cache = Cache::from_env()?;
    match cmd {
        Command::List { json } => list(&cache, json),
        Command::Pull {
            name,
            weights,
            force,
        } => {
            let cat = catalogue();
            let entry = cat.require(&name)?;
            let w = entry.weights(weights.as_deref())?;
            let options = PullOptions {
                progress: true,
                force,
            };
            let meta = pull(&cache, entry, w, &options)?;
            let key = Cache::catalogue_key(&entry.name, &w.id);
            print_stored(&cache, &key, &meta);
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, arch, name } => {
            let request = ImportRequest {
                file: file.clone(),
                architecture: arch.into(),
                name,
            };
            let (key, meta) = import(&cache, &request)
                .with_context(|| format!("importing {}", file.display()))?;
            print_stored(&cache, &key, &meta);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_stored(cache: &Cache, key: &str, meta: &CachedMeta) {
    let graph = cache.entry_dir(key).join(lookout_models::cache::GRAPH_FILE);
    println!(
        "{key}: {} ({}), features {:?}",
        meta.architecture, meta.weights, meta.feature_shape
    );
    println!("  sha256 {}", meta.sha256);
    println!("  preprocess {}", preprocess_summary(meta.preprocess));
    println!("  graph {}", graph.display());
    let by = if meta.weights == lookout_models::pull::IMPORTED {
        key.to_string()
    } else {
        format!("{}:{}", meta.name, meta.weights)
    };
    println!("use it with --backbone {by}");
}

fn preprocess_summary(p: lookout_models::catalogue::PreprocessPreset) -> String {
    let norm = match p.preset {
        PresetKind::Torchvision => "ImageNet mean/std",
        PresetKind::TfInception => "mean=std=0.5",
    };
    format!("resize {} crop {} {norm}", p.resize, p.crop)
}

/// One row of `list`.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    weights: String,
    default: bool,
    architecture: String,
    preprocess: String,
    feature_shape: Vec<usize>,
    accuracy: String,
    licence: String,
    cached: bool,
    path: Option<PathBuf>,
}

fn list(cache: &Cache, json: bool) -> anyhow::Result<ExitCode> {
    let cat = catalogue();
    let cached = cache.entries()?;
    let graph_of = |key: &str| cache.entry_dir(key).join(lookout_models::cache::GRAPH_FILE);
    let mut rows = Vec::new();
    for entry in &cat.backbones {
        for w in &entry.weights {
            let key = Cache::catalogue_key(&entry.name, &w.id);
            let is_cached = cached.iter().any(|(k, _)| *k == key);
            rows.push(Row {
                name: entry.name.clone(),
                weights: w.id.clone(),
                default: w.id == entry.default_weights,
                architecture: entry.architecture.to_string(),
                preprocess: preprocess_summary(w.preprocess),
                feature_shape: entry.feature_shape.clone(),
                accuracy: w.accuracy.clone(),
                licence: entry.licence.clone(),
                cached: is_cached,
                path: is_cached.then(|| graph_of(&key)),
            });
        }
    }
    for (key, meta) in cached
        .iter()
        .filter(|(_, m)| m.weights == lookout_models::pull::IMPORTED)
    {
        rows.push(Row {
            name: key.clone(),
            weights: meta.weights.clone(),
            default: true,
            architecture: meta.architecture.to_string(),
            preprocess: preprocess_summary(meta.preprocess),
            feature_shape: meta.feature_shape.clone(),
            accuracy: String::new(),
            licence: String::new(),
            cached: true,
            path: Some(graph_of(key)),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<15} {:<7} {:<38} {:<14} ACCURACY",
        "NAME", "WEIGHTS", "CACHED", "PREPROCESS", "FEATURES"
    );
    for row in &rows {
        let weights = if row.default {
            format!("{}*", row.weights)
        } else {
            row.weights.clone()
        };
        println!(
            "{:<20} {:<15} {:<7} {:<38} {:<14} {}",
            row.name,
            weights,
            if row.cached { "yes" } else { "-" },
            row.preprocess,
            format!("{:?}", row.feature_shape),
            row.accuracy
        );
    }
    let n_cached = rows.iter().filter(|r| r.cached).count();
    println!(
        "\n* = default weights. {n_cached} cached in {}",
        cache.root.display()
    );
    println!("Pull one with `lookout backbone pull NAME [--weights V1]`; without network, `lookout backbone import FILE.pth --arch ARCH`.");
    Ok(ExitCode::SUCCESS)
}
