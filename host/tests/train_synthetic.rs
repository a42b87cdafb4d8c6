//! Training on synthetic Gaussian blobs, where the right answer is known: the trainer must find it, be
//! reproducible for a seed, and save a run that loads back and predicts the same.

use lookout_host::features::{BackboneRecord, FeatureRecipe, FeatureRows, Pooling};
use lookout_host::head::net::HeadKind;
use lookout_host::head::run::{FeaturesRecord, Run};
use lookout_host::head::train::{train, TrainConfig, Trained};
use lookout_host::report::evaluate::compute_metrics;
use lookout_host::rng::Rng;
use lookout_shared::bundle::{BackboneInfo, OutputKind};

/// `per_class` points per class around class centres ±`separation` on a few axes, unit noise, `dim` wide.
fn blobs(classes: usize, per_class: usize, dim: usize, separation: f32, seed: u64) -> FeatureRows {
    blobs_in_blocks(classes, per_class, dim, separation, seed, 1)
}

/// As [`blobs`], class `c`'s centre on the dimensions d with (d / block) % classes == c, so that a [C, H, W]
/// layout with H·W = block puts each class on whole channels.
fn blobs_in_blocks(
    classes: usize,
    per_class: usize,
    dim: usize,
    separation: f32,
    seed: u64,
    block: usize,
) -> FeatureRows {
    let mut rng = Rng::new(seed);
    let mut gauss = move || {
        // Box–Muller
        let u1 = rng.next_f32().max(1e-7);
        let u2 = rng.next_f32();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    };
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..classes * per_class {
        let class = i % classes;
        for d in 0..dim {
            let centre = if (d / block) % classes == class {
                separation
            } else {
                0.0
            };
            features.push(centre + gauss());
        }
        labels.push(class as u32);
    }
    FeatureRows::new(features, labels, dim).unwrap()
}

fn accuracy(trained: &Trained, data: &FeatureRows, classes: usize) -> f64 {
    let output = trained.output;
    let logits = trained.head.forward(&data.features);
    let k = trained.head.outputs();
    let preds: Vec<usize> = logits
        .chunks(k)
        .map(|l| lookout_host::head::net::predict_from_logits(output, 0.5, l))
        .collect();
    let labels: Vec<usize> = data.labels.iter().map(|&l| l as usize).collect();
    let names: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    compute_metrics(&names, &labels, &preds).unwrap().accuracy
}

#[test]
fn tutorial_head_separates_two_blobs_and_keeps_the_best_epoch() {
    // Feature maps [4, 2, 2] like a tiny backbone output.
    let train_set = blobs(2, 200, 16, 1.0, 1);
    let test_set = blobs(2, 100, 16, 1.0, 2);
    let config = TrainConfig {
        epochs: 8,
        batch: 32,
        ..TrainConfig::default()
    };
    let trained = train(train_set, Vec::new(), &[4, 2, 2], 2, &config, &mut |_| {}).unwrap();
    assert_eq!(trained.output, OutputKind::Sigmoid);
    assert_eq!(trained.head.layers.len(), 2);
    assert_eq!(
        (
            trained.head.layers[0].outputs,
            trained.head.layers[0].inputs
        ),
        (256, 16)
    );
    assert_eq!(trained.valid_examples, 40);
    let best = trained.history.best_epoch;
    let best_loss = trained.history.epochs[best - 1].valid_loss.unwrap();
    assert!(trained
        .history
        .epochs
        .iter()
        .all(|r| r.valid_loss.unwrap() >= best_loss));
    // Bayes accuracy for 8 informative dims at separation 1 each: Φ(√8 / 2) ≈ 0.92. Measured 0.915.
    let acc = accuracy(&trained, &test_set, 2);
    assert!(acc > 0.88, "test accuracy {acc}");
    assert!(
        trained.history.epochs.last().unwrap().train_loss < trained.history.epochs[0].train_loss
    );
}

