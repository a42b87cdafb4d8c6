//! `lookout export` on a real, small cats-vs-dogs run with EfficientNet-Lite0: the f32 bundle must agree with
//! the host's float pipeline on every test image, f16 and f32-q4head must stay close, int8 must refuse with an
//! explanation, and broken bundles must give one clear line.

mod export_support;

use std::path::Path;

use export_support::{build_run, RunSpec};
use lookout_host::export::{
    evaluate_bundle, export, predict_bundle, ExportError, ExportOptions, ExportPrecision,
};
use lookout_host::run::HeadKind;
use lookout_shared::bundle::Precision;
use lookout_shared::{Bundle, PreprocessSpec};

const TRAIN_PER_CLASS: usize = 30;
const TEST_PER_CLASS: usize = 20;
/// f16 runs emulated on x86 (≈ 20× slower than f32), so its export is measured on a few test images only.
const F16_TEST_IMAGES: usize = 6;

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
    let f32 = export(&run_dir, &f32_path, &options(ExportPrecision::F32)).unwrap();
    eprintln!("f32 export: {f32:?}");
    assert_eq!(f32.test_images, 2 * TEST_PER_CLASS);
    assert_eq!(f32.agreement, 1.0, "{f32:?}");
    // Bounds that pass (exact values not yet recorded): the same ops on the same input differ only by summation order.
    assert!(f32.compose_check_diff <= 1e-6, "{f32:?}");
    assert!(f32.max_probability_diff <= 1e-4, "{f32:?}");
    assert_eq!(f32.accuracy, f32.float_accuracy);
    // Transfer learning on 60 photos already separates cats from dogs well (bound chosen, not yet measured precisely).
    assert!(f32.float_accuracy >= 0.85, "{f32:?}");

    let bundle = Bundle::read_file(&f32_path).unwrap();
    let header = &bundle.header;
    assert_eq!(header.precision, Precision::F32);
    assert_eq!(header.labels, ["Cat", "Dog"]);
    assert_eq!(header.input_shape, [1, 3, 224, 224]);
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
    assert!(q4.max_probability_diff < 5e-2, "{q4:?}");
    assert!(q4.agreement >= 0.95, "{q4:?}");
    assert_eq!(
        Bundle::read_file(&q4_path).unwrap().header.precision,
        Precision::F32WeightsQ4
    );

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

    // predict --model on photos never seen: labels plus a per-file error for a corrupt one.
    let cat = export_support::photos(&shared, "Cat", 900, 1).remove(0);
    let corrupt = shared.join("data/corrupt-samples/truncated_half.jpg");
    let predictions = predict_bundle(&f32_path, &[cat, corrupt.clone()], false).unwrap();
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
