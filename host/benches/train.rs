//! Training speed of the tutorial head, to compare with the tutorial's PyTorch loop
//! (`python3 benches/train_reference.py`, ≈ 21 s for 5 epochs on this machine per the platform notes).
//!
//! Same work as the reference: 5 epochs over 1600 feature maps of EfficientNet-Lite0's shape [1280, 7, 7]
//! (flatten → Linear(62720→256) → ReLU → Dropout(0.5) → Linear(256→1), Adam(amsgrad), batch 64), plus a pass
//! over 400 held-out maps after every epoch. The maps are random (a dense head's speed does not depend on
//! the values) unless `LOOKOUT_BENCH_FEATURES=DIR` names a real features cache, whose train split is used.
//! `LOOKOUT_BENCH_VIEWS=K` trains with K augmented views per row (the cache's own, or random ones), as
//! `fit --augment K` does: each epoch still passes over 1600 rows, each drawn from one of its K + 1 versions.
//!
//! `cargo bench -p lookout-host --bench train`

use std::time::Instant;

use lookout_host::features::{FeatureRows, FeatureSet, Split};
use lookout_host::head::train::{train, Progress, TrainConfig};
use lookout_host::rng::Rng;

fn main() {
    let (data, shape, classes, source) = match std::env::var_os("LOOKOUT_BENCH_FEATURES") {
        Some(dir) => {
            let features = match FeatureSet::open(&dir) {
                Ok(f) => f,
                Err(err) => {
                    eprintln!("cannot open LOOKOUT_BENCH_FEATURES: {err}");
                    std::process::exit(1);
                }
            };
            let split = match features.load_split(Split::Train) {
                Ok(s) => s,
                Err(err) => {
                    eprintln!("cannot load the train split: {err}");
                    std::process::exit(1);
                }
            };
            let shape = features.manifest.recipe.feature_shape.clone();
            let classes = features.manifest.classes.len();
            let data = split.rows;
            (
                data,
                shape,
                classes,
                format!("{}", std::path::Path::new(&dir).display()),
            )
        }
        None => {
            let shape = vec![1280, 7, 7];
            let dim: usize = shape.iter().product();
            let rows = 2000;
            let mut rng = Rng::new(1);
            let features: Vec<f32> = (0..rows * dim).map(|_| rng.uniform(0.0, 2.0)).collect();
            let labels: Vec<u32> = (0..rows).map(|i| (i % 2) as u32).collect();
            (
                FeatureRows::new(features, labels, dim).expect("sizes agree"),
                shape,
                2,
                "random [1280, 7, 7] maps".into(),
            )
        }
    };
    // 2000 rows with a 20% validation split: 1600 trained on, 400 evaluated per epoch, as the tutorial.
    let config = TrainConfig {
        val_split: 0.2,
        ..TrainConfig::default()
    };
    let rows = data.len();
    let views_wanted: usize = std::env::var("LOOKOUT_BENCH_VIEWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let views: Vec<FeatureRows> = match std::env::var_os("LOOKOUT_BENCH_FEATURES") {
        Some(dir) if views_wanted > 0 => FeatureSet::open(&dir)
            .and_then(|f| f.load_split(Split::Train).and_then(|s| f.load_views(&s)))
            .map(|v| v.into_iter().take(views_wanted).collect())
            .unwrap_or_default(),
        _ => (0..views_wanted)
            .map(|k| {
                let mut rng = Rng::new(100 + k as u64);
                let features = data
                    .features
                    .iter()
                    .map(|v| v + rng.uniform(-0.1, 0.1))
                    .collect();
                FeatureRows::new(features, data.labels.clone(), data.dim).expect("sizes agree")
            })
            .collect(),
    };
    let view_count = views.len();
    let started = Instant::now();
    let mut report = |event: Progress<'_>| {
        if let Progress::EpochEnd(r) = event {
            println!(
                "epoch {}: {:.2} s (train_loss {:.4}, valid_accuracy {:.4})",
                r.epoch,
                r.seconds,
                r.train_loss,
                r.valid_accuracy.unwrap_or(f32::NAN)
            );
        }
    };
    let trained = train(data, views, &shape, classes, &config, &mut report).expect("training runs");
    println!(
        "lookout (candle CPU, {} rayon threads): {} epochs of the tutorial head on {} of {rows} rows ({source}, {view_count} augmented views each) in {:.2} s",
        rayon::current_num_threads(),
        trained.history.epochs.len(),
        trained.train_examples,
        started.elapsed().as_secs_f64()
    );
}
