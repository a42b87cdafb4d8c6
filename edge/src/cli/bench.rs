//! `lookout-edge bench`: how fast and how big a bundle runs on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use image::RgbImage;
use lookout_edge::stats::{peak_memory_bytes, percentile_ms};
use lookout_runtime::profile::OpProfile;
use serde_json::json;

use super::common::{load_model, ms, parse_roi, round3, UnknownArgs, WeightsArg};

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .lookout bundle.
    #[arg(long, short)]
    model: PathBuf,
    /// Threads for tract's matrix kernels (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How a q4 bundle's 4-bit weights are held: fast (convolution weights as f32 at load) or compact
    /// (least memory, slower).
    #[arg(long, value_enum, default_value_t = WeightsArg::Fast)]
    weights: WeightsArg,
    /// Timed iterations (after 5 warm-up runs).
    #[arg(long, default_value_t = 200)]
    iters: usize,
    /// Image to classify (default: a synthetic 640×480 frame, as a camera would give).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Time only this region of the image, x,y,w,h in fractions of it (cropped before the timed runs, as
    /// `watch --roi` crops once per frame).
    #[arg(long, value_name = "x,y,w,h")]
    roi: Option<String>,
    /// Also time every op of the plan over --iters runs and print where the time goes, by kind (convolutions
    /// as matrix products, depthwise convolutions, pooling, element-wise) and by tract op.
    #[arg(long)]
    profile: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

const WARMUP: usize = 5;

struct Timings {
    sorted_ms: Vec<f64>,
}

impl Timings {
    fn new(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self { sorted_ms: v }
    }
    fn mean(&self) -> f64 {
        self.sorted_ms.iter().sum::<f64>() / self.sorted_ms.len().max(1) as f64
    }
    fn p(&self, percentile: f64) -> f64 {
        percentile_ms(&self.sorted_ms, percentile)
    }
    fn json(&self) -> serde_json::Value {
        json!({"mean": round3(self.mean()), "p50": round3(self.p(50.0)), "p90": round3(self.p(90.0)), "p99": round3(self.p(99.0))})
    }
    fn text(&self) -> String {
        format!(
            "mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2} ms",
            self.mean(),
            self.p(50.0),
            self.p(90.0),
            self.p(99.0)
        )
    }
}

