//! The depthwise kernels this machine can run, timed against each other in one process on the depthwise layers
//! of EfficientNet-Lite0 (channel-last, as tract runs them once a `DepthwiseC` kernel exists): each kernel
//! called the way tract's depthwise op calls it, once per output row, pairs of runs in turn. Prints each layer's
//! median time per kernel and the median of the pairs' ratios; separate processes on a shared machine disagree
//! by more than the difference measured here.
//!
//! ```text
//! cargo run --release -p lookout-runtime --example depthwise_ab -- [PAIRS]
//! ```

use std::time::Instant;

use lookout_runtime::kernels::runnable_here;
use tract_linalg::routines::{DepthwiseCF32, Func, RoutineFactory};

/// Lite0's depthwise layers: input height and width, channels, kernel size, stride.
const LITE0: &[(usize, usize, usize, usize)] = &[
    (112, 96, 3, 2),
    (56, 144, 3, 1),
    (56, 144, 5, 2),
    (28, 240, 5, 1),
    (28, 240, 3, 2),
    (14, 480, 3, 1),
    (14, 480, 3, 1),
    (14, 480, 5, 1),
    (14, 672, 5, 1),
    (14, 672, 5, 1),
    (14, 672, 5, 2),
    (7, 1152, 5, 1),
    (7, 1152, 5, 1),
    (7, 1152, 5, 1),
    (7, 1152, 3, 1),
];

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One layer through `kernel`: every output row in turn, the input padded so that every tap is in bounds (the
/// zone tract calls the kernel on for most rows).
fn run_layer(kernel: DepthwiseCF32, layer: &mut Layer) -> f64 {
    let (c, stride) = (layer.channels, layer.stride);
    let start = Instant::now();
    for oy in 0..layer.out_hw {
        // SAFETY: the padded input holds every tap of every output point of the row (`Layer::new`), the output
        // row `out_hw * c` values, the kernel `k * k * c`, the bias `c`.
        unsafe {
            kernel(
                layer.input.as_ptr().add(oy * stride * layer.padded * c),
                layer.output.as_mut_ptr().add(oy * layer.out_hw * c),
                layer.weights.as_ptr(),
                &layer.taps,
                &layer.offsets,
                layer.bias.as_ptr(),
                c,
                c,
                layer.out_hw,
                (stride * c) as isize,
                c as isize,
            )
        };
    }
    start.elapsed().as_secs_f64() * 1e3
}

struct Layer {
    channels: usize,
    stride: usize,
    out_hw: usize,
    padded: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    weights: Vec<f32>,
    bias: Vec<f32>,
    taps: Vec<usize>,
    offsets: Vec<isize>,
}

impl Layer {
    fn new(hw: usize, channels: usize, k: usize, stride: usize) -> Layer {
        let out_hw = hw.div_ceil(stride);
        let padded = (out_hw - 1) * stride + k;
        let value = |i: usize| ((i * 7919) % 255) as f32 / 255.0 - 0.5;
        let taps: Vec<usize> = (0..k * k).collect();
        let offsets = taps
            .iter()
            .map(|t| ((t / k * padded + t % k) * channels) as isize)
            .collect();
        Layer {
            channels,
            stride,
            out_hw,
            padded,
            input: (0..padded * padded * channels).map(value).collect(),
            output: vec![0.0; out_hw * out_hw * channels],
            weights: (0..k * k * channels).map(|i| value(i + 1)).collect(),
            bias: (0..channels).map(|i| value(i + 2)).collect(),
            taps,
            offsets,
        }
    }
}

fn main() -> anyhow::Result<()> {
    let pairs: usize = std::env::args()
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(200);
    let mut kernels: Vec<(&str, DepthwiseCF32)> = runnable_here(Func::DepthwiseC)
        .filter_map(|r| match r.factory {
            RoutineFactory::DepthwiseCF32 { name, run } => Some((name, run)),
            _ => None,
        })
        .collect();
    // By name, so that A and B are the same kernels from one build to the next (the registry's order is the
    // link's).
    kernels.sort_by_key(|(name, _)| *name);
    let [(a_name, a), (b_name, b)] = kernels[..] else {
        anyhow::bail!(
            "this machine runs {} DepthwiseC kernels; the comparison needs two",
            kernels.len()
        );
    };
    println!("A = {a_name}, B = {b_name}; {pairs} pairs per layer");
    println!("| layer (in, channels, k, stride) | A | B | A / B, pair by pair |");
    println!("|---|---|---|---|");
    let (mut total_a, mut total_b) = (0.0, 0.0);
    for &(hw, channels, k, stride) in LITE0 {
        let mut layer = Layer::new(hw, channels, k, stride);
        for _ in 0..5 {
            run_layer(a, &mut layer);
            run_layer(b, &mut layer);
        }
        let (mut ta, mut tb, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for pair in 0..pairs {
            let (x, y) = if pair % 2 == 0 {
                let x = run_layer(a, &mut layer);
                (x, run_layer(b, &mut layer))
            } else {
                let y = run_layer(b, &mut layer);
                (run_layer(a, &mut layer), y)
            };
            ta.push(x);
            tb.push(y);
            ratio.push(x / y);
        }
        let (ma, mb) = (median(&mut ta), median(&mut tb));
        total_a += ma;
        total_b += mb;
        println!(
            "| {hw}, {channels}, {k}, {stride} | {ma:.3} ms | {mb:.3} ms | {:.2} |",
            median(&mut ratio)
        );
    }
    println!(
        "| all {} layers | {total_a:.2} ms | {total_b:.2} ms | {:.2} |",
        LITE0.len(),
        total_a / total_b
    );
    Ok(())
}
