//! Real test bundles built from the shared EfficientNet-Lite0 ImageNet classifier, once per target dir.
//!
//! - softmax: the classifier + a softmax, 1000 ImageNet labels, tf-inception preprocessing;
//! - sigmoid: the classifier + a tiny head `sigmoid(max cat logit − max dog logit)`, labels [dog, cat].
//!
//! Bundles are cached under `CARGO_TARGET_TMPDIR` (written atomically) so the test binaries share them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lookout_shared::bundle::{
    BackboneInfo, Bundle, BundleHeader, HeadInfo, ModelFormat, OutputKind, Precision,
};
use lookout_shared::preprocess::PreprocessSpec;
use tract_onnx::prelude::*;

/// Bumped whenever the bundles below change, so stale cached files are not reused.
const VERSION: u32 = 1;
/// ImageNet class ranges of the sigmoid head: dogs are 151..=268, domestic cats 281..=285.
const DOGS: (usize, usize) = (151, 269);
const CATS: (usize, usize) = (281, 286);

pub const CLASSIFIER: &str = "models/efficientnet_lite0_classifier_dynbatch.onnx";

/// Paths of the two cached test bundles.
#[derive(Debug)]
pub struct Bundles {
    pub softmax: PathBuf,
    pub sigmoid: PathBuf,
}

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("lookout-edge-test-bundles")
}

/// The test bundles (built on first use).
pub fn bundles(shared: &Path) -> &'static Bundles {
    static BUNDLES: OnceLock<Bundles> = OnceLock::new();
    BUNDLES.get_or_init(|| {
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).expect("creating the bundle cache dir");
        let softmax = dir.join(format!("lite0-softmax-v{VERSION}.lookout"));
        let sigmoid = dir.join(format!("lite0-catdog-sigmoid-v{VERSION}.lookout"));
        if !softmax.exists() || !sigmoid.exists() {
            build(shared, &softmax, &sigmoid);
        }
        Bundles { softmax, sigmoid }
    })
}

pub fn imagenet_labels(shared: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(shared.join("models/imagenet_classes.txt"))
        .expect("reading imagenet_classes.txt");
    let labels: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(labels.len(), 1000);
    labels
}

/// The ONNX classifier, pinned to batch 1, typed.
fn classifier(shared: &Path) -> TypedModel {
    tract_onnx::onnx()
        .model_for_path(shared.join(CLASSIFIER))
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, 224, 224]).into()))
        .and_then(|m| m.into_typed())
        .expect("loading the ONNX classifier")
}

fn header(labels: Vec<String>, output: OutputKind, head: HeadInfo) -> BundleHeader {
    BundleHeader {
        labels,
        preprocess: PreprocessSpec::tf_inception(),
        backbone: BackboneInfo {
            name: "efficientnet_lite0".into(),
            sha256: "test".into(),
            cut: None,
        },
        head,
        precision: Precision::F32,
        input_shape: vec![1, 3, 224, 224],
        output,
        threshold: 0.5,
        metrics: None,
        lookout_version: env!("CARGO_PKG_VERSION").into(),
        model_format: ModelFormat::NnefTar,
        unknown: None,
        background: None,
    }
}

/// Declutters, serialises to an NNEF tar and writes the bundle atomically (temp file + rename).
pub fn write_bundle(model: TypedModel, header: BundleHeader, path: &Path) {
    let model = model.into_decluttered().expect("declutter");
    let tar = tract_nnef::nnef()
        .write_to_tar(&model, Vec::new())
        .expect("writing NNEF");
    let bundle = Bundle { header, model: tar };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bundle.to_bytes().expect("encoding bundle")).expect("writing bundle");
    std::fs::rename(&tmp, path).expect("renaming bundle");
}

