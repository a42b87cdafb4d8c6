//! torchvision's `mobilenet_v3_large` state dict at full width (`width_mult=1.0`), with random weights: the key
//! names and shapes of the real IMAGENET1K weights, made here because download.pytorch.org cannot be reached
//! from the machines that test Lookout. For what depends on the architecture alone (conversion, file size,
//! speed, memory), never for accuracy.
//!
//! The layout is torchvision's `_mobilenet_v3_conf("mobilenet_v3_large")`: a 3×3 stem of 16 channels
//! (`features.0`), 15 inverted-residual blocks (`features.1` … `features.15`), a 1×1 conv to 960 (`features.16`).

use std::collections::HashMap;

use lookout_models::state_dict::Param;

/// One inverted-residual block: input channels, kernel size, expanded channels, output channels, squeeze-excite.
type Block = (usize, usize, usize, usize, bool);

/// torchvision `_mobilenet_v3_conf("mobilenet_v3_large")`, width 1.0 (strides and activations are the
/// converter's own table).
const LARGE: [Block; 15] = [
    (16, 3, 16, 16, false),
    (16, 3, 64, 24, false),
    (24, 3, 72, 24, false),
    (24, 5, 72, 40, true),
    (40, 5, 120, 40, true),
    (40, 5, 120, 40, true),
    (40, 3, 240, 80, false),
    (80, 3, 200, 80, false),
    (80, 3, 184, 80, false),
    (80, 3, 184, 80, false),
    (80, 3, 480, 112, true),
    (112, 3, 672, 112, true),
    (112, 5, 672, 160, true),
    (160, 5, 960, 160, true),
    (160, 5, 960, 160, true),
];

/// torchvision's `_make_divisible(v, 8)`: the squeeze-excite width.
fn make_divisible(v: usize) -> usize {
    let rounded = ((v + 4) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * v as f64 {
        rounded + 8
    } else {
        rounded
    }
}

/// Deterministic pseudo-random numbers in [-1, 1) (splitmix64), so every run writes the same backbone.
struct Random(u64);

impl Random {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The state dict, keys as torchvision names them (without the integer `num_batches_tracked` buffers, which
/// the reader drops too). Convolutions are scaled so that a linear layer keeps its input's variance (LeCun),
/// batch norms are the identity.
pub fn mobilenet_v3_large(seed: u64) -> HashMap<String, Param> {
    let mut random = Random(seed);
    let mut sd = HashMap::new();
    let mut conv = |sd: &mut HashMap<String, Param>, key: String, shape: [usize; 4], bias: bool| {
        let fan_in = shape[1] * shape[2] * shape[3];
        // Uniform in ±√(3/fan_in): variance 1/fan_in (LeCun). He's ±√(6/fan_in) doubles the variance at
        // each linear projection, and through 15 residual blocks the features reached hundreds: the head's
        // training then diverged (loss 153 in the first epoch, chance accuracy).
        let scale = (3.0 / fan_in as f32).sqrt();
        let data = (0..shape.iter().product())
            .map(|_| random.next() * scale)
            .collect();
        sd.insert(
            format!("{key}.weight"),
            Param {
                shape: shape.to_vec(),
                data,
            },
        );
        if bias {
            let data = (0..shape[0]).map(|_| random.next() * 0.1).collect();
            sd.insert(
                format!("{key}.bias"),
                Param {
                    shape: vec![shape[0]],
                    data,
                },
            );
        }
    };
    let bn = |sd: &mut HashMap<String, Param>, key: &str, channels: usize| {
        for (name, value) in [
            ("weight", 1.0),
            ("bias", 0.0),
            ("running_mean", 0.0),
            ("running_var", 1.0),
        ] {
            let param = Param {
                shape: vec![channels],
                data: vec![value; channels],
            };
            sd.insert(format!("{key}.{name}"), param);
        }
    };
    conv(&mut sd, "features.0.0".into(), [16, 3, 3, 3], false);
    bn(&mut sd, "features.0.1", 16);
    for (i, &(input, kernel, expanded, output, se)) in LARGE.iter().enumerate() {
        let prefix = format!("features.{}.block", i + 1);
        let mut layer = 0;
        if expanded != input {
            conv(
                &mut sd,
                format!("{prefix}.{layer}.0"),
                [expanded, input, 1, 1],
                false,
            );
            bn(&mut sd, &format!("{prefix}.{layer}.1"), expanded);
            layer += 1;
        }
        conv(
            &mut sd,
            format!("{prefix}.{layer}.0"),
            [expanded, 1, kernel, kernel],
            false,
        );
        bn(&mut sd, &format!("{prefix}.{layer}.1"), expanded);
        layer += 1;
        if se {
            let squeeze = make_divisible(expanded / 4);
            conv(
                &mut sd,
                format!("{prefix}.{layer}.fc1"),
                [squeeze, expanded, 1, 1],
                true,
            );
            conv(
                &mut sd,
                format!("{prefix}.{layer}.fc2"),
                [expanded, squeeze, 1, 1],
                true,
            );
            layer += 1;
        }
        conv(
            &mut sd,
            format!("{prefix}.{layer}.0"),
            [output, expanded, 1, 1],
            false,
        );
        bn(&mut sd, &format!("{prefix}.{layer}.1"), output);
    }
    conv(&mut sd, "features.16.0".into(), [960, 160, 1, 1], false);
    bn(&mut sd, "features.16.1", 960);
    sd
}