/// A deterministic camera-sized test frame with some structure (gradients), so resizing does real work.
fn synthetic_frame() -> RgbImage {
    RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

/// Runs `bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.iters == 0 {
        anyhow::bail!("--iters must be at least 1");
    }
    let roi = args.roi.as_deref().map(parse_roi).transpose()?;
    let mut model = load_model(
        &args.model,
        args.threads,
        args.weights,
        &UnknownArgs::default(),
    )?;
    let load_ms = ms(model.load_time());
    let image = match &args.image {
        Some(path) => model
            .decode_file(path, roi.as_slice())
            .with_context(|| format!("reading {}", path.display()))?,
        None => synthetic_frame(),
    };
    let image = match roi {
        Some(roi) => roi.crop(&image),
        None => image,
    };
    let mut tensor = vec![0f32; model.tensor_len()];
    for _ in 0..WARMUP {
        model.preprocess_into(&image, &mut tensor)?;
        model.run_tensor(&tensor)?;
    }
    let (mut pre, mut inf, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let wall = Instant::now();
    for _ in 0..args.iters {
        let start = Instant::now();
        model.preprocess_into(&image, &mut tensor)?;
        let preprocessed = Instant::now();
        model.run_tensor(&tensor)?;
        let done = Instant::now();
        pre.push(ms(preprocessed - start));
        inf.push(ms(done - preprocessed));
        total.push(ms(done - start));
    }
    let frames_per_s = args.iters as f64 / wall.elapsed().as_secs_f64();
    let profile = if args.profile {
        let mut profile = OpProfile::default();
        for _ in 0..args.iters {
            model.profile_tensor(&tensor, &mut profile)?;
        }
        Some(profile)
    } else {
        None
    };
    let (pre, inf, total) = (Timings::new(pre), Timings::new(inf), Timings::new(total));
    let peak = peak_memory_bytes();
    let mut image_desc = args
        .image
        .as_ref()
        .map_or("synthetic 640x480".to_string(), |p| p.display().to_string());
    if let Some(roi) = roi {
        image_desc.push_str(&format!(
            " (region {roi}: {}x{})",
            image.width(),
            image.height()
        ));
    }
    if args.json {
        let out = json!({
            "type": "bench",
            "model": args.model,
            "image": image_desc,
            "threads": args.threads,
            "weights": format!("{:?}", args.weights).to_lowercase(),
            "iters": args.iters,
            "load_ms": round3(load_ms),
            "total_ms": total.json(),
            "preprocess_ms": pre.json(),
            "inference_ms": inf.json(),
            "frames_per_s": round3(frames_per_s),
            "peak_memory_bytes": peak,
        });
        let mut out = out;
        if let Some(p) = &profile {
            out["profile"] = profile_json(p, pre.p(50.0));
        }
        println!("{out}");
    } else {
        println!(
            "model        {} (loaded in {load_ms:.1} ms)",
            args.model.display()
        );
        println!(
            "image        {image_desc}, {} iterations, {} thread(s), --weights {}",
            args.iters,
            args.threads,
            format!("{:?}", args.weights).to_lowercase()
        );
        println!("preprocess   {}", pre.text());
        println!("inference    {}", inf.text());
        println!("total        {}", total.text());
        println!("throughput   {frames_per_s:.1} frames/s");
        match peak {
            Some(bytes) => println!("peak memory  {:.1} MB (VmHWM)", bytes as f64 / 1e6),
            None => println!("peak memory  unknown (no /proc/self/status)"),
        }
        if let Some(p) = &profile {
            print!("{}", profile_text(p, pre.p(50.0)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The profile by kind (preprocessing first, from the timed runs) and the ops that take the most.
fn profile_text(p: &OpProfile, preprocess_ms: f64) -> String {
    let total = ms(p.total_per_run());
    let mut out = format!(
        "\nwhere the time goes ({} profiled runs; plan {total:.2} ms per run, each node timed):\n  {:>8.2} ms        preprocessing (decode excluded)\n",
        p.runs, preprocess_ms
    );
    for (kind, time, share) in p.by_kind() {
        out.push_str(&format!(
            "  {:>8.2} ms {:>5.1}%  {kind}\n",
            ms(time),
            share * 100.0
        ));
    }
    out.push_str("  by tract op (nodes):\n");
    let mut ops: Vec<_> = p.by_op.iter().collect();
    ops.sort_by_key(|op| std::cmp::Reverse(op.1 .0));
    for (name, (time, nodes)) in ops.into_iter().take(10) {
        out.push_str(&format!(
            "  {:>8.2} ms  {name} ({nodes})\n",
            ms(*time / p.runs.max(1) as u32)
        ));
    }
    out.push_str("  slowest nodes (output shape) [matrix-product kernel]:\n");
    for (node, time) in p.slowest_nodes(SLOWEST_NODES) {
        let kernel = if node.kernel.is_empty() {
            String::new()
        } else {
            format!(" [{}]", node.kernel)
        };
        out.push_str(&format!(
            "  {:>8.2} ms  {} {} ({}){kernel}\n",
            ms(time),
            node.op,
            node.name,
            node.output_shape
        ));
    }
    out
}

/// How many of the slowest nodes `--profile` names: enough to see which layers dominate.
const SLOWEST_NODES: usize = 12;

fn profile_json(p: &OpProfile, preprocess_ms: f64) -> serde_json::Value {
    let runs = p.runs.max(1) as u32;
    json!({
        "runs": p.runs,
        "preprocess_ms": round3(preprocess_ms),
        "plan_ms": round3(ms(p.total_per_run())),
        "by_kind": p.by_kind().into_iter().map(|(kind, t, share)| json!({"kind": kind, "ms": round3(ms(t)), "share": round3(share)})).collect::<Vec<_>>(),
        "by_op": p.by_op.iter().map(|(name, (t, nodes))| json!({"op": name, "ms": round3(ms(*t / runs)), "nodes": nodes})).collect::<Vec<_>>(),
        // Every node, slowest first (the text names the first SLOWEST_NODES): what a script comparing two
        // builds layer by layer needs.
        "nodes": p.slowest_nodes(usize::MAX).into_iter().map(|(node, t)| json!({"node": node.name, "op": node.op, "output_shape": node.output_shape, "kernel": node.kernel, "ms": round3(ms(t))})).collect::<Vec<_>>(),
    })
}