#[test]
fn three_classes_with_every_head_kind_and_pooling() {
    let train_set = blobs(3, 150, 12, 3.0, 3);
    let test_set = blobs(3, 60, 12, 3.0, 4);
    for head in [HeadKind::Tutorial, HeadKind::Linear, HeadKind::Mlp] {
        let config = TrainConfig {
            head,
            hidden: 32,
            epochs: 10,
            batch: 16,
            ..TrainConfig::default()
        };
        let trained = train(
            train_set.clone(),
            Vec::new(),
            &[12],
            3,
            &config,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(trained.output, OutputKind::Softmax);
        assert_eq!(trained.head.outputs(), 3);
        let acc = accuracy(&trained, &test_set, 3);
        // Separation 3 on 4 dims per class: nearly separable; measured ≥ 0.99 for all three heads.
        assert!(acc > 0.95, "{head:?}: test accuracy {acc}");
    }
    // Average pooling over [C=3, 2, 2]: each channel's mean carries the class.
    let pooled_train = blobs_in_blocks(3, 150, 12, 3.0, 5, 4);
    let config = TrainConfig {
        pool: Pooling::Avg,
        hidden: 16,
        epochs: 10,
        batch: 16,
        ..TrainConfig::default()
    };
    let trained = train(
        pooled_train,
        Vec::new(),
        &[3, 2, 2],
        3,
        &config,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(trained.head.layers[0].inputs, 3);
    let acc = accuracy(&trained, &blobs_in_blocks(3, 60, 12, 3.0, 6, 4), 3);
    assert!(acc > 0.9, "pooled test accuracy {acc}");
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let data = blobs(2, 64, 8, 1.0, 7);
    let config = TrainConfig {
        epochs: 2,
        batch: 16,
        hidden: 8,
        ..TrainConfig::default()
    };
    let a = train(data.clone(), Vec::new(), &[8], 2, &config, &mut |_| {}).unwrap();
    let b = train(data.clone(), Vec::new(), &[8], 2, &config, &mut |_| {}).unwrap();
    let c = train(
        data,
        Vec::new(),
        &[8],
        2,
        &TrainConfig { seed: 43, ..config },
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(a.head, b.head);
    assert_eq!(
        a.history
            .epochs
            .iter()
            .map(|r| r.train_loss)
            .collect::<Vec<_>>(),
        b.history
            .epochs
            .iter()
            .map(|r| r.train_loss)
            .collect::<Vec<_>>()
    );
    assert_ne!(a.head, c.head);
}

#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement() {
    // Pure noise: validation loss stops improving quickly, and the big learning rate makes it worse.
    let data = blobs(2, 100, 8, 0.0, 8);
    let config = TrainConfig {
        epochs: 50,
        batch: 8,
        lr: 0.05,
        patience: Some(2),
        hidden: 64,
        ..TrainConfig::default()
    };
    let trained = train(data, Vec::new(), &[8], 2, &config, &mut |_| {}).unwrap();
    let h = &trained.history;
    assert!(h.stopped_early, "ran all {} epochs", h.epochs.len());
    assert_eq!(h.epochs.len(), h.best_epoch + 2);
}

#[test]
fn bad_settings_and_data_are_clear_errors() {
    let data = blobs(2, 10, 4, 1.0, 9);
    let bad = |c: TrainConfig| {
        train(data.clone(), Vec::new(), &[4], 2, &c, &mut |_| {})
            .unwrap_err()
            .to_string()
    };
    assert!(bad(TrainConfig {
        epochs: 0,
        ..TrainConfig::default()
    })
    .contains("--epochs"));
    assert!(bad(TrainConfig {
        dropout: 1.0,
        ..TrainConfig::default()
    })
    .contains("--dropout"));
    assert!(bad(TrainConfig {
        val_split: 1.0,
        ..TrainConfig::default()
    })
    .contains("--val-split"));
    let flat = FeatureRows::new(vec![0.0; 8], vec![0, 1], 4).unwrap();
    let err = train(
        flat,
        Vec::new(),
        &[2, 2],
        2,
        &TrainConfig {
            pool: Pooling::Avg,
            ..TrainConfig::default()
        },
        &mut |_| {},
    );
    assert!(err.unwrap_err().to_string().contains("[C, H, W]"));
    let one_class = FeatureRows::new(vec![0.0; 8], vec![0, 0], 4).unwrap();
    let err = train(
        one_class,
        Vec::new(),
        &[4],
        2,
        &TrainConfig::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no training examples"), "{err}");
}

#[test]
fn a_saved_run_loads_back_and_predicts_identically() {
    let data = blobs(2, 50, 12, 2.0, 10);
    let config = TrainConfig {
        epochs: 2,
        hidden: 8,
        ..TrainConfig::default()
    };
    let trained = train(
        data.clone(),
        Vec::new(),
        &[3, 2, 2],
        2,
        &config,
        &mut |_| {},
    )
    .unwrap();
    let features = FeaturesRecord {
        dir: "/nowhere".into(),
        recipe: FeatureRecipe {
            feature_shape: vec![3, 2, 2],
            pooling: Pooling::None,
            backbone: BackboneRecord {
                identity: BackboneInfo {
                    name: "b".into(),
                    sha256: "00".into(),
                    cut: None,
                },
                path: "b.onnx".into(),
            },
            preprocess: lookout_shared::PreprocessSpec::tf_inception(),
        },
        augment: None,
    };
    let run = trained
        .clone()
        .into_run(&config, vec!["cat".into(), "dog".into()], features);
    // What the record says about the head, as export will read it back.
    assert_eq!(run.config.head.input_shape, vec![3, 2, 2]);
    assert_eq!(run.config.head.input_dim, 12);
    assert_eq!(run.config.head.outputs, 1);
    assert_eq!(run.config.head.layers, vec!["fc1", "fc2"]);
    assert_eq!(run.config.training.epochs_run, 2);
    assert_eq!(run.config.training.optimizer, "adam(amsgrad)");
    let dir = tempfile::tempdir().unwrap();
    run.save(dir.path()).unwrap();
    let loaded = Run::load(dir.path()).unwrap();
    assert_eq!(loaded, run);
    assert_eq!(
        loaded.head.forward(&data.features),
        trained.head.forward(&data.features)
    );
    // A run.json of format version 1 (the recipe's fields in `features` itself) still loads, as the same run.
    let run_json = dir.path().join("run.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run_json).unwrap()).unwrap();
    assert_eq!(json["version"], 2);
    let features = json["features"].as_object_mut().unwrap();
    let recipe = features.remove("recipe").unwrap();
    for (key, value) in recipe.as_object().unwrap() {
        features.insert(key.clone(), value.clone());
    }
    json["version"] = 1.into();
    std::fs::write(&run_json, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    assert_eq!(Run::load(dir.path()).unwrap(), run);
    json["version"] = 3.into();
    std::fs::write(&run_json, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let newer = Run::load(dir.path()).unwrap_err().to_string();
    assert!(newer.contains("version 3 is not supported"), "{newer}");
    // PyTorch names and shapes in the safetensors file.
    let bytes = std::fs::read(dir.path().join("head.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("fc1.weight").unwrap().shape(), &[8, 12]);
    assert_eq!(st.tensor("fc2.weight").unwrap().shape(), &[1, 8]);
    assert_eq!(st.tensor("fc2.bias").unwrap().shape(), &[1]);
    // A directory without a run is a clear error.
    let empty = tempfile::tempdir().unwrap();
    let err = Run::load(empty.path()).unwrap_err().to_string();
    assert!(err.contains("not a training run"), "{err}");
}

#[test]
fn augmented_views_are_drawn_each_epoch_and_must_match_their_rows() {
    let data = blobs(2, 64, 8, 1.0, 7);
    let config = TrainConfig {
        epochs: 3,
        batch: 16,
        hidden: 8,
        ..TrainConfig::default()
    };
    let plain = train(data.clone(), Vec::new(), &[8], 2, &config, &mut |_| {}).unwrap();
    // Views identical to the rows change nothing: the view draw has its own random stream.
    let same = train(
        data.clone(),
        vec![data.clone(), data.clone()],
        &[8],
        2,
        &config,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(plain.head, same.head);
    // Views that differ are trained on.
    let other = blobs(2, 64, 8, 1.0, 8);
    let other = FeatureRows::new(other.features, data.labels.clone(), 8).unwrap();
    let augmented = train(
        data.clone(),
        vec![other.clone()],
        &[8],
        2,
        &config,
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(plain.head, augmented.head);
    assert_eq!(augmented.train_examples, plain.train_examples);
    // A view of other rows is refused, with why.
    let short = FeatureRows::new(vec![0.0; 16], vec![0, 1], 8).unwrap();
    let err = train(data, vec![short], &[8], 2, &config, &mut |_| {}).unwrap_err();
    assert!(
        err.to_string().contains("augmented rows do not match"),
        "{err}"
    );
}
