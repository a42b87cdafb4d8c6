//! Feature extraction against real backbones, real photos and the onnxruntime reference outputs.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use lookout_host::features::cache::read_split_list;
use lookout_host::features::device::DeviceChoice;
use lookout_host::features::extract::{extract_folder, ExtractJob};
use lookout_host::features::extractor::{ExtractOptions, FeatureExtractor};
use lookout_host::features::{FeatureSet, Pooling, Split};
use lookout_models::backbone::Backbone;
use lookout_shared::preprocess::{PreprocessSpec, Resize};

fn cpu_options() -> ExtractOptions {
    ExtractOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

/// The testdata PNGs are already 224×224: only `x = p/127.5 - 1` (an exact resize to the same size).
fn identity_resize_spec() -> PreprocessSpec {
    PreprocessSpec {
        name: "testdata".into(),
        resize: Resize::Exact {
            width: 224,
            height: 224,
        },
        crop: None,
        ..PreprocessSpec::tf_inception()
    }
}

#[test]
fn backbone_features_match_onnxruntime() {
    let shared = lookout_testdata::require_shared!();
    let models = shared.join("models");
    for (file, reference) in [
        (
            "efficientnet_lite0_features_dynbatch.onnx",
            "efficientnet_lite0_features_b1",
        ),
        (
            "mobilenet_v3_small_tfslim_features_dynbatch.onnx",
            "mobilenet_v3_small_tfslim_features_b1",
        ),
    ] {
        let backbone =
            Backbone::from_file(&models.join(file), Some(identity_resize_spec())).unwrap();
        let extractor = FeatureExtractor::new(&backbone, &cpu_options()).unwrap();
        for photo in ["chelsea", "coffee"] {
            let image = lookout_shared::image_io::decode_file(
                &models.join(format!("testdata/{photo}_224.png")),
            )
            .unwrap();
            // The preprocessing must be exactly p/127.5 - 1 here, checked against a hand computation.
            let mut worker_input =
                lookout_shared::preprocess::preprocess(&identity_resize_spec(), &image).unwrap();
            let hand: Vec<f32> = (0..3)
                .flat_map(|c| image.pixels().map(move |p| p.0[c] as f32 / 127.5 - 1.0))
                .collect();
            let (pre_max, _) = lookout_testdata::abs_diff_stats(&worker_input, &hand);
            assert!(
                pre_max < 1e-6,
                "{photo}: preprocessing differs by {pre_max}"
            );
            worker_input.clear();

            let got = extractor.extract_image(&image).unwrap();
            let expected = lookout_testdata::read_f32_file(
                &models.join(format!("testdata/{reference}__{photo}.f32")),
            );
            let (max, mean) = lookout_testdata::abs_diff_stats(&got, &expected);
            eprintln!("{file} / {photo}: max abs diff {max:.3e}, mean {mean:.3e}");
            // Measured (2026-11-30): Lite0 ≤ 3.1e-5, MobileNetV3-Small ≤ 5.7e-5 (tract vs onnxruntime: summation order).
            assert!(max < 1e-3, "{file} / {photo}: max abs diff {max}");
        }
    }
}

#[test]
fn pooled_features_are_the_spatial_mean() {
    let shared = lookout_testdata::require_shared!();
    let models = shared.join("models");
    let backbone = Backbone::from_file(
        &models.join("mobilenet_v3_small_tfslim_features_dynbatch.onnx"),
        Some(identity_resize_spec()),
    )
    .unwrap();
    let full = FeatureExtractor::new(&backbone, &cpu_options()).unwrap();
    let pooled = FeatureExtractor::new(
        &backbone,
        &ExtractOptions {
            pool: Pooling::Avg,
            ..cpu_options()
        },
    )
    .unwrap();
    assert_eq!(full.feature_shape(), &[576, 7, 7]);
    assert_eq!(pooled.feature_shape(), &[576]);
    let image =
        lookout_shared::image_io::decode_file(&models.join("testdata/coffee_224.png")).unwrap();
    let map = full.extract_image(&image).unwrap();
    let means: Vec<f32> = map
        .chunks_exact(49)
        .map(|c| c.iter().sum::<f32>() / 49.0)
        .collect();
    let got = pooled.extract_image(&image).unwrap();
    let (max, _) = lookout_testdata::abs_diff_stats(&got, &means);
    assert!(max < 1e-5, "pooled features differ from the mean by {max}");
}

#[test]
fn unknown_cut_lists_nearby_nodes() {
    let shared = lookout_testdata::require_shared!();
    let backbone = Backbone::from_file(
        &shared.join("models/mobilenet_v3_small_tfslim_features_dynbatch.onnx"),
        Some(PreprocessSpec::tf_inception()),
    )
    .unwrap();
    let err = FeatureExtractor::new(
        &backbone,
        &ExtractOptions {
            cut: Some("no_such_node".into()),
            ..cpu_options()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no node named \"no_such_node\""), "{err}");
    assert!(err.contains("similar name: "), "{err}");
}

#[test]
fn lite0_classifier_top1_on_imagenet_sample() {
    let shared = lookout_testdata::require_shared!();
    let backbone = Backbone::from_file(
        &shared.join("models/efficientnet_lite0_classifier_dynbatch.onnx"),
        Some(PreprocessSpec::tf_inception()),
    )
    .unwrap();
    let extractor = FeatureExtractor::new(&backbone, &cpu_options()).unwrap();
    let dir = shared.join("data/imagenet-sample");
    let labels = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
    let mut paths = Vec::new();
    let mut truth = Vec::new();
    for line in labels.lines().skip(1) {
        let mut cols = line.split(',');
        paths.push(dir.join(cols.next().unwrap()));
        truth.push(cols.next().unwrap().parse::<usize>().unwrap());
    }
    assert_eq!(paths.len(), 250);
    let logits = extractor
        .extract_files(&paths, &ProgressBar::hidden())
        .unwrap();
    let correct = logits
        .iter()
        .zip(&truth)
        .filter(|(l, &t)| {
            let l = l.as_ref().unwrap();
            let top = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
            top == t
        })
        .count();
    let top1 = correct as f64 / paths.len() as f64;
    eprintln!("Lite0 classifier top-1 on the ImageNet sample: {top1:.3} ({correct}/250)");
    // onnxruntime + torchvision bilinear: 89.6 %. Measured here (2026-11-30): 0.892 (223/250).
    assert!(top1 >= 0.85, "top-1 {top1}");
}

/// Builds `root/{Cat,Dog}` from 20 photos each, plus every corrupt sample, the WebP-named-.jpg and a text file.
fn small_image_folder(shared: &Path, root: &Path) {
    let data = shared.join("data");
    for (class, prefix) in [("Cat", "cat"), ("Dog", "dog")] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 1..=20 {
            let name = format!("{prefix}.{i}.jpg");
            std::os::unix::fs::symlink(
                data.join(format!("cats-vs-dogs/{class}/{name}")),
                dir.join(&name),
            )
            .unwrap();
        }
    }
    for entry in std::fs::read_dir(data.join("corrupt-samples")).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::symlink(&path, root.join("Cat").join(path.file_name().unwrap()))
            .unwrap();
    }
    std::os::unix::fs::symlink(
        data.join("format-mismatch-samples/webp_data_with_jpg_ext.jpg"),
        root.join("Dog/webp_data_with_jpg_ext.jpg"),
    )
    .unwrap();
    std::fs::write(root.join("Dog/README.txt"), "not a photo\n").unwrap();
}

