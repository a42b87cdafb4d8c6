//! Two plans of one bundle in one process, run in turn frame by frame: the one `lookout_runtime` makes, and
//! the one it makes with a switch set to `off` while it loads (`LOOKOUT_PLAN_REWRITES`, tract's own plan, by
//! default; `LOOKOUT_K_INNER_PACK`, tract's packing of channel-last activations, for example; several switches
//! separated by commas are all set). Pairs of single
//! runs a few milliseconds apart see the same machine, which separate processes on a shared machine do not;
//! prints the median of each plan's times and of the pairs' ratios.
//!
//! ```text
//! cargo run --release -p lookout-runtime --example plan_ab -- MODEL.lookout [PAIRS] [SWITCH[,SWITCH...]]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use lookout_runtime::plan::REWRITES_SWITCH;
use lookout_runtime::{Model, RuntimeOptions};

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: plan_ab MODEL.lookout [PAIRS]"))?,
    );
    let pairs: usize = args.next().map(|p| p.parse()).transpose()?.unwrap_or(300);
    let switch = args.next().unwrap_or_else(|| REWRITES_SWITCH.to_string());
    let options = RuntimeOptions::default();
    let mut ours = Model::load(&path, &options)?;
    // SAFETY: one thread (the options' default), so no other thread reads the environment while it is set.
    for name in switch.split(',') {
        unsafe { std::env::set_var(name, "off") };
    }
    let tracts = Model::load(&path, &options);
    for name in switch.split(',') {
        unsafe { std::env::remove_var(name) };
    }
    let mut tracts = tracts?;
    let input: Vec<f32> = (0..ours.tensor_len())
        .map(|i| ((i * 7919) % 255) as f32 / 255.0)
        .collect();
    for _ in 0..10 {
        ours.run_tensor(&input)?;
        tracts.run_tensor(&input)?;
    }
    let (mut a, mut b, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        // Alternate which goes first, so neither always runs on a warmer cache.
        let time = |model: &mut Model| -> anyhow::Result<f64> {
            let start = Instant::now();
            model.run_tensor(&input)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        let (t_ours, t_tracts) = if pair % 2 == 0 {
            let o = time(&mut ours)?;
            (o, time(&mut tracts)?)
        } else {
            let t = time(&mut tracts)?;
            (time(&mut ours)?, t)
        };
        a.push(t_ours);
        b.push(t_tracts);
        ratio.push(t_tracts / t_ours);
    }
    let (mo, mt, mr) = (median(&mut a), median(&mut b), median(&mut ratio));
    let q = |v: &[f64], f: f64| v[((v.len() - 1) as f64 * f) as usize];
    println!(
        "{}: {pairs} pairs; the plan as made {mo:.3} ms, with {switch}=off {mt:.3} ms (medians); off / as made, pair by pair: median {mr:.3} (quartiles {:.3}-{:.3})",
        path.display(),
        q(&ratio, 0.25),
        q(&ratio, 0.75)
    );
    Ok(())
}
