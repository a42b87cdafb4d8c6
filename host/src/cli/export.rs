//! `lookout export`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use lookout_host::bundle::{export, ExportOptions, ExportPrecision, ExportReport};

/// Arguments of `lookout export`.
///
/// Builds ONE model for the edge: the run's backbone, its pooling and the trained head in a single tract
/// graph, reduced to the chosen precision, then measures it on the run's test images through the same runtime
/// the Pi uses (`lookout-edge`) and stores the figures in the bundle header.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Training run directory (what `lookout train --out` wrote).
    #[arg(long, value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The bundle to write, e.g. `model.lookout`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Precision and the accuracy gate.
    #[command(flatten)]
    pub gate: ExportGateArgs,
    /// Measure on at most this many test images, spread over the split (default: all of them).
    #[arg(long, value_name = "N")]
    pub test_images: Option<usize>,
    /// Also write the float combined model (backbone + head + activation) as ONNX, for other engines; the
    /// class names and preprocessing go into its metadata. Needs a run extracted with an .onnx backbone.
    #[arg(long, value_name = "FILE")]
    pub onnx: Option<PathBuf>,
    /// Print the report as JSON on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// The export flags `lookout export` and `lookout fit` share: the precision and the accuracy gate.
#[derive(Debug, clap::Args)]
pub struct ExportGateArgs {
    /// Numeric precision of the exported model: by default the smallest that passes the accuracy gate (q4,
    /// then f32-q4head, then f32; from f32-q4head when the rejection was fitted on camera-like views, where a
    /// 4-bit backbone rejects less well); `f32` for the float bundle.
    #[arg(long, value_enum, default_value_t = lookout_host::bundle::precision::DEFAULT_PRECISION)]
    pub precision: ExportPrecision,
    /// Largest accepted test-accuracy drop against the float model, in percentage points.
    #[arg(long, value_name = "POINTS", default_value_t = 1.0)]
    pub max_drop: f32,
    /// Write the bundle even when its accuracy drops by more than --max-drop.
    #[arg(long)]
    pub force: bool,
}

/// Runs `lookout export`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = ExportOptions {
        precision: args.gate.precision,
        max_drop_points: args.gate.max_drop,
        force: args.gate.force,
        max_test_images: args.test_images,
        progress: !args.json,
        onnx: args.onnx,
        ..ExportOptions::default()
    };
    let report = export(&args.run, &args.out, &options)
        .with_context(|| format!("exporting {} as {}", args.run.display(), args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable end-of-export summary.
pub fn summary(r: &ExportReport) -> String {
    let mut out = format!(
        "wrote {} ({} precision, {:.1} MB)\n  model:       {}\n  accuracy:    {:.2}% on {} test images (float model: {:.2}%)\n  \
         agreement:   {:.2}% same label as the float model, probabilities within {:.2e}\n  load time:   {:.0} ms, \
         {:.1} ms per image on this machine\n",
        r.path.display(),
        r.precision,
        r.file_size as f64 / 1e6,
        r.head,
        r.accuracy * 100.0,
        r.test_images,
        r.float_accuracy * 100.0,
        r.agreement * 100.0,
        r.max_probability_diff,
        r.load_ms,
        r.mean_inference_ms,
    );
    if let Some(sample) = &r.gate_sample {
        out.push_str(&format!(
            "  sample:      the gate measured {} of {} test images (all of them: ~{:.0} min on this CPU, where \
             {} is emulated or slow); accuracy {:.1}–{:.1}% at 95% confidence; --test-images {} to measure all\n",
            r.test_images,
            sample.of,
            sample.whole_split_estimate_s / 60.0,
            r.precision,
            sample.accuracy_low * 100.0,
            sample.accuracy_high * 100.0,
            sample.of
        ));
    }
    match r.unknown_rate {
        Some(rate) => out.push_str(&format!(
            "  unknown:     {:.1}% of the test photos are called none of the classes by the bundle\n",
            rate * 100.0
        )),
        None => out.push_str("  unknown:     no rejection (the run has none): every image gets a class\n"),
    }
    if let Some((path, size)) = &r.onnx {
        out.push_str(&format!(
            "  onnx:        {} ({:.1} MB, float; input = the preprocessed tensor, see its metadata)\n",
            path.display(),
            *size as f64 / 1e6
        ));
    }
    out.push_str(&weights_lines(r));
    if r.forced {
        out.push_str(
            "  warning:     the accuracy drop is over --max-drop; written because of --force\n",
        );
    }
    out.push_str(&format!(
        "next: lookout-edge classify --model {} PHOTO.jpg\n",
        r.path.display()
    ));
    out
}

/// What the block quantization did, and what `auto` or the sensitivity check tried: shared by `export` and
/// `fit`.
pub fn weights_lines(r: &ExportReport) -> String {
    let mut out = String::new();
    if let Some(w) = &r.weights {
        out.push_str(&format!(
            "  weights:     {} matrices in Q4_0 ({:.2} M weights); {} float because their inputs are far from a \
             multiple of 32 ({:.2} M); depthwise and stem convolutions and biases float\n",
            w.quantized_layers,
            w.quantized_weights as f64 / 1e6,
            w.partial_block_layers,
            w.partial_block_weights as f64 / 1e6,
        ));
        for kept in &w.kept_float {
            out.push_str(&format!(
                "  kept float:  {} (alone in Q4_0 it moves the logits by {:.1}%)\n",
                kept.name,
                kept.relative_error * 100.0
            ));
        }
    }
    // What the accuracy gate tried and what each try cost (the float bundle alone needs no word).
    if r.attempts.len() > 1
        || r.attempts
            .iter()
            .any(|a| a.precision != ExportPrecision::F32)
    {
        out.push_str(
            "  gate:        tried, accuracy through the edge runtime against the float model:\n",
        );
        for s in &r.skipped {
            out.push_str(&format!("    {}: not tried: {}\n", s.precision, s.reason));
        }
        for a in &r.attempts {
            let kept = a
                .kept_float_phrase()
                .map_or(String::new(), |phrase| format!(", {phrase}"));
            out.push_str(&format!(
                "    {}{kept}: {:.2}% ({:+.2} points), {:.1} MB, {:.1} s\n",
                a.precision,
                a.accuracy * 100.0,
                -a.drop_points,
                a.model_size as f64 / 1e6,
                a.seconds
            ));
        }
    }
    out
}