#[test]
fn extract_folder_writes_resumes_and_reuses_the_cache() {
    let shared = lookout_testdata::require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("features");
    small_image_folder(&shared, &data);
    let backbone = Backbone::from_file(
        &shared.join("models/mobilenet_v3_small_tfslim_features_dynbatch.onnx"),
        Some(PreprocessSpec::tf_inception()),
    )
    .unwrap();
    let job = ExtractJob {
        data_dir: data.clone(),
        background_dir: None,
        out_dir: out.clone(),
        test_fraction: 0.2,
        seed: 42,
        force: false,
        shard_size: 8,
        options: ExtractOptions {
            pool: Pooling::Avg,
            ..cpu_options()
        },
        augment: None,
    };
    let hidden = ProgressBar::hidden();
    let first = extract_folder(&job, &backbone, &hidden).unwrap();
    assert!(!first.reused);
    assert_eq!(first.ignored_non_images, 1, "README.txt");
    // Cat: 20 photos + 2 truncated JPEGs (sniffed as JPEG, fail to decode); Dog: 20 + the WebP.
    let mut skipped: Vec<String> = first
        .skipped
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        [
            "not_an_image.jpg",
            "truncated_before_sof.jpg",
            "truncated_half.jpg",
            "zero_bytes.jpg"
        ]
    );
    assert!(first.skipped.iter().all(|s| !s.reason.is_empty()));
    let skipped_txt = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert_eq!(skipped_txt.lines().count(), 4, "{skipped_txt}");
    assert!(
        skipped_txt.contains("Cat/truncated_half.jpg\t"),
        "{skipped_txt}"
    );

    // Splits: stratified, disjoint, round(n · 0.2) of each class in test.
    let train = read_split_list(&Split::Train.list_path(&out)).unwrap();
    let test = read_split_list(&Split::Test.list_path(&out)).unwrap();
    for (class, n) in [(0u32, 22usize), (1, 21)] {
        let n_test = test.iter().filter(|e| e.1 == class).count();
        let n_train = train.iter().filter(|e| e.1 == class).count();
        assert_eq!(n_test + n_train, n, "class {class}");
        assert_eq!(n_test, (n as f64 * 0.2).round() as usize, "class {class}");
    }
    assert!(train.iter().all(|e| !test.contains(e)));
    assert!(train
        .iter()
        .chain(&test)
        .all(|(p, _)| data.join(p).is_file()));

    // Manifest and shards.
    let set = FeatureSet::open(&out).unwrap();
    let m = &set.manifest;
    assert_eq!(m.format, "lookout-features/2");
    assert!(m.complete && m.recipe.pooling == Pooling::Avg);
    assert_eq!(m.classes, ["Cat", "Dog"]);
    assert_eq!(m.recipe.feature_shape, [576]);
    assert_eq!(m.split.seed, 42);
    assert_eq!(
        m.shards.len(),
        train.len().div_ceil(8) + test.len().div_ceil(8)
    );
    for s in &m.shards {
        assert!(out.join(&s.file).is_file(), "{}", s.file);
    }
    let train_set = set.load_split(Split::Train).unwrap();
    let test_set = set.load_split(Split::Test).unwrap();
    assert_eq!(train_set.rows.dim, 576);
    assert_eq!(
        train_set.rows.len() + test_set.rows.len(),
        43 - 2,
        "41 images decode"
    );
    assert_eq!(train_set.rows.len(), first.train_images);
    for (i, path) in test_set.paths.iter().enumerate() {
        let class = if path.starts_with(data.canonicalize().unwrap().join("Cat")) {
            0
        } else {
            1
        };
        assert_eq!(test_set.rows.labels[i], class, "{}", path.display());
    }
    // A row equals what the extractor gives for that file directly (the predict code path).
    let extractor = FeatureExtractor::new(&backbone, &job.options).unwrap();
    let direct = extractor
        .worker()
        .unwrap()
        .extract_file(&test_set.paths[0])
        .unwrap()
        .unwrap();
    assert_eq!(direct, test_set.rows.row(0));

    // Second run: reused.
    let second = extract_folder(&job, &backbone, &hidden).unwrap();
    assert!(second.reused);

    // A cache written by format 1 (the recipe's fields at the manifest's top level) reads as it was, and is
    // reused: format 2 changed the manifest's layout, not the features.
    let manifest_path = out.join("manifest.json");
    let today = std::fs::read_to_string(&manifest_path).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&today).unwrap();
    let object = json.as_object_mut().unwrap();
    let recipe = object.remove("recipe").unwrap();
    for (key, value) in recipe.as_object().unwrap() {
        object.insert(key.clone(), value.clone());
    }
    object.insert("format".into(), "lookout-features/1".into());
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let old = FeatureSet::open(&out).unwrap();
    assert_eq!(old.manifest, set.manifest);
    let third = extract_folder(&job, &backbone, &hidden).unwrap();
    assert!(
        third.reused,
        "a format-1 cache is reused, not extracted again"
    );
    std::fs::write(&manifest_path, today).unwrap();

    // Interrupted run (no manifest, one shard missing): the other shards are kept.
    std::fs::remove_file(out.join("manifest.json")).unwrap();
    std::fs::remove_file(out.join(&m.shards[1].file)).unwrap();
    assert!(FeatureSet::open(&out).is_err());
    let resumed = extract_folder(&job, &backbone, &hidden).unwrap();
    assert!(!resumed.reused);
    assert_eq!(resumed.resumed_shards, m.shards.len() - 1);
    assert_eq!(resumed.computed_shards, 1);
    let again = FeatureSet::open(&out).unwrap();
    assert_eq!(again.load_split(Split::Train).unwrap(), train_set);

    // --force recomputes everything.
    let forced = extract_folder(
        &ExtractJob {
            force: true,
            ..job.clone()
        },
        &backbone,
        &hidden,
    )
    .unwrap();
    assert_eq!(forced.computed_shards, m.shards.len());
    assert_eq!(forced.resumed_shards, 0);
}

