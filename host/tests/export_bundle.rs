//! `lookout export` on a real, small cats-vs-dogs run with EfficientNet-Lite0: the f32 bundle must agree with
//! the host's float pipeline on every test image, f16 and f32-q4head must stay close, int8 must refuse with an
//! explanation, and broken bundles must give one clear line.

mod export_support;

use std::path::Path;

use export_support::{build_run, RunSpec};
use lookout_host::bundle::{export, ExportError, ExportOptions, ExportPrecision};
use lookout_host::head::net::HeadKind;
use lookout_host::report::evaluate_bundle::{evaluate_bundle, predict_bundle};
use lookout_shared::bundle::Precision;
use lookout_shared::{Bundle, PreprocessSpec};

const TRAIN_PER_CLASS: usize = 30;
const TEST_PER_CLASS: usize = 20;
/// f16 runs emulated on x86 (measured ≈ 17 s per image against 0.15 s for f32), so its export is measured on a few test
/// images only.
const F16_TEST_IMAGES: usize = 3;

fn lite0_run(shared: &Path, dir: &Path) -> std::path::PathBuf {
    build_run(
        shared,
        dir,
        &RunSpec {
            backbone: &shared.join("models/efficientnet_lite0_features_dynbatch.onnx"),
            preprocess: PreprocessSpec::tf_inception(),
            train_per_class: TRAIN_PER_CLASS,
            test_per_class: TEST_PER_CLASS,
            pooled: true,
            head: HeadKind::Tutorial,
            hidden: 256,
            epochs: 5,
        },
    )
}

fn options(precision: ExportPrecision) -> ExportOptions {
    ExportOptions {
        precision,
        ..ExportOptions::default()
    }
}

