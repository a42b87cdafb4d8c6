//! `lookout-edge watch`: argument checks and wiring. The loop itself (capture thread, newest-frame-wins slot,
//! smoothing, events) is `lookout_edge::pipeline`; every output and action is one of its sinks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use lookout_edge::actions::ExecAction;
use lookout_edge::gpio::LabelPin;
use lookout_edge::pipeline::actions::{ExecSink, GpioSink, SerialSink, Status};
use lookout_edge::pipeline::motion::MotionOptions;
use lookout_edge::pipeline::mqtt::{FleetReceiving, MqttSink, MqttTarget};
use lookout_edge::pipeline::output::OutputSink;
use lookout_edge::pipeline::preview::{PreviewOptions, PreviewSink};
use lookout_edge::pipeline::reload::{LabelNeeds, ModelInfo, ReloadOptions, ReloadRequests};
use lookout_edge::pipeline::save::{SaveOptions, SaveRule, SaveSink};
use lookout_edge::pipeline::{Pipeline, Sink, WatchOptions};
use lookout_edge::source::{open_source, FrameSource, Looping, SourceOptions, SourceSpec};
use lookout_fleet::protocol::fleet_of;
use lookout_fleet::FleetError;

mod setup;

use super::common::{load_model, runtime_options, UnknownArgs, WeightsArg};
use super::pins::{open_gpio, open_serial};
use super::EXIT_SOME_FAILED;
use setup::{handle_signals, label_rule, mqtt_config, print_mqtt_summary, regions};