fn build(shared: &Path, softmax_path: &Path, sigmoid_path: &Path) {
    // Softmax over the 1000 ImageNet logits.
    let mut model = classifier(shared);
    let logits = model.output_outlets().expect("outputs")[0];
    let probs = model
        .wire_node(
            "probabilities",
            tract_core::ops::nn::Softmax::new(tvec![1], None, Default::default()),
            &[logits],
        )
        .expect("wiring softmax");
    model.select_output_outlets(&probs).expect("setting output");
    let head = HeadInfo {
        kind: "imagenet".into(),
        description: "Lite0 classifier → softmax".into(),
        parameters: 0,
    };
    write_bundle(
        model,
        header(imagenet_labels(shared), OutputKind::Softmax, head),
        softmax_path,
    );

    // Cat vs dog: sigmoid(max cat logit − max dog logit).
    let mut model = classifier(shared);
    let logits = model.output_outlets().expect("outputs")[0];
    let max_of = |model: &mut TypedModel, name: &str, (start, end): (usize, usize)| {
        let slice = model
            .wire_node(
                format!("{name}.slice"),
                tract_core::ops::array::Slice::new(1, start, end),
                &[logits],
            )
            .expect("slice")[0];
        model
            .wire_node(
                format!("{name}.max"),
                tract_core::ops::nn::Reduce::new(tvec![1], tract_core::ops::nn::Reducer::Max),
                &[slice],
            )
            .expect("reduce")[0]
    };
    let cat = max_of(&mut model, "cat", CATS);
    let dog = max_of(&mut model, "dog", DOGS);
    let diff = model
        .wire_node("cat_minus_dog", tract_core::ops::math::sub(), &[cat, dog])
        .expect("sub");
    let prob = model
        .wire_node("p_cat", tract_core::ops::nn::sigmoid(), &diff)
        .expect("sigmoid");
    model.select_output_outlets(&prob).expect("setting output");
    let head = HeadInfo {
        kind: "test".into(),
        description: "sigmoid(max cat logit − max dog logit)".into(),
        parameters: 0,
    };
    write_bundle(
        model,
        header(vec!["dog".into(), "cat".into()], OutputKind::Sigmoid, head),
        sigmoid_path,
    );
}

/// The `n` first photos (sorted) of a cats-vs-dogs class folder.
pub fn photos(shared: &Path, class: &str, n: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(shared.join("data/cats-vs-dogs").join(class))
        .expect("reading cats-vs-dogs")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    files.truncate(n);
    files
}

/// The ImageNet sample: (file, class index) from labels.csv.
pub fn imagenet_sample(shared: &Path) -> Vec<(PathBuf, usize)> {
    let dir = shared.join("data/imagenet-sample");
    let csv = std::fs::read_to_string(dir.join("labels.csv")).expect("reading labels.csv");
    csv.lines()
        .skip(1)
        .map(|line| {
            let mut fields = line.split(',');
            let file = fields.next().expect("file column");
            let class = fields
                .next()
                .expect("class column")
                .parse()
                .expect("class index");
            (dir.join(file), class)
        })
        .collect()
}

/// Path of the built `lookout-edge` binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lookout-edge")
}

/// The cat/dog sigmoid bundle relabelled `[dog, background]` with the background at 1: a cat photo is the
/// "empty scene" (answered `nothing`), a dog photo a label that acts. Built once from the sigmoid bundle.
pub fn background_bundle(shared: &Path) -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let path = cache_dir().join(format!("lite0-dog-background-v{VERSION}.lookout"));
        if !path.exists() {
            let mut bundle = Bundle::read_file(&bundles(shared).sigmoid).expect("sigmoid bundle");
            bundle.header.labels = vec!["dog".into(), "background".into()];
            bundle.header.background = Some(1);
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bundle.to_bytes().expect("encoding bundle"))
                .expect("writing bundle");
            std::fs::rename(&tmp, &path).expect("renaming bundle");
        }
        path
    })
}

/// A cat photo on the left half and a dog photo on the right, each squeezed to 320×320: two zones' worth.
pub fn cat_beside_dog(shared: &Path) -> image::RgbImage {
    let half = |class: &str| {
        let photo = &photos(shared, class, 1)[0];
        let image = lookout_shared::image_io::decode_file(photo).expect("decode photo");
        image::imageops::resize(&image, 320, 320, image::imageops::FilterType::Triangle)
    };
    let mut both = image::RgbImage::new(640, 320);
    image::imageops::replace(&mut both, &half("Cat"), 0, 0);
    image::imageops::replace(&mut both, &half("Dog"), 320, 0);
    both
}

/// A folder holding `n` copies of [`cat_beside_dog`] as PNG (lossless: every frame is the same pixels).
pub fn cats_beside_dogs(shared: &Path, n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let both = cat_beside_dog(shared);
    for i in 0..n {
        both.save(dir.path().join(format!("{i:02}.png")))
            .expect("writing the composed frame");
    }
    dir
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every line of a run's stdout as JSON, whether the run succeeded or not.
pub fn stdout_json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// Every line of a successful run's stdout as JSON (a failed run fails the test, with its stderr).
pub fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json_lines(out)
}

/// The lines of one `"type"`.
pub fn of_type<'a>(lines: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["type"] == kind).collect()
}