#[test]
fn exports_lite0_at_every_precision() {
    let shared = lookout_testdata::require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = lite0_run(&shared, tmp.path());

    // f32: the bundle, run by the edge runtime on the decoded files, against the head on the cached features.
    let f32_path = tmp.path().join("f32.lookout");
    let onnx_path = tmp.path().join("f32.onnx");
    let f32 = export(
        &run_dir,
        &f32_path,
        &ExportOptions {
            onnx: Some(onnx_path.clone()),
            ..options(ExportPrecision::F32)
        },
    )
    .unwrap();
    eprintln!("f32 export: {f32:?}");
    assert_eq!(f32.test_images, 2 * TEST_PER_CLASS);
    assert_eq!(f32.agreement, 1.0, "{f32:?}");
    // The same ops on the same input differ only by summation order: measured 8.9e-8 and 1.2e-7.
    assert!(f32.compose_check_diff <= 1e-6, "{f32:?}");
    assert!(f32.max_probability_diff <= 1e-6, "{f32:?}");
    assert_eq!(f32.accuracy, f32.float_accuracy);
    // Transfer learning on 60 photos already separates cats from dogs: measured 40/40 (a margin for other seeds).
    assert!(f32.float_accuracy >= 0.9, "{f32:?}");

    let bundle = Bundle::read_file(&f32_path).unwrap();
    let header = &bundle.header;
    assert_eq!(header.precision, Precision::F32);
    assert_eq!(header.labels, ["Cat", "Dog"]);
    assert_eq!(header.input_shape, [1, 3, 224, 224]);
    // The model is a gzip stream (magic 1f 8b) of an NNEF tar, smaller than the tar.
    assert_eq!(
        header.model_format,
        lookout_shared::bundle::ModelFormat::NnefTarGz
    );
    assert_eq!(bundle.model[..2], [0x1f, 0x8b]);
    let mut tar = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(bundle.model.as_slice()),
        &mut tar,
    )
    .unwrap();
    assert_eq!(&tar[257..262], b"ustar", "a tar inside");
    assert!(bundle.model.len() < tar.len());
    let metrics = header.metrics.as_ref().unwrap();
    assert_eq!(
        metrics.file_size,
        std::fs::metadata(&f32_path).unwrap().len()
    );
    assert_eq!(metrics.test_images, 40);
    assert_eq!(header.head.parameters, 1280 * 256 + 256 + 256 + 1);

    // evaluate --model gives the same accuracy as measured at export.
    let metrics = evaluate_bundle(&f32_path, &run_dir, true).unwrap();
    assert!(
        (metrics.accuracy - f64::from(f32.accuracy)).abs() < 1e-6,
        "{metrics:?}"
    );
    assert_eq!(metrics.confusion.iter().flatten().sum::<usize>(), 40);

    onnx_copy_matches_the_bundle(
        &onnx_path,
        &f32_path,
        &export_support::photos(&shared, "Dog", 950, 2),
    );

    // f16: half the model, probabilities within 1e-2 (platform notes: logits move ≤ 2e-4), same accuracy within 0.5 point on
    // these few images (one image is many points, so: the same).
    let f16_path = tmp.path().join("f16.lookout");
    let f16 = export(
        &run_dir,
        &f16_path,
        &ExportOptions {
            max_test_images: Some(F16_TEST_IMAGES),
            ..options(ExportPrecision::F16)
        },
    )
    .unwrap();
    eprintln!("f16 export: {f16:?}");
    assert!(
        f16.model_size * 10 < f32.model_size * 6,
        "{f16:?} vs {f32:?}"
    );
    // Measured 2.2e-3 (f16 storage and arithmetic, emulated on x86).
    assert!(f16.max_probability_diff < 1e-2, "{f16:?}");
    assert!(
        (f16.accuracy - f16.float_accuracy).abs() <= 0.005,
        "{f16:?}"
    );

    // f32-q4head: the head's 1280×256 matrix in 4-bit blocks.
    let q4_path = tmp.path().join("q4.lookout");
    let q4 = export(&run_dir, &q4_path, &options(ExportPrecision::F32Q4Head)).unwrap();
    eprintln!("f32-q4head export: {q4:?}");
    assert!(q4.model_size < f32.model_size, "{q4:?} vs {f32:?}");
    // Measured 5.6e-3 and 40/40 same labels.
    assert!(q4.max_probability_diff < 2e-2, "{q4:?}");
    assert!(q4.agreement >= 0.95, "{q4:?}");
    assert_eq!(
        Bundle::read_file(&q4_path).unwrap().header.precision,
        Precision::F32WeightsQ4
    );

    whole_model_q4(&run_dir, tmp.path(), &f32, q4.model_size);

    // int8: a clear refusal, nothing written.
    let int8_path = tmp.path().join("int8.lookout");
    let err = export(&run_dir, &int8_path, &options(ExportPrecision::Int8)).unwrap_err();
    assert!(matches!(err, ExportError::Precision(_)), "{err}");
    assert!(err.to_string().contains("int8 is not available"), "{err}");
    assert!(!int8_path.exists());

    // An impossible --max-drop refuses (the f16 export cannot beat float by a point), and --force writes.
    let strict = ExportOptions {
        max_drop_points: -1.0,
        max_test_images: Some(4),
        ..options(ExportPrecision::F32)
    };
    let refused_path = tmp.path().join("refused.lookout");
    let err = export(&run_dir, &refused_path, &strict).unwrap_err();
    assert!(matches!(err, ExportError::AccuracyDrop { .. }), "{err}");
    assert!(!refused_path.exists());
    let forced = export(
        &run_dir,
        &refused_path,
        &ExportOptions {
            force: true,
            ..strict
        },
    )
    .unwrap();
    assert!(forced.forced && refused_path.exists());

    // A gate that would outrun its budget (here a budget of nothing, as f16 on this CPU would outrun 2 minutes)
    // measures a sample, says how many of how many, what the whole would take, and the interval.
    let sampled = export(
        &run_dir,
        &tmp.path().join("sampled.lookout"),
        &ExportOptions {
            gate_budget: std::time::Duration::ZERO,
            ..options(ExportPrecision::F32)
        },
    )
    .unwrap();
    let sample = sampled.gate_sample.clone().expect("a sampled gate");
    assert_eq!(
        sampled.test_images,
        lookout_host::bundle::measure::MIN_GATE_SAMPLE
    );
    assert!(sample.of > sampled.test_images, "{sample:?}");
    assert!(sample.whole_split_estimate_s > 0.0);
    assert!(
        sample.accuracy_low <= sampled.accuracy && sampled.accuracy <= sample.accuracy_high,
        "{sample:?} vs {}",
        sampled.accuracy
    );
    assert_eq!(
        lookout_host::bundle::measure::wilson_interval(0, 0),
        (0.0, 1.0)
    );
    let (low, high) = lookout_host::bundle::measure::wilson_interval(95, 100);
    assert!(
        (low - 0.888).abs() < 1e-3 && (high - 0.978).abs() < 1e-3,
        "{low} {high}"
    );

    // predict --model on photos never seen: labels plus a per-file error for a corrupt one.
    let cat = export_support::photos(&shared, "Cat", 900, 1).remove(0);
    let corrupt = shared.join("data/corrupt-samples/truncated_half.jpg");
    let labelled = predict_bundle(
        &f32_path,
        &[cat, corrupt.clone()],
        lookout_shared::Region::FULL,
        false,
    )
    .unwrap();
    assert_eq!(labelled.labels, ["Cat", "Dog"]);
    let predictions = labelled.predictions;
    assert_eq!(
        predictions[0].label.as_deref(),
        Some("Cat"),
        "{predictions:?}"
    );
    assert!(
        predictions[1].error.is_some() || !corrupt.exists(),
        "{predictions:?}"
    );
}

