//! Builds a small, real training run for the export tests: real photos, a real ONNX backbone, a head trained
//! with the library's trainer, a features cache in the library's format.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lookout_host::features::cache::{
    write_split_list, Manifest, ShardInfo, Split, SplitConfig, FORMAT_TAG,
};
use lookout_host::features::shard::{write_shard, ShardData};
use lookout_host::features::{BackboneRecord, FeatureRecipe, FeatureRows, Pooling};
use lookout_host::head::net::HeadKind;
use lookout_host::head::run::{
    FeaturesRecord, HeadSpec, Run, RunConfig, TrainingRecord, RUN_FORMAT, RUN_FORMAT_VERSION,
};
use lookout_host::head::train::{train, TrainConfig};
use lookout_models::backbone::Backbone;
use lookout_shared::preprocess::Preprocessor;
use lookout_shared::PreprocessSpec;
use tract_core::prelude::*;

/// What to build.
pub struct RunSpec<'a> {
    /// Backbone file.
    pub backbone: &'a Path,
    /// Its preprocessing.
    pub preprocess: PreprocessSpec,
    /// Training images per class.
    pub train_per_class: usize,
    /// Test images per class.
    pub test_per_class: usize,
    /// Pool features at extraction.
    pub pooled: bool,
    /// Head kind.
    pub head: HeadKind,
    /// Hidden width.
    pub hidden: usize,
    /// Epochs.
    pub epochs: usize,
}

/// The first `n` photos (sorted by name) of a cats-vs-dogs class folder, skipping `skip`.
pub fn photos(shared: &Path, class: &str, skip: usize, n: usize) -> Vec<PathBuf> {
    let dir = shared.join("data/cats-vs-dogs").join(class);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    files.sort();
    files.into_iter().skip(skip).take(n).collect()
}

/// Backbone features of one image, as extraction computes them (batch 1; pooled if asked).
pub struct Extractor {
    plan: Arc<TypedRunnableModel>,
    preprocessor: Preprocessor,
    input_shape: Vec<usize>,
    /// Per-image feature shape (after pooling).
    pub shape: Vec<usize>,
    pooled: bool,
    map_shape: Vec<usize>,
}

impl Extractor {
    /// Loads `backbone` with the library's loader.
    pub fn new(backbone: &Path, preprocess: &PreprocessSpec, pooled: bool) -> Extractor {
        let bb = Backbone::from_file(backbone, Some(preprocess.clone())).unwrap();
        let input_shape = preprocess.input_shape().unwrap().to_vec();
        let model = bb.load_typed_with_input(&input_shape, None).unwrap();
        let map_shape: Vec<usize> =
            model.output_fact(0).unwrap().shape.as_concrete().unwrap()[1..].to_vec();
        let shape = if pooled {
            vec![map_shape[0]]
        } else {
            map_shape.clone()
        };
        Extractor {
            plan: model.into_optimized().unwrap().into_runnable().unwrap(),
            preprocessor: Preprocessor::new(preprocess).unwrap(),
            input_shape,
            shape,
            pooled,
            map_shape,
        }
    }