#[test]
fn augmented_views_cover_every_shard_skip_the_bad_files_and_align_with_the_clean_rows() {
    let shared = lookout_testdata::require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("features");
    small_image_folder(&shared, &data);
    let backbone = Backbone::from_file(
        &shared.join("models/mobilenet_v3_small_tfslim_features_dynbatch.onnx"),
        Some(PreprocessSpec::tf_inception()),
    )
    .unwrap();
    let job = ExtractJob {
        data_dir: data.clone(),
        background_dir: None,
        out_dir: out.clone(),
        test_fraction: 0.2,
        seed: 42,
        force: false,
        shard_size: 8,
        options: ExtractOptions {
            pool: Pooling::Avg,
            ..cpu_options()
        },
        augment: Some(lookout_host::features::extract::AugmentJob {
            views: 2,
            policy: lookout_host::transform::AugmentPolicy::default(),
        }),
    };
    let report = extract_folder(&job, &backbone, &ProgressBar::hidden()).unwrap();
    assert_eq!(report.views, 2);
    let set = FeatureSet::open(&out).unwrap();
    let record = set.manifest.views.clone().expect("views in the manifest");
    let train_shards: Vec<_> = set
        .manifest
        .shards
        .iter()
        .filter(|s| s.split == Split::Train)
        .collect();
    assert!(train_shards.len() >= 3, "several shards: {train_shards:?}");
    assert_eq!(record.shards.len(), 2 * train_shards.len());
    // The bad files of the training split gave no views, as they gave no clean rows.
    for shard in &train_shards {
        for view in 1..=2 {
            let v = record
                .shards
                .iter()
                .find(|v| v.first == shard.first && v.view == view)
                .expect("a view shard per range");
            assert_eq!((v.count, v.end), (shard.count, shard.end));
        }
    }
    assert_eq!(
        report.processed_views,
        2 * set
            .manifest
            .shards
            .iter()
            .filter(|s| s.split == Split::Train)
            .map(|s| s.end - s.first)
            .sum::<usize>()
    );
    let split = set.load_split(Split::Train).unwrap();
    let views = set.load_views(&split).unwrap();
    let clean = split.rows;
    assert_eq!(views.len(), 2);
    for view in &views {
        assert_eq!((view.len(), &view.labels), (clean.len(), &clean.labels));
        // Each view is another picture of the same photo: close to it, not equal.
        let differs = (0..clean.len())
            .filter(|&i| view.row(i) != clean.row(i))
            .count();
        assert_eq!(differs, clean.len());
    }
    assert_ne!(views[0], views[1]);
    // The test split is never augmented.
    assert!(record
        .shards
        .iter()
        .all(|v| v.file.starts_with("train-aug-")));
}

#[test]
fn reader_rejects_a_foreign_format_tag() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("manifest.json"),
        r#"{"format": "something-else/9"}"#,
    )
    .unwrap();
    let err = FeatureSet::open(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("something-else/9"), "{err}");
    let missing = FeatureSet::open(PathBuf::from("/nonexistent/features"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("run `lookout extract`"), "{missing}");
}
