//! `lookout publish` and `lookout fleet`: a bundle to every camera of a fleet over MQTT, and what each runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use lookout_fleet::publish::{list, publish, CameraRow, Outcome};
use lookout_fleet::{Broker, MqttTarget};
use serde_json::Value;

/// The broker and its credentials, as `lookout-edge watch` takes them.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// The fleet: `mqtt://[user@]host[:port]/FLEET` (mqtts:// for TLS). A camera watching with
    /// `--mqtt mqtt://host/FLEET/NAME` is camera NAME of it.
    #[arg(long, value_name = "URL")]
    mqtt: MqttTarget,
    /// The MQTT user name (or in the address: mqtt://user@host/...).
    #[arg(long, value_name = "USER")]
    mqtt_username: Option<String>,
    /// A file whose first line is the MQTT password (or the LOOKOUT_MQTT_PASSWORD environment variable).
    #[arg(long, value_name = "FILE")]
    mqtt_password_file: Option<PathBuf>,
    /// PEM certificate(s) to trust for mqtts:// (a home broker's own CA); default: the system's.
    #[arg(long, value_name = "FILE")]
    mqtt_ca: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl BrokerArgs {
    fn broker(&self) -> anyhow::Result<Broker> {
        Ok(Broker::resolve(
            &self.mqtt,
            self.mqtt_username.as_deref(),
            self.mqtt_password_file.as_deref(),
            self.mqtt_ca.as_deref(),
        )?)
    }
}

/// Arguments of `lookout publish`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  lookout publish --mqtt mqtt://broker.local/home porch.lookout --cameras porch,garage\n\n\
    The bundle goes through the broker as retained messages (a camera that is offline gets it when it is back);\n\
    each camera checks the SHA-256 announced here, self-tests the bundle on its recent frames and switches without\n\
    dropping its camera, or refuses it and keeps the one it runs. Who may publish is the broker's to say: see\n\
    docs/fleet.md for a mosquitto ACL."
)]
pub struct PublishArgs {
    /// The bundle to send.
    bundle: PathBuf,
    #[command(flatten)]
    broker: BrokerArgs,
    /// Only these cameras (comma-separated names); default: every camera of the fleet.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    cameras: Option<Vec<String>>,
    /// Seconds to wait for the cameras' answers.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    wait: f64,
}

/// Arguments of `lookout fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    #[command(flatten)]
    broker: BrokerArgs,
}

/// Runs `lookout publish`: 0 when every camera switched (or ran it already), 1 otherwise.
pub fn run_publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    if !(args.wait >= 0.0 && args.wait.is_finite()) {
        bail!("--wait {} must be 0 or more seconds", args.wait);
    }
    let bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    // Never send what a camera would refuse as unreadable: check it here first.
    lookout_shared::bundle::Bundle::from_bytes(&bytes)
        .with_context(|| format!("{} is not a readable bundle", args.bundle.display()))?;
    let broker = args.broker.broker()?;
    let rows = publish(
        &broker,
        &bytes,
        args.cameras.clone(),
        Duration::from_secs_f64(args.wait),
        |line| eprintln!("{line}"),
    )?;
    if args.broker.json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        print_rows(&rows);
    }
    let all = rows
        .iter()
        .all(|r| matches!(r.outcome, Outcome::Switched | Outcome::AlreadyRunning));
    if rows.is_empty() {
        eprintln!(
            "no camera of {} has reported yet: the bundle is retained for cameras that come online",
            broker.target.base_topic
        );
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn short(sha: Option<&str>) -> &str {
    sha.map_or("-", |s| &s[..s.len().min(12)])
}

fn print_rows(rows: &[CameraRow]) {
    println!(
        "{:<16} {:<12} {:<12} {:<15} detail",
        "camera", "before", "after", "status"
    );
    for r in rows {
        let outcome = serde_json::to_value(r.outcome).unwrap_or(Value::Null);
        println!(
            "{:<16} {:<12} {:<12} {:<15} {}",
            r.camera,
            short(r.before.as_deref()),
            short(r.after.as_deref()),
            outcome.as_str().unwrap_or("?"),
            r.detail
        );
    }
}

/// Runs `lookout fleet`: what every camera of the fleet runs, from their retained reports.
pub fn run_fleet(args: FleetArgs) -> anyhow::Result<ExitCode> {
    let reports = list(&args.broker.broker()?)?;
    if args.broker.json {
        println!("{}", serde_json::to_string(&reports)?);
        return Ok(ExitCode::SUCCESS);
    }
    if reports.is_empty() {
        eprintln!(
            "no camera of {} has reported what it runs",
            args.broker.mqtt.base_topic
        );
    }
    println!(
        "{:<16} {:<12} {:<10} {:<9} labels",
        "camera", "bundle", "precision", "last"
    );
    for (camera, r) in &reports {
        let labels: Vec<&str> = r["labels"]
            .as_array()
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{camera:<16} {:<12} {:<10} {:<9} {}",
            short(r["sha256"].as_str()),
            r["precision"].as_str().unwrap_or("?"),
            r["event"].as_str().unwrap_or("?"),
            labels.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
