//! `lookout-edge info`: what a bundle holds.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use lookout_shared::bundle::Bundle;
use serde_json::json;

/// Arguments of `info`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .lookout bundle.
    #[arg(long, short)]
    model: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Labels printed in text mode before "… and N more".
const LABELS_SHOWN: usize = 20;

/// Runs `info`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file_size = std::fs::metadata(&args.model)
        .with_context(|| format!("reading {}", args.model.display()))?
        .len();
    // Streamed: the checksum is verified without holding the model in memory.
    let bundle = Bundle::open_file(&args.model)
        .with_context(|| format!("reading {}", args.model.display()))?;
    let h = &bundle.header;
    if args.json {
        let out = json!({
            "path": args.model,
            "file_size": file_size,
            "model_size": bundle.model_len(),
            "header": h,
        });
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "bundle      {} ({})",
        args.model.display(),
        human_bytes(file_size)
    );
    println!("lookout     {}", h.lookout_version);
    println!(
        "labels      {}: {}",
        h.labels.len(),
        shown_labels(&h.labels)
    );
    if let Some(label) = h.background_label().and_then(|i| h.label(i)) {
        println!("background  {label} (the empty scene: answered \"nothing\", never an event)");
    }
    println!(
        "output      {:?}{}",
        h.output,
        match h.output {
            lookout_shared::bundle::OutputKind::Sigmoid => format!(" (threshold {})", h.threshold),
            lookout_shared::bundle::OutputKind::Softmax => String::new(),
        }
    );
    let cut = h
        .backbone
        .cut
        .as_deref()
        .map(|c| format!(", cut at {c}"))
        .unwrap_or_default();
    let sha = h.backbone.sha256.get(..12).unwrap_or(&h.backbone.sha256);
    println!("backbone    {} (sha256 {sha}…{cut})", h.backbone.name);
    println!(
        "head        {}: {} ({} parameters)",
        h.head.kind, h.head.description, h.head.parameters
    );
    println!("precision   {:?}", h.precision);
    println!(
        "input       {:?}, preprocessing {}",
        h.input_shape, h.preprocess.name
    );
    println!(
        "model       {:?}, {}",
        h.model_format,
        human_bytes(bundle.model_len())
    );
    match &h.metrics {
        Some(m) => {
            println!(
                "metrics     accuracy {:.2}% (float {:.2}%, agreement {:.2}%, max prob diff {:.4}) on {} test images",
                m.accuracy * 100.0,
                m.float_accuracy * 100.0,
                m.agreement * 100.0,
                m.max_probability_diff,
                m.test_images
            );
            println!("            load {:.0} ms at export", m.load_ms);
        }
        None => println!("metrics     none recorded"),
    }
    match &h.unknown {
        Some(u) => println!(
            "unknown     {} over {} training images; unknown above {:.4} (calibrated to keep {:.0}% of held-out images)",
            u.method,
            u.bank_size,
            u.threshold,
            u.keep * 100.0
        ),
        None => println!(
            "unknown     no rejection: every image gets one of the labels (export with lookout 0.2+ to add it)"
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn shown_labels(labels: &[String]) -> String {
    let mut s = labels
        .iter()
        .take(LABELS_SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if labels.len() > LABELS_SHOWN {
        s.push_str(&format!(", … and {} more", labels.len() - LABELS_SHOWN));
    }
    s
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MB", n as f64 / 1e6)
    } else if n >= 1 << 10 {
        format!("{:.1} kB", n as f64 / 1e3)
    } else {
        format!("{n} B")
    }
}
