//! torchvision's `mobilenet_v3_large` at full width, the default backbone, through the converter. Its real weights
//! cannot be downloaded here, and the torchvision fixtures are width 0.25: so a state dict of the real layout with
//! random weights (`examples/support/torchvision_random.rs`, also what `examples/random_backbone.rs` writes for the
//! measurements in docs/) is checked against torchvision's published parameter count and the fixture's module
//! structure, then converted and run.

#[path = "../examples/support/torchvision_random.rs"]
mod torchvision_random;

use std::collections::BTreeSet;

use lookout_models::convert::build_graph;
use lookout_models::mobilenet_v3::Outputs;
use lookout_models::state_dict::StateDict;
use lookout_models::Architecture;
use lookout_testdata::require_shared;
use tract_core::internal::*;

/// `sum(p.numel() for p in torchvision.models.mobilenet_v3_large().features.parameters())`: torchvision's
/// 5,483,032 parameters less the classifier's 2,511,080 (960·1280 + 1280 + 1280·1000 + 1000).
const FEATURES_PARAMETERS: usize = 2_971_952;

#[test]
fn the_full_width_layout_is_torchvisions() {
    let sd = torchvision_random::mobilenet_v3_large(1);
    // Parameters are what torchvision counts: every tensor but the batch norms' running statistics.
    let parameters: usize = sd
        .iter()
        .filter(|(key, _)| !key.ends_with("running_mean") && !key.ends_with("running_var"))
        .map(|(_, p)| p.data.len())
        .sum();
    assert_eq!(parameters, FEATURES_PARAMETERS);

    // The same modules, by name, as torchvision's own width-0.25 state dict.
    let shared = require_shared!();
    let fixture =
        StateDict::read(&shared.join("fixtures/torchvision/mobilenet_v3_large_w025_random.pth"))
            .unwrap();
    let theirs: BTreeSet<&str> = fixture
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("features."))
        .collect();
    let ours: BTreeSet<&str> = sd.keys().map(String::as_str).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn the_full_width_default_backbone_converts_and_runs() {
    let sd = StateDict::from_params(torchvision_random::mobilenet_v3_large(1))
        .for_arch("mobilenet_v3_large");
    let model = build_graph(&sd, Architecture::MobilenetV3Large, Outputs::Features).unwrap();
    let plan = model.into_optimized().unwrap().into_runnable().unwrap();
    let x: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    let x = Tensor::from_shape(&[1, 3, 224, 224], &x).unwrap();
    let features = plan
        .run(tvec![x.into_tvalue()])
        .unwrap()
        .remove(0)
        .into_tensor();
    assert_eq!(features.shape(), &[1, 960, 7, 7]);
    let values = features.to_plain_array_view::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
    // Hardswish after the last conv: a random network's features still spread (no collapse to one value).
    let (min, max) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(max - min > 1e-3, "features collapsed to {min}..{max}");
}
