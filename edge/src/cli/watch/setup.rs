//! What `watch` sets up from its arguments besides the pipeline itself: the regions, the `--when` rule, the
//! MQTT settings and their summary, the signal handlers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use lookout_edge::pipeline::actions::{LabelRule, Status};
use lookout_edge::pipeline::mqtt::{MqttConfig, MqttCounts, MqttTarget};
use lookout_edge::pipeline::{Regions, StopHandle, Zone};

use super::super::common::parse_roi;
use super::Args;

/// `--roi` or the `--zone`s, checked (one line each when they are wrong).
pub(super) fn regions(args: &Args) -> anyhow::Result<Regions> {
    if let Some(roi) = &args.roi {
        return Ok(Regions::Frame(parse_roi(roi)?));
    }
    let zones = args
        .zones
        .iter()
        .map(|text| text.parse::<Zone>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Regions::zones(zones)?)
}

/// `--when LABEL[@ZONE]`: a label of the model (not the empty scene, which never fires), in a zone given with
/// `--zone` or in any. A label that itself holds `@` is taken whole first.
pub(super) fn label_rule(
    text: &str,
    labels: &[String],
    background: Option<usize>,
    regions: &Regions,
) -> anyhow::Result<LabelRule> {
    let find = |name: &str| labels.iter().position(|l| l == name);
    let found = find(text).map(|label| (label, None)).or_else(|| {
        text.rsplit_once('@')
            .and_then(|(name, zone)| find(name).map(|label| (label, Some(zone))))
    });
    let Some((label, zone)) = found else {
        let name = text.rsplit_once('@').map_or(text, |(name, _)| name);
        let actionable: Vec<&str> = labels
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != background)
            .map(|(_, l)| l.as_str())
            .collect();
        bail!(
            "--when {name:?} is not a label of this model; its labels are: {}",
            actionable.join(", ")
        )
    };
    if Some(label) == background {
        bail!(
            "--when {:?} is the model's background label (the empty scene): it is \"nothing\" and never fires; name a label that can act",
            labels[label]
        );
    }
    if let Some(zone) = zone {
        let names = regions.names();
        if !names.iter().any(|n| n == zone) {
            bail!(
                "--when {text:?}: there is no zone {zone:?}; {}",
                if names.is_empty() {
                    "give it with --zone NAME=x,y,w,h".to_string()
                } else {
                    format!("the zones are: {}", names.join(", "))
                }
            );
        }
    }
    Ok(LabelRule {
        name: labels[label].clone(),
        label,
        zone: zone.map(str::to_string),
    })
}

/// `--mqtt` and its options, with the password read from its file or the environment.
pub(super) fn mqtt_config(
    args: &Args,
    target: &MqttTarget,
    labels: &[String],
    model_sha256: &str,
    status: Status,
) -> anyhow::Result<MqttConfig> {
    let broker = lookout_fleet::Broker::resolve(
        target,
        args.mqtt_username.as_deref(),
        args.mqtt_password_file.as_deref(),
        args.mqtt_ca.as_deref(),
    )?;
    let client_id = args.mqtt_client_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let id = format!("lookout-{}-{}", std::process::id(), host.trim());
        // MQTT 3.1.1 guarantees 23 characters to every broker.
        id.chars().take(23).collect()
    });
    if !(args.mqtt_flush_timeout >= 0.0 && args.mqtt_flush_timeout.is_finite()) {
        bail!(
            "--mqtt-flush-timeout {} must be 0 or more seconds",
            args.mqtt_flush_timeout
        );
    }
    Ok(MqttConfig {
        target: broker.target,
        password: broker.password,
        ca_pem: broker.ca_pem,
        client_id,
        discovery_prefix: args.mqtt_discovery.clone(),
        frames: args.mqtt_frames,
        on_unknown: args.on_unknown,
        queue: args.mqtt_queue,
        flush_timeout: Duration::from_secs_f64(args.mqtt_flush_timeout),
        labels: labels.to_vec(),
        background: None,
        zones: Vec::new(),
        model_sha256: model_sha256.to_string(),
        fleet: None,
        status,
    })
}

pub(super) fn print_mqtt_summary(c: &MqttCounts, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"type": "mqtt", "delivered": c.delivered, "dropped": c.dropped,
                "queued_offline": c.queued_offline, "undelivered": c.undelivered, "outages": c.outages, "frames": c.frames})
        );
    } else {
        eprintln!(
            "mqtt: {} events delivered ({} while the broker was away), {} dropped (queue full), {} undelivered at the end; {} outages",
            c.delivered, c.queued_offline, c.dropped, c.undelivered, c.outages
        );
    }
}

/// Ctrl-C and SIGTERM end the run (the loop finishes its frame, then the summary); SIGHUP asks for the bundle
/// again (`reload`), or ends the run too with `--no-reload`, as a hang-up does.
pub(super) fn handle_signals(
    stop: StopHandle,
    reload: Option<Arc<AtomicBool>>,
) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the Ctrl-C / SIGTERM / SIGHUP handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match (&reload, signal) {
                    (Some(reload), SIGHUP) => reload.store(true, Ordering::SeqCst),
                    _ => stop.stop(),
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}
