//! End-to-end extraction speed: N cats-vs-dogs photos (`LOOKOUT_BENCH_IMAGES`, default 200) through
//! decode → preprocess → EfficientNet-Lite0 features, batch-1 workers on every core vs batch 8.
//! Run: `cargo bench -p lookout-host --bench extract`; compare with `python3 benches/extract_reference.py`.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::ProgressBar;
use lookout_host::features::device::DeviceChoice;
use lookout_host::features::extractor::{ExtractOptions, FeatureExtractor};
use lookout_models::backbone::Backbone;
use lookout_shared::PreprocessSpec;

fn main() {
    let Some(shared) = lookout_testdata::shared_dir() else {
        lookout_testdata::skip_message("extract bench");
        return;
    };
    let n: usize = std::env::var("LOOKOUT_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut paths: Vec<PathBuf> = Vec::new();
    for i in 1..=n.div_ceil(2) {
        for (class, prefix) in [("Cat", "cat"), ("Dog", "dog")] {
            paths.push(shared.join(format!("data/cats-vs-dogs/{class}/{prefix}.{i}.jpg")));
        }
    }
    paths.truncate(n);
    let backbone = Backbone::from_file(
        &shared.join("models/efficientnet_lite0_features_dynbatch.onnx"),
        Some(PreprocessSpec::tf_inception()),
    )
    .expect("backbone");
    for batch in [1usize, 8] {
        let extractor = FeatureExtractor::new(
            &backbone,
            &ExtractOptions {
                device: DeviceChoice::Cpu,
                batch: Some(batch),
                ..Default::default()
            },
        )
        .expect("extractor");
        let t = Instant::now();
        let out = extractor
            .extract_files(&paths, &ProgressBar::hidden())
            .expect("extraction");
        let secs = t.elapsed().as_secs_f64();
        let ok = out.iter().filter(|o| o.is_ok()).count();
        let s = extractor.stage_times();
        let busy = s.decode_s + s.preprocess_s + s.model_s;
        println!(
            "lookout extract, Lite0, batch {batch}, {} threads: {ok} images in {secs:.2} s = {:.1} img/s \
             (decode {:.0}%, preprocess {:.0}%, model {:.0}% of {busy:.1} s worker time)",
            rayon::current_num_threads(),
            ok as f64 / secs,
            100.0 * s.decode_s / busy,
            100.0 * s.preprocess_s / busy,
            100.0 * s.model_s / busy,
        );
    }
}