    /// Features of the image at `path`.
    pub fn features(&mut self, path: &Path) -> Vec<f32> {
        let image = lookout_shared::image_io::decode_file(path).unwrap();
        let input = self.preprocessor.run(&image).unwrap();
        let tensor = Tensor::from_shape(&self.input_shape, &input).unwrap();
        let out = self.plan.run(tvec!(tensor.into_tvalue())).unwrap();
        let values = out[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        if self.pooled {
            lookout_host::features::pooling::global_average_pool(&values, &self.map_shape)
        } else {
            values
        }
    }
}

/// Extracts features for a cats-vs-dogs subset into `dir/features`, trains a head into `dir/run`, and returns
/// the run directory.
pub fn build_run(shared: &Path, dir: &Path, spec: &RunSpec<'_>) -> PathBuf {
    let data_root = shared.join("data/cats-vs-dogs");
    let classes = vec!["Cat".to_string(), "Dog".to_string()];
    let mut extractor = Extractor::new(spec.backbone, &spec.preprocess, spec.pooled);
    let features_dir = dir.join("features");
    std::fs::create_dir_all(features_dir.join("splits")).unwrap();
    let mut shards = Vec::new();
    let mut train_rows = (Vec::new(), Vec::new());
    for (split, skip, per_class) in [
        (Split::Train, 0, spec.train_per_class),
        (Split::Test, spec.train_per_class, spec.test_per_class),
    ] {
        let mut entries = Vec::new();
        let mut shard = ShardData::default();
        for (class_index, class) in classes.iter().enumerate() {
            for path in photos(shared, class, skip, per_class) {
                let rel = path.strip_prefix(&data_root).unwrap().to_path_buf();
                shard.index.push(entries.len() as u32);
                entries.push((rel, class_index as u32));
                shard.features.extend(extractor.features(&path));
                shard.labels.push(class_index as u32);
            }
        }
        write_split_list(&split.list_path(&features_dir), &entries).unwrap();
        let file = split.shard_file_name(0);
        write_shard(&features_dir.join(&file), &extractor.shape, &shard).unwrap();
        shards.push(ShardInfo {
            file,
            split,
            count: shard.labels.len(),
            first: 0,
            end: entries.len(),
        });
        if split == Split::Train {
            train_rows = (shard.features, shard.labels);
        }
    }
    let backbone = Backbone::from_file(spec.backbone, Some(spec.preprocess.clone())).unwrap();
    let manifest = Manifest {
        format: FORMAT_TAG.to_string(),
        lookout_version: "test".into(),
        complete: true,
        classes: classes.clone(),
        background: None,
        data_root: data_root.clone(),
        recipe: FeatureRecipe {
            backbone: BackboneRecord::of(&backbone, None),
            preprocess: spec.preprocess.clone(),
            feature_shape: extractor.shape.clone(),
            pooling: pooling(spec.pooled),
        },
        split: SplitConfig {
            seed: 0,
            test_fraction: 0.0,
        },
        shard_size: 100_000,
        shards,
        skipped: vec![],
        ignored_non_images: 0,
        fingerprint: "test".into(),
        views: None,
    };
    manifest.write(&features_dir).unwrap();

    let dim: usize = extractor.shape.iter().product();
    let config = TrainConfig {
        head: spec.head,
        hidden: spec.hidden,
        epochs: spec.epochs,
        pool: Pooling::None,
        val_split: 0.0,
        ..TrainConfig::default()
    };
    let data = FeatureRows::new(train_rows.0, train_rows.1, dim).unwrap();
    let trained = train(data, Vec::new(), &extractor.shape, 2, &config, &mut |_| {}).unwrap();
    let run = Run {
        config: RunConfig {
            format: RUN_FORMAT.into(),
            version: RUN_FORMAT_VERSION,
            classes,
            background: None,
            output: trained.output,
            threshold: 0.5,
            head: HeadSpec {
                kind: spec.head,
                hidden: spec.hidden,
                dropout: config.dropout,
                pool: Pooling::None,
                input_shape: extractor.shape.clone(),
                input_dim: dim,
                outputs: trained.head.outputs(),
                layers: trained.head.layers.iter().map(|l| l.name.clone()).collect(),
            },
            features: FeaturesRecord {
                dir: features_dir,
                recipe: manifest.recipe.clone(),
                augment: None,
            },
            training: TrainingRecord {
                seed: config.seed,
                epochs: config.epochs,
                epochs_run: config.epochs,
                batch: config.batch,
                lr: config.lr,
                optimizer: config.optimizer_name().into(),
                patience: None,
                val_split: 0.0,
                train_examples: trained.train_examples,
                valid_examples: 0,
                best_epoch: config.epochs,
                best_valid_loss: None,
                seconds: trained.seconds,
            },
            unknown: None,
        },
        head: trained.head,
    };
    let run_dir = dir.join("run");
    run.save(&run_dir).unwrap();
    run_dir
}

fn pooling(pooled: bool) -> Pooling {
    if pooled {
        Pooling::Avg
    } else {
        Pooling::None
    }
}
