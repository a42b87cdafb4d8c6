//! A converted backbone on the extraction path: torchvision's MobileNetV3-Large architecture (random weights,
//! `../shared/fixtures/torchvision`) imported into a backbone cache the way `lookout backbone import` does,
//! resolved by name the way `lookout extract --backbone NAME` does, and run by the extractor at batch 1 and
//! batch 2 on the fixture's own input tensors: the features must equal torchvision's `model.features(x)`.
//!
//! This is the path that once failed ("output shape N,240,7,7 is not fixed"): converted NNEF graphs keep a
//! symbolic batch, and only substituting it through the graph makes the shapes concrete.

use lookout_host::features::extractor::{ExtractOptions, FeatureExtractor};
use lookout_models::backbone::Backbone;
use lookout_models::{import, Architecture, Cache, ImportRequest};
use lookout_testdata::{abs_diff_stats, read_f32_file, require_shared};

/// Measured here (tract 0.23.9, x86_64): batch 1 1.31e-6, batch 2 1.07e-6 max abs against torchvision (mean
/// 5.6e-8), as the converter's own conformance test on the raw graph (1.3e-6); 1e-5 leaves 8× headroom.
const TOLERANCE: f32 = 1e-5;

#[test]
fn imported_mobilenet_v3_large_features_equal_torchvision_at_batch_1_and_2() {
    let shared = require_shared!();
    let fixtures = shared.join("fixtures/torchvision");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cache = Cache::at(tmp.path());
    import(
        &cache,
        &ImportRequest {
            file: fixtures.join("mobilenet_v3_large_w025_random.pth"),
            architecture: Architecture::MobilenetV3Large,
            name: Some("mbv3_random".into()),
        },
    )
    .expect("importing the state dict");
    // The only test of this binary: no other thread reads the environment while it is set.
    std::env::set_var("LOOKOUT_CACHE", tmp.path());
    let backbone = Backbone::resolve("mbv3_random", None).expect("resolving the imported name");

    let input = read_f32_file(&fixtures.join("mobilenet_v3_large_w025_input_2x3x224x224.f32"));
    let expected = read_f32_file(&fixtures.join("mobilenet_v3_large_w025_features.f32"));
    let image_len = 3 * 224 * 224;
    assert_eq!(input.len(), 2 * image_len);

    for batch in [1, 2] {
        let extractor = FeatureExtractor::new(
            &backbone,
            &ExtractOptions {
                batch: Some(batch),
                ..ExtractOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("preparing the extractor at batch {batch}: {e}"));
        assert_eq!(extractor.feature_shape(), &[240, 7, 7]);
        let mut worker = extractor.worker().expect("worker");
        let features: Vec<f32> = input
            .chunks(batch * image_len)
            .flat_map(|images| {
                worker
                    .extract_tensors(images.to_vec())
                    .expect("running the backbone")
            })
            .collect();
        let (max, mean) = abs_diff_stats(&features, &expected);
        eprintln!("batch {batch}: features vs torchvision max {max:.2e}, mean {mean:.2e}");
        assert!(
            max < TOLERANCE,
            "batch {batch}: features differ from torchvision by {max}"
        );
    }
}
