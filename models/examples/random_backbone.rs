//! Writes torchvision's `mobilenet_v3_large` at full width with random weights as an NNEF backbone file: the
//! default backbone's exact layout, for measuring what depends on the architecture alone (bundle size, load time,
//! latency, memory) where its real weights cannot be downloaded. Its features mean nothing: never for accuracy.
//!
//!     cargo run -p lookout-models --example random_backbone -- mobilenet_v3_large_random.nnef.tar
//!     lookout fit --data PetImages --backbone mobilenet_v3_large_random.nnef.tar --preprocess torchvision --out x.lookout

mod support {
    pub mod torchvision_random;
}

use std::path::PathBuf;

use lookout_models::convert::{build_graph, write_nnef};
use lookout_models::mobilenet_v3::Outputs;
use lookout_models::state_dict::StateDict;
use lookout_models::Architecture;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        return Err("usage: random_backbone OUT.nnef.tar".into());
    };
    let sd = StateDict::from_params(support::torchvision_random::mobilenet_v3_large(1))
        .for_arch("mobilenet_v3_large");
    let model = build_graph(&sd, Architecture::MobilenetV3Large, Outputs::Features)?;
    write_nnef(&model, &out)?;
    println!(
        "wrote {} (mobilenet_v3_large, width 1.0, random weights)",
        out.display()
    );
    Ok(())
}