/// Arguments of `watch`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Sources:\n  v4l2:/dev/video0   a V4L2 camera (MJPEG or YUYV; retried with backoff while missing)\n  \
    mjpeg:-            concatenated JPEGs on stdin, e.g. rpicam-vid -t 0 --codec mjpeg -o - | lookout-edge watch …\n  \
    mjpeg:FILE         concatenated JPEGs in a file or named pipe\n  \
    dir:PATH           the images of a folder, in sorted order\n\n\
    Zones: --zone NAME=x,y,w,h (repeatable) classifies each named region of every frame on its own, with its own\n\
    smoothing and events; output lines carry the zone, MQTT topics go one level down (BASE/NAME/...), --exec gets\n\
    LOOKOUT_ZONE. --when LABEL acts on the label in any zone, --when LABEL@NAME only in that zone. Fractions of the\n\
    frame: x,y the top-left corner, w,h the size (--preview lets you drag a zone out and shows its flag).\n\n\
    Serial messages are postcard-encoded Detection structs, COBS-framed, each ending with a 0x00 byte: one per event\n\
    (score = smoothed score), or one per frame with --serial-frames (score = the frame's own score)."
)]
pub struct Args {
    /// The .lookout bundle. Replaced on disk (a rename, as scp and rsync leave it) or on SIGHUP, it is loaded
    /// again, checked and self-tested on recent frames, and switched in between two frames without a restart.
    #[arg(long, short)]
    model: PathBuf,
    /// Keep the bundle loaded at start: ignore SIGHUP and a replaced bundle file.
    #[arg(long)]
    no_reload: bool,
    /// Run the model only when something moved (a Pi watching a still scene rests): AREA is the share of the
    /// frame (or of each zone) that must change, 0.01 when not given; a change of the whole scene's brightness
    /// (a lamp, clouds) is not motion. A still frame keeps the last answer, so events and MQTT go on as before.
    #[arg(long, value_name = "AREA", num_args = 0..=1, default_missing_value = "0.01")]
    motion: Option<f32>,
    /// With --motion: run the model at least every SECONDS anyway, so a still scene's state is refreshed.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        requires = "motion"
    )]
    heartbeat: f64,
    /// Where frames come from: v4l2:/dev/videoN, rtsp://[USER@]CAMERA/PATH (an IP camera's RTSP stream, read
    /// through ffmpeg), http(s)://[USER@]CAMERA/PATH (an MJPEG stream or snapshot URL), mjpeg:-, mjpeg:FILE or
    /// dir:PATH.
    #[arg(long)]
    source: String,
    /// A file whose first line is the IP camera's password (or the LOOKOUT_SOURCE_PASSWORD environment
    /// variable); the user goes in the address.
    #[arg(long, value_name = "FILE")]
    source_password_file: Option<PathBuf>,
    /// Frame rate: paces file and folder sources (0 = as fast as they can be read), is asked of cameras.
    #[arg(long, default_value_t = 10.0)]
    fps: f32,
    /// Replay a file or folder source from the start when it ends.
    #[arg(long = "loop")]
    looping: bool,
    /// Never drop frames: the source waits for the model (for recorded files; not for live cameras).
    #[arg(long)]
    no_drop: bool,
    /// Print JSON lines ("type": "frame", "event", "clear", "error", "summary") instead of text.
    #[arg(long)]
    json: bool,
    /// Smooth over the last N frames (mean probability per label); events wait for a full window.
    #[arg(long, default_value_t = 5, value_name = "N")]
    smooth: usize,
    /// An event fires when a label's smoothed score rises to this.
    #[arg(long, default_value_t = 0.8)]
    threshold: f32,
    /// The label re-arms when its smoothed score falls below threshold minus this.
    #[arg(long, default_value_t = 0.1)]
    hysteresis: f32,
    /// Label that drives --gpio and --exec (default for --exec: any label); LABEL@ZONE: only in that zone.
    #[arg(long, value_name = "LABEL[@ZONE]")]
    when: Option<String>,
    /// Classify only this region of each frame, x,y,w,h in fractions of the frame (e.g. 0.25,0.5,0.5,0.5).
    #[arg(long, value_name = "x,y,w,h", conflicts_with = "zones")]
    roi: Option<String>,
    /// A named region classified on its own at every frame, with its own events (repeat for more zones).
    /// NAME: letters, digits, - and _.
    #[arg(long = "zone", value_name = "NAME=x,y,w,h")]
    zones: Vec<String>,
    /// GPIO line set high while the --when label is active: CHIP:LINE, CHIP a number or name (0, gpiochip0 = /dev/gpiochip0) or a path.
    #[arg(long, value_name = "CHIP:LINE")]
    gpio: Option<String>,
    /// Serial device for Detection messages, e.g. /dev/ttyUSB0 or /dev/serial0.
    #[arg(long, value_name = "DEV")]
    serial: Option<PathBuf>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Send a Detection for every frame, not only for events.
    #[arg(long)]
    serial_frames: bool,
    /// Shell command run on each event, with LOOKOUT_LABEL, LOOKOUT_SCORE, LOOKOUT_FRAME (and LOOKOUT_ZONE with
    /// zones) in its environment.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Run --exec at most once per this many seconds (it never blocks the loop).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    exec_interval: f64,
    /// Threads for tract's matrix kernels (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How a q4 bundle's 4-bit weights are held: fast (convolution weights as f32 at load) or compact
    /// (least memory, slower).
    #[arg(long, value_enum, default_value_t = WeightsArg::Fast)]
    weights: WeightsArg,
    /// Stop after classifying this many frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
    /// Also report when the scene becomes unknown (none of the labels) and known again, as events.
    #[arg(long)]
    on_unknown: bool,
    /// Save the frames worth labelling here, as received, in DIR/<predicted label>/ with a JSON sidecar each:
    /// an ImageFolder to correct and fit again.
    #[arg(long, value_name = "DIR")]
    capture: Option<PathBuf>,
    /// Which frames --capture saves: uncertain[:BOUND] (top score below BOUND, default 0.7), unknown, event,
    /// every:N.
    #[arg(
        long,
        value_name = "RULE",
        default_value = "uncertain",
        requires = "capture"
    )]
    capture_when: SaveRule,
    /// Disk budget of --capture in MB: the oldest saved frames are removed first.
    #[arg(long, value_name = "MB", default_value_t = 500.0, requires = "capture")]
    capture_max_mb: f64,
    /// Save at most one frame per this many seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1.0,
        requires = "capture"
    )]
    capture_interval: f64,
    /// Serve a live page (frame, label, scores, fps, events) at this address, e.g. 127.0.0.1:8080. Loopback
    /// needs nothing; any other address needs the token (printed at start, or --preview-token).
    #[arg(long, value_name = "ADDR:PORT")]
    preview: Option<std::net::SocketAddr>,
    /// The token a non-loopback --preview asks for (default: a random one, printed at start).
    #[arg(long, value_name = "TOKEN", requires = "preview")]
    preview_token: Option<String>,
    /// Publish events to an MQTT broker: mqtt://[user@]host[:port]/BASE/TOPIC (mqtts:// for TLS). Topics:
    /// BASE/event (JSON, QoS 1, queued through outages), BASE/label/<label> (ON/OFF, retained),
    /// BASE/availability (online/offline, retained, the last will). With --zone, all but availability are per
    /// zone: BASE/ZONE/event, BASE/ZONE/label/<label>, ….
    #[arg(long, value_name = "URL")]
    mqtt: Option<MqttTarget>,
    /// Announce each label (per zone, with --zone; never the background label) to Home Assistant as a
    /// binary_sensor, under this discovery prefix.
    #[arg(
        long,
        value_name = "PREFIX",
        requires = "mqtt",
        num_args = 0..=1,
        default_missing_value = "homeassistant"
    )]
    mqtt_discovery: Option<String>,
    /// Also publish every frame's label and scores on BASE/state (JSON, QoS 0).
    #[arg(long, requires = "mqtt")]
    mqtt_frames: bool,
    /// The MQTT user name (or in the address: mqtt://user@host/...).
    #[arg(long, value_name = "USER", requires = "mqtt")]
    mqtt_username: Option<String>,
    /// A file whose first line is the MQTT password (or set LOOKOUT_MQTT_PASSWORD). Never on the command
    /// line: `ps` would show it.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    mqtt_password_file: Option<PathBuf>,
    /// PEM certificate(s) to trust for mqtts:// (a home broker's own CA); default: the system's.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    mqtt_ca: Option<PathBuf>,
    /// The MQTT client id (default: lookout-<process id>-<host name>).
    #[arg(long, value_name = "ID", requires = "mqtt")]
    mqtt_client_id: Option<String>,
    /// Events held while the broker is unreachable; beyond this the oldest are dropped (and counted).
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "mqtt")]
    mqtt_queue: usize,
    /// At the end of the run, wait this long for queued events to reach the broker.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, requires = "mqtt")]
    mqtt_flush_timeout: f64,
    #[command(flatten)]
    unknown: UnknownArgs,
}