/// The `--onnx` copy, run by tract's ONNX loader with a batch of two, gives the bundle's probabilities for each
/// photo, and carries the class names and preprocessing in its metadata.
fn onnx_copy_matches_the_bundle(onnx_file: &Path, bundle: &Path, photos: &[std::path::PathBuf]) {
    use tract_onnx::prelude::*;
    let mut model = lookout_runtime::Model::load(bundle, &Default::default()).unwrap();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for photo in photos {
        let image = lookout_shared::image_io::decode_file(photo).unwrap();
        let mut tensor = vec![0f32; model.tensor_len()];
        model.preprocess_into(&image, &mut tensor).unwrap();
        expected.extend(model.run_tensor(&tensor).unwrap());
        batch.extend(tensor);
    }
    let n = photos.len();
    let plan = tract_onnx::onnx()
        .model_for_path(onnx_file)
        .unwrap()
        .with_input_fact(0, f32::fact([n, 3, 224, 224]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = Tensor::from_shape(&[n, 3, 224, 224], &batch).unwrap();
    let output = plan.run(tvec![input.into_tvalue()]).unwrap();
    let got: Vec<f32> = output[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(got.len(), expected.len());
    let diff = lookout_host::bundle::check::max_abs_diff(&got, &expected);
    eprintln!("onnx copy vs bundle: max probability difference {diff:e}");
    // The same ops in another graph form (and batch 2 against batch 1): only summation order differs.
    assert!(diff <= 1e-5, "{got:?} vs {expected:?}");

    use prost::Message;
    let proto =
        tract_onnx::pb::ModelProto::decode(std::fs::read(onnx_file).unwrap().as_slice()).unwrap();
    let meta = |key: &str| {
        proto
            .metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(meta("lookout.classes"), r#"["Cat","Dog"]"#);
    assert!(meta("lookout.preprocess").contains("tf-inception"));
    assert_eq!(proto.graph.unwrap().output[0].name, "probabilities");
}

#[test]
fn broken_bundles_give_one_clear_line() {
    let shared = lookout_testdata::require_shared!();
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("no-run");
    // Garbage: an ONNX file given as a bundle.
    let onnx = shared.join("models/efficientnet_lite0_features_dynbatch.onnx");
    let err = evaluate_bundle(&onnx, &run_dir, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a lookout bundle") && !err.contains('\n'),
        "{err}"
    );
    // Truncated: the first half of a real bundle's bytes.
    let header_only = tmp.path().join("cut.lookout");
    let fake = Bundle {
        header: lookout_shared::BundleHeader {
            labels: vec!["a".into(), "b".into()],
            preprocess: PreprocessSpec::tf_inception(),
            backbone: lookout_shared::bundle::BackboneInfo {
                name: "x".into(),
                sha256: String::new(),
                cut: None,
            },
            head: lookout_shared::bundle::HeadInfo {
                kind: "linear".into(),
                description: String::new(),
                parameters: 0,
            },
            precision: Precision::F32,
            input_shape: vec![1, 3, 224, 224],
            output: lookout_shared::bundle::OutputKind::Sigmoid,
            threshold: 0.5,
            metrics: None,
            lookout_version: "0".into(),
            model_format: lookout_shared::bundle::ModelFormat::NnefTar,
            unknown: None,
            background: None,
        },
        model: vec![7; 1000],
    };
    let bytes = fake.to_bytes().unwrap();
    std::fs::write(&header_only, &bytes[..bytes.len() / 2]).unwrap();
    let err = evaluate_bundle(&header_only, &run_dir, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("truncated") && !err.contains('\n'), "{err}");
    // Intact but with a model that is not NNEF: the edge runtime says so, on one line.
    std::fs::write(&header_only, &bytes).unwrap();
    let err = evaluate_bundle(&header_only, &run_dir, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("could not be loaded") && !err.contains('\n'),
        "{err}"
    );
}

/// `q4`, `f16-q4` and `auto` on the Lite0 run: every pointwise convolution and the head in 4-bit blocks, within
/// the gate, and the same labels whichever way the runtime holds the weights.
fn whole_model_q4(
    run_dir: &Path,
    dir: &Path,
    f32: &lookout_host::bundle::ExportReport,
    q4head_size: u64,
) {
    use lookout_host::bundle::quantize::LayerState;
    use lookout_runtime::{Model, RuntimeOptions, WeightMemory};

    let path = dir.join("whole-q4.lookout");
    // One photo of these 40 is 2.5 points: measured 39/40 (the same photo flips with any 1 to 8 of the most
    // sensitive layers float).
    let gate = ExportOptions {
        max_drop_points: 2.5,
        ..options(ExportPrecision::Q4)
    };
    let q4 = export(run_dir, &path, &gate).unwrap();
    eprintln!(
        "q4 export: {} bytes (f32 {}, f32-q4head {q4head_size}), accuracy {} (float {}), agreement {}, max diff {}",
        q4.model_size, f32.model_size, q4.accuracy, q4.float_accuracy, q4.agreement, q4.max_probability_diff
    );
    assert_eq!(
        Bundle::read_file(&path).unwrap().header.precision,
        Precision::Q4
    );
    // Lite0's backbone is 13.5 MB in f32; in Q4_0 its matrices take 4.5 bits a weight. Measured: 4.3 MB before
    // partial blocks were padded (less since), against 14.9 (f32) and 13.7 (f32-q4head) for this pooled head.
    assert!(q4.model_size * 3 < f32.model_size, "{q4:?}");
    assert!(q4.model_size * 3 < q4head_size, "{q4:?}");
    // Within the gate on 40 photos (measured 39/40 the same labels as float).
    assert!(q4.agreement >= 0.95, "{q4:?}");
    assert!(q4.float_accuracy - q4.accuracy <= 0.025, "{q4:?}");
    let weights = q4.weights.as_ref().expect("q4 reports its weights");
    // Lite0: 17 pointwise convolutions fill whole blocks and so do the head's two layers (1280 and 256 inputs);
    // the 10 from 80, 112, 144 or 240 channels are padded to whole blocks; the 5 from 16, 24 or 40 channels stay
    // float (measured 29 and 5: 3.45 M weights in 4 bits, 28 K float).
    assert!(weights.quantized_layers >= 25, "{weights:?}");
    assert!(weights.partial_block_layers <= 8, "{weights:?}");
    assert!(
        weights
            .layers
            .iter()
            .filter(|l| l.padded_inputs.is_some())
            .count()
            >= 8,
        "{weights:?}"
    );
    assert!(weights
        .layers
        .iter()
        .any(|l| l.name.starts_with("lookout_") && l.state == LayerState::Q4));
    assert!(
        weights.quantized_weights > 50 * weights.partial_block_weights,
        "{weights:?}"
    );
    assert_eq!(q4.attempts.len(), 1, "passed at the first try: {q4:?}");

    // The runtime's two ways of holding the weights give the same labels and, up to summation order, the same
    // probabilities (the expanded floats are exactly what the blocks hold).
    let photos = export_support::photos(&lookout_testdata::require_shared!(), "Dog", 960, 3);
    let probabilities = |weights: WeightMemory| -> Vec<Vec<f32>> {
        let mut model = Model::load(
            &path,
            &RuntimeOptions {
                weights,
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        photos
            .iter()
            .map(|p| {
                let image = lookout_shared::image_io::decode_file(p).unwrap();
                model.classify(&image).unwrap().probabilities
            })
            .collect()
    };
    let compact = probabilities(WeightMemory::AsStored);
    let fast = probabilities(WeightMemory::Expanded);
    for (a, b) in compact.iter().zip(&fast) {
        for (x, y) in a.iter().zip(b) {
            // Measured 0 (24 photos, x86).
            assert!((x - y).abs() < 1e-4, "{compact:?} vs {fast:?}");
        }
    }

    // f16-q4: smaller still (the float parts halve); f16 arithmetic is emulated here, so two photos only.
    let f16q4_path = dir.join("f16-q4.lookout");
    let f16q4 = export(
        run_dir,
        &f16q4_path,
        &ExportOptions {
            max_test_images: Some(2),
            force: true,
            ..options(ExportPrecision::F16Q4)
        },
    )
    .unwrap();
    assert!(f16q4.model_size < q4.model_size, "{f16q4:?} vs {q4:?}");
    assert_eq!(
        Bundle::read_file(&f16q4_path).unwrap().header.precision,
        Precision::F16Q4
    );

    // auto: the smallest within the gate is q4, found at the first try.
    let auto_path = dir.join("auto.lookout");
    let auto = export(
        run_dir,
        &auto_path,
        &ExportOptions {
            precision: ExportPrecision::Auto,
            ..gate.clone()
        },
    )
    .unwrap();
    assert_eq!(auto.precision, ExportPrecision::Q4, "{auto:?}");
    assert_eq!(auto.model_size, q4.model_size);

    // A gate no 4-bit model can pass: the most sensitive layers are kept float, 1, 2, 4 then 8 of them, each
    // try measured; then the refusal lists what was tried, and nothing is written.
    let strict_path = dir.join("strict-q4.lookout");
    let err = export(
        run_dir,
        &strict_path,
        &ExportOptions {
            max_drop_points: -1.0,
            max_test_images: Some(6),
            ..options(ExportPrecision::Q4)
        },
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ExportError::AccuracyDrop { .. }), "{text}");
    assert!(text.contains("q4 with 8 layers float"), "{text}");
    assert!(text.contains("q4 with 1 layer float"), "{text}");
    assert!(!strict_path.exists());
}
