//! The depthwise kernels tract resolves on this machine (ours where `lookout_runtime::kernels` registers
//! one) against plain scalar references, on random shapes: kernel by kernel on their raw contracts, and
//! whole depthwise convolutions through tract (3×3 and 5×5, strides 1 and 2, channel counts that are not a
//! multiple of the vector width, both layouts, padded borders) against a direct convolution in f64.

mod common;

use common::values;
use proptest::prelude::*;
use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_core::ops::nn::DataFormat;
use tract_linalg::routines::{best_for, DepthwiseCF32, DepthwiseWF32, Func, RoutineFactory};

/// `|got - want|` within what f32 accumulation of these terms can move, per point.
fn close(got: f32, want: f64, magnitude: f64) -> bool {
    ((got as f64) - want).abs() <= 1e-5 * magnitude + 1e-6
}

/// Every kernel of `func` to check on this machine: the one tract resolves (what its convolutions run) and each
/// of this crate's that the machine can run (the AVX2 kernels run on an AVX-512 machine too, where tract resolves
/// the AVX-512 ones), each once.
fn kernels(func: Func) -> Vec<(&'static str, &'static RoutineFactory)> {
    let mut kernels: Vec<_> = lookout_runtime::kernels::runnable_here(func).collect();
    // tract's own, where it resolves one of its kernels (aarch64's `DepthwiseC`).
    let tracts = best_for(func, DatumType::F32, &tract_linalg::isa::native())
        .filter(|r| !kernels.iter().any(|k| k.name() == r.name()));
    kernels.extend(tracts);
    kernels
        .into_iter()
        .map(|r| (r.name(), &r.factory))
        .collect()
}

fn check_w(
    taps: usize,
    len: usize,
    stride: usize,
    spread: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    for (name, factory) in kernels(Func::DepthwiseW) {
        let RoutineFactory::DepthwiseWF32 { run, .. } = *factory else {
            continue;
        };
        check_w_with(run, taps, len, stride, spread, seed)
            .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
    }
    Ok(())
}