/// Runs `watch`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec: SourceSpec = args.source.parse()?;
    if !(args.threshold > 0.0 && args.threshold <= 1.0) {
        bail!("--threshold {} must be in (0, 1]", args.threshold);
    }
    if args.fps < 0.0 || !args.fps.is_finite() {
        bail!("--fps {} must be 0 or positive", args.fps);
    }
    let regions = regions(&args)?;
    let motion = match args.motion {
        Some(area) if !(area > 0.0 && area < 1.0) => {
            bail!("--motion {area}: the share of the frame that must change is above 0 and below 1, e.g. 0.01")
        }
        Some(area) => {
            if !(args.heartbeat > 0.0 && args.heartbeat.is_finite()) {
                bail!(
                    "--heartbeat {} must be a number of seconds above 0",
                    args.heartbeat
                );
            }
            Some(MotionOptions {
                area,
                heartbeat: Duration::from_secs_f64(args.heartbeat),
                // What left the scene must be seen: keep running for a smoothing window after motion stops.
                hangover: u32::try_from(args.smooth).unwrap_or(u32::MAX),
            })
        }
        None => None,
    };
    let mut model = load_model(&args.model, args.threads, args.weights, &args.unknown)?;
    // Which model saved a frame or sent an event: the bundle's own checksum (sinks hear of a new one).
    let model_info = ModelInfo::of(&args.model, &model)
        .with_context(|| format!("reading the checksum of {}", args.model.display()))?;
    let model_sha256 = model_info.sha256.clone();
    let labels = model.labels().to_vec();
    let background = model.background_label();
    let when = match &args.when {
        Some(text) => Some(label_rule(text, &labels, background, &regions)?),
        None => None,
    };
    let status: Status = Arc::new(|line: &str| eprintln!("{line}"));
    // Bundles received over MQTT, for the reload thread.
    let reload_requests: ReloadRequests = Arc::default();
    let mut gpio = match (&args.gpio, &when) {
        (Some(_), None) => bail!("--gpio needs --when LABEL: the label that switches the line on"),
        (Some(spec), Some(rule)) => Some(GpioSink::new(
            LabelPin::new(open_gpio(spec)?, rule.label)
                .map_err(|e| anyhow::anyhow!("setting GPIO {spec} low: {e:?}"))?,
            rule.clone(),
            Arc::clone(&status),
        )),
        (None, _) => None,
    };
    let mut serial = match &args.serial {
        Some(path) => Some(SerialSink::new(
            open_serial(path, args.baud)?,
            args.serial_frames,
            Arc::clone(&status),
        )),
        None => None,
    };
    let mut exec = args.exec.clone().map(|cmd| {
        ExecSink::new(
            ExecAction::new(cmd, Duration::from_secs_f64(args.exec_interval.max(0.0))),
            when.clone(),
            Arc::clone(&status),
        )
    });
    let (mut saver, save_counters) = match &args.capture {
        Some(dir) => {
            let options = SaveOptions {
                dir: dir.clone(),
                rule: args.capture_when,
                max_bytes: (args.capture_max_mb.max(0.0) * 1e6) as u64,
                min_interval: Duration::from_secs_f64(args.capture_interval.max(0.0)),
                model_sha256: model_sha256.clone(),
            };
            let (sink, counters) = SaveSink::new(options).with_context(|| {
                format!("--capture {}: cannot create the folder", dir.display())
            })?;
            (Some(sink), Some(counters))
        }
        None => (None, None),
    };
    let mut preview = match args.preview {
        Some(addr) => {
            let options = PreviewOptions {
                labels: labels.clone(),
                background,
                smooth: args.smooth,
                regions: regions.clone(),
            };
            let (sink, url) = PreviewSink::start(addr, args.preview_token.clone(), options)?;
            eprintln!("preview: {url}");
            Some(sink)
        }
        None => None,
    };
    let mut output = OutputSink::new(args.json, serial.as_ref().map(SerialSink::sent_counter));
    let (mut mqtt, mqtt_counts) = match &args.mqtt {
        Some(target) => {
            let mut config =
                mqtt_config(&args, target, &labels, &model_sha256, Arc::clone(&status))?;
            config.background = background;
            config.zones = regions.names();
            if !args.no_reload {
                // A camera at FLEET/NAME takes the bundles published to FLEET (lookout publish).
                match fleet_of(&config.target.base_topic) {
                    Ok((fleet, camera)) => {
                        let mut incoming = args.model.clone().into_os_string();
                        incoming.push(".incoming");
                        config.fleet = Some(FleetReceiving {
                            fleet: fleet.to_string(),
                            camera: camera.to_string(),
                            incoming: incoming.into(),
                            requests: reload_requests.clone(),
                        });
                    }
                    // One topic level: a camera of no fleet, which is fine.
                    Err(FleetError::NoFleet(_)) => {}
                    Err(reserved) => return Err(reserved.into()),
                }
            }
            let (sink, counts) = MqttSink::start(config, Duration::from_secs(3))?;
            (Some(sink), Some(counts))
        }
        None => (None, None),
    };

    let mut pipeline = Pipeline::new(WatchOptions {
        fps: args.fps,
        no_drop: args.no_drop,
        smooth: args.smooth,
        threshold: args.threshold,
        hysteresis: args.hysteresis,
        max_frames: args.max_frames,
        on_unknown: args.on_unknown,
        regions,
        motion,
    });
    let reload_signal = (!args.no_reload).then(|| Arc::new(AtomicBool::new(false)));
    if let Some(signal) = &reload_signal {
        let options = ReloadOptions {
            path: args.model.clone(),
            runtime: runtime_options(args.threads, args.weights, &args.unknown),
            signal: Arc::clone(signal),
            poll: Duration::from_secs(1),
            requests: reload_requests.clone(),
            labels: LabelNeeds {
                named: when.iter().map(|rule| rule.name.clone()).collect(),
                keep_indices: args.serial.is_some(),
            },
        };
        pipeline = pipeline.with_reload(options, model_info);
    }
    let password = lookout_fleet::secret(
        args.source_password_file.as_deref(),
        "LOOKOUT_SOURCE_PASSWORD",
    )
    .with_context(|| {
        let file = args
            .source_password_file
            .as_deref()
            .unwrap_or(Path::new(""));
        format!("--source-password-file {}", file.display())
    })?;
    let source_opts = SourceOptions {
        password,
        fps: (args.fps > 0.0).then_some(args.fps),
        stop: pipeline.stop_flag(),
        status: Arc::clone(&status),
        away: pipeline.camera_away(),
    };
    let source: Box<dyn FrameSource> = if args.looping {
        Box::new(Looping::open(spec.clone(), source_opts)?)
    } else {
        open_source(&spec, &source_opts)?
    };
    handle_signals(pipeline.stop_handle(), reload_signal)?;

    // The GPIO line first, so it is low again before the summary is printed; then the output, so events are
    // printed before the serial message or command they trigger.
    let mut sinks: Vec<&mut dyn Sink> = Vec::new();
    if let Some(gpio) = gpio.as_mut() {
        sinks.push(gpio);
    }
    // The saver before the output: it finishes writing before the summary counts what it saved.
    if let Some(saver) = saver.as_mut() {
        sinks.push(saver);
    }
    if let Some(preview) = preview.as_mut() {
        sinks.push(preview);
    }
    sinks.push(&mut output);
    if let Some(serial) = serial.as_mut() {
        sinks.push(serial);
    }
    if let Some(exec) = exec.as_mut() {
        sinks.push(exec);
    }
    if let Some(mqtt) = mqtt.as_mut() {
        sinks.push(mqtt);
    }
    let outcome = pipeline.run(source, &mut model, &mut sinks)?;
    if let Some(counts) = mqtt_counts.and_then(|c| c.lock().ok().and_then(|c| *c)) {
        print_mqtt_summary(&counts, args.json);
    }
    if let (Some(counters), Some(dir)) = (&save_counters, &args.capture) {
        let line = serde_json::json!({
            "type": "capture",
            "dir": dir,
            "saved": counters.saved.load(std::sync::atomic::Ordering::SeqCst),
            "dropped": counters.dropped.load(std::sync::atomic::Ordering::SeqCst),
            "removed": counters.removed.load(std::sync::atomic::Ordering::SeqCst),
        });
        if args.json {
            println!("{line}");
        } else {
            eprintln!(
                "captured {} frames to {} ({} not saved: queue full or write failed; {} removed for the budget)",
                line["saved"],
                dir.display(),
                line["dropped"],
                line["removed"]
            );
        }
    }
    if let Some(e) = outcome.source_error {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(EXIT_SOME_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