fn check_w_with(
    ker: DepthwiseWF32,
    taps: usize,
    len: usize,
    stride: usize,
    spread: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let k = values(taps, seed);
    let bias = values(1, seed + 1)[0];
    // Offsets anywhere in [-spread, spread]; the buffer holds exactly the points read.
    let offsets: Vec<isize> = values(taps, seed + 2)
        .iter()
        .map(|v| (v * spread as f32).round() as isize)
        .collect();
    let lo = *offsets.iter().min().unwrap_or(&0);
    let hi = *offsets.iter().max().unwrap_or(&0);
    let span = (hi - lo) as usize + len.saturating_sub(1) * stride + 1;
    let input = values(span, seed + 3);
    let center = (-lo) as usize;
    let mut out = vec![f32::NAN; len + 1];
    // SAFETY: every `center + offsets[t] + i * stride` (i < len) is inside `input`, `len` points fit `out`.
    unsafe {
        ker(
            input.as_ptr().add(center),
            out.as_mut_ptr(),
            &k,
            &offsets,
            bias,
            len,
            stride as isize,
        )
    };
    for i in 0..len {
        let (mut want, mut mag) = (bias as f64, bias.abs() as f64);
        for t in 0..taps {
            let x = input[(center as isize + offsets[t] + (i * stride) as isize) as usize] as f64;
            want += k[t] as f64 * x;
            mag += (k[t] as f64 * x).abs();
        }
        prop_assert!(
            close(out[i], want, mag),
            "point {i}: {} vs {want} (taps {taps} len {len} stride {stride})",
            out[i]
        );
    }
    prop_assert!(out[len].is_nan(), "wrote past len {len}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_c(
    taps: usize,
    channels: usize,
    pad_c: usize,
    len: usize,
    stride: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    for (name, factory) in kernels(Func::DepthwiseC) {
        let RoutineFactory::DepthwiseCF32 { run, .. } = *factory else {
            continue;
        };
        check_c_with(run, taps, channels, pad_c, len, stride, seed)
            .map_err(|e| TestCaseError::fail(format!("{name}: {e}")))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_c_with(
    ker: DepthwiseCF32,
    taps: usize,
    channels: usize,
    pad_c: usize,
    len: usize,
    stride: usize,
    seed: u64,
) -> Result<(), TestCaseError> {
    let k_stride = channels + pad_c;
    let kernel = values(taps * k_stride, seed);
    let bias = values(channels, seed + 1);
    let tap_indices: Vec<usize> = (0..taps).rev().collect();
    // Positions are `k_stride` floats apart (a row of whole channel vectors); taps land on positions.
    let offsets: Vec<isize> = (0..taps).map(|t| (t * k_stride) as isize).collect();
    let in_stride = (stride * k_stride) as isize;
    let out_stride = k_stride as isize;
    let span = (taps.saturating_sub(1) + len.saturating_sub(1) * stride) * k_stride + channels;
    let input = values(span.max(1), seed + 2);
    let mut out = vec![f32::NAN; len * k_stride + 1];
    // SAFETY: the largest read is `(len - 1) * in_stride + (taps - 1) * k_stride + channels - 1 < span`,
    // kernel reads stay below `taps * k_stride`, writes below `len * k_stride`.
    unsafe {
        ker(
            input.as_ptr(),
            out.as_mut_ptr(),
            kernel.as_ptr(),
            &tap_indices,
            &offsets,
            bias.as_ptr(),
            channels,
            k_stride,
            len,
            in_stride,
            out_stride,
        )
    };
    for i in 0..len {
        for c in 0..channels {
            let (mut want, mut mag) = (bias[c] as f64, bias[c].abs() as f64);
            for t in 0..taps {
                let x = input[(i as isize * in_stride + offsets[t]) as usize + c] as f64;
                let w = kernel[tap_indices[t] * k_stride + c] as f64;
                want += w * x;
                mag += (w * x).abs();
            }
            let got = out[i * k_stride + c];
            prop_assert!(close(got, want, mag), "pos {i} ch {c}: {got} vs {want}");
        }
        for c in channels..k_stride {
            prop_assert!(
                out[i * k_stride + c].is_nan(),
                "pos {i}: wrote channel {c} of {channels}"
            );
        }
    }
    Ok(())
}

/// A depthwise convolution through tract (decluttered, optimised, run) against a direct one.
#[allow(clippy::too_many_arguments)]
fn check_conv(
    fmt: DataFormat,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    same: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    lookout_runtime::kernels::ensure_linked();
    let x = values(c * h * w, seed);
    let kernel = values(c * k * k, seed + 1);
    let bias = values(c, seed + 2);
    let c_last = fmt.c_is_last();
    let x_shape = if c_last { [1, h, w, c] } else { [1, c, h, w] };
    let padding = if same {
        PaddingSpec::SameUpper
    } else {
        PaddingSpec::Valid
    };
    let pool_spec = PoolSpec {
        data_format: fmt,
        kernel_shape: tvec!(k, k),
        padding,
        dilations: None,
        strides: Some(tvec!(stride, stride)),
        input_channels: c,
        output_channels: c,
    };
    let computed = pool_spec.computed_padding(&[h, w]);
    let run = || -> TractResult<Tensor> {
        let mut model = TypedModel::default();
        let xv = model.add_source("x", f32::fact(x_shape))?;
        let kv = model.add_const("k", Tensor::from_shape(&[c, 1, k, k], &kernel)?)?;
        let bv = model.add_const("b", Tensor::from_shape(&[c], &bias)?)?;
        let conv = Conv {
            pool_spec: pool_spec.clone(),
            kernel_fmt: KernelFormat::OIHW,
            group: c,
            q_params: None,
        };
        let out = model.wire_node("dw", conv, &[xv, kv, bv])?;
        model.select_output_outlets(&out)?;
        let plan = model.into_optimized()?.into_runnable()?;
        let mut outputs = plan.run(tvec![Tensor::from_shape(&x_shape, &x)?.into_tvalue()])?;
        Ok(outputs.remove(0).into_tensor())
    };
    let got = run().map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    let got = got
        .to_plain_array_view::<f32>()
        .map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    let (oh, ow) = if c_last {
        (got.shape()[1], got.shape()[2])
    } else {
        (got.shape()[2], got.shape()[3])
    };
    let (ph, pw) = (
        computed[0].pad_before as isize,
        computed[1].pad_before as isize,
    );
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut want, mut mag) = (bias[ch] as f64, bias[ch].abs() as f64);
                for ky in 0..k {
                    for kx in 0..k {
                        let iy = (oy * stride + ky) as isize - ph;
                        let ix = (ox * stride + kx) as isize - pw;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let (iy, ix) = (iy as usize, ix as usize);
                        let xv = if c_last {
                            x[(iy * w + ix) * c + ch]
                        } else {
                            x[(ch * h + iy) * w + ix]
                        };
                        let p = xv as f64 * kernel[(ch * k + ky) * k + kx] as f64;
                        want += p;
                        mag += p.abs();
                    }
                }
                let g = if c_last {
                    got[[0, oy, ox, ch]]
                } else {
                    got[[0, ch, oy, ox]]
                };
                prop_assert!(
                    close(g, want, mag),
                    "{fmt:?} c={c} {h}x{w} k={k} s={stride} same={same}: ({ch},{oy},{ox}) {g} vs {want}"
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn w_kernel_matches_scalar(taps in 1usize..30, len in 0usize..70, stride in 1usize..5, spread in 0usize..40, seed in any::<u64>()) {
        check_w(taps, len, stride, spread, seed)?;
    }

    #[test]
    fn c_kernel_matches_scalar(taps in 1usize..30, channels in 1usize..50, pad_c in 0usize..3, len in 0usize..12, stride in 1usize..3, seed in any::<u64>()) {
        check_c(taps, channels, pad_c, len, stride, seed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    #[test]
    fn depthwise_conv_matches_direct(
        nhwc in any::<bool>(),
        c in 1usize..40,
        h in 1usize..20,
        w in 1usize..24,
        k in prop::sample::select(vec![3usize, 5]),
        stride in 1usize..3,
        same in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // A valid convolution needs the kernel to fit.
        prop_assume!(same || (h >= k && w >= k));
        let fmt = if nhwc { DataFormat::NHWC } else { DataFormat::NCHW };
        check_conv(fmt, c, h, w, k, stride, same, seed)?;
    }
}

/// The layer shapes of EfficientNet-Lite0 and MobileNetV3-Small (channels, size, kernel, stride).
#[test]
fn depthwise_conv_matches_direct_on_model_layers() {
    let layers = [
        (32, 112, 3, 1),
        (96, 112, 3, 2),
        (144, 56, 3, 1),
        (144, 56, 5, 2),
        (240, 28, 5, 1),
        (240, 28, 3, 2),
        (480, 14, 3, 1),
        (480, 14, 5, 1),
        (672, 14, 5, 2),
        (1152, 7, 5, 1),
        (1152, 7, 3, 1),
        (16, 112, 3, 2),
        (72, 56, 3, 2),
        (88, 28, 3, 1),
        (96, 28, 5, 2),
        (240, 14, 5, 1),
        (576, 7, 5, 1),
    ];
    for (seed, (c, hw, k, stride)) in layers.into_iter().enumerate() {
        for fmt in [DataFormat::NCHW, DataFormat::NHWC] {
            check_conv(fmt, c, hw, hw, k, stride, true, seed as u64).unwrap();
        }
    }
}
