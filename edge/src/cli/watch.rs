//! `lookout-edge watch`: classify a live stream, smooth, fire events, act.
//!
//! A capture thread reads frames into a newest-frame-wins slot; this thread takes the freshest frame, decodes,
//! classifies, smooths and acts. When the model is slower than the source, waiting frames are replaced and
//! counted as dropped, so latency (capture → result) stays bounded instead of growing in a queue.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use lookout_edge::actions::{DetectionWriter, ExecAction};
use lookout_edge::gpio::LabelPin;
use lookout_edge::slot::LatestSlot;
use lookout_edge::smoothing::{EventTrigger, Smoother, Trigger};
use lookout_edge::source::{
    open_source, FrameSource, Looping, RawFrame, SourceOptions, SourceSpec,
};
use lookout_edge::stats::LatencyHistogram;
use lookout_edge::EdgeError;
use lookout_shared::Detection;
use serde_json::json;

use super::common::{load_model, ms, round3};
use super::EXIT_SOME_FAILED;

/// Arguments of `watch`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Sources:\n  v4l2:/dev/video0   a V4L2 camera (MJPEG or YUYV; retried with backoff while missing)\n  \
    mjpeg:-            concatenated JPEGs on stdin, e.g. rpicam-vid -t 0 --codec mjpeg -o - | lookout-edge watch …\n  \
    mjpeg:FILE         concatenated JPEGs in a file or named pipe\n  \
    dir:PATH           the images of a folder, in sorted order\n\n\
    Serial messages are postcard-encoded Detection structs, COBS-framed, each ending with a 0x00 byte: one per event\n\
    (score = smoothed score), or one per frame with --serial-frames (score = the frame's own score)."
)]
pub struct Args {
    /// The .lookout bundle.
    #[arg(long, short)]
    model: PathBuf,
    /// Where frames come from: v4l2:/dev/videoN, mjpeg:-, mjpeg:FILE or dir:PATH.
    #[arg(long)]
    source: String,
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
    /// Label that drives --gpio and --exec (default for --exec: any label).
    #[arg(long, value_name = "LABEL")]
    when: Option<String>,
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
    /// Shell command run on each event, with LOOKOUT_LABEL, LOOKOUT_SCORE, LOOKOUT_FRAME in its environment.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Run --exec at most once per this many seconds (it never blocks the loop).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    exec_interval: f64,
    /// Threads for tract's matrix kernels (0 = all cores).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop after classifying this many frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<u64>,
}

/// A frame with its number and capture time.
struct Frame {
    number: u64,
    captured: Instant,
    raw: RawFrame,
}

/// Everything shared between the capture thread, the inference loop and the signal handler.
struct Shared {
    slot: LatestSlot<Frame>,
    stop: Arc<AtomicBool>,
    captured: AtomicU64,
}

/// Counters for the summary.
#[derive(Default)]
struct Summary {
    classified: u64,
    failed: u64,
    events: u64,
    max_behind: u64,
    max_newer_at_start: u64,
    latency: LatencyHistogram,
}

/// Results per second over the last few results.
struct FpsMeter {
    times: VecDeque<Instant>,
}

impl FpsMeter {
    const WINDOW: usize = 16;
    fn tick(&mut self, now: Instant) -> f64 {
        if self.times.len() == Self::WINDOW {
            self.times.pop_front();
        }
        self.times.push_back(now);
        match (self.times.front(), self.times.len()) {
            (Some(&first), n) if n > 1 && now > first => {
                (n - 1) as f64 / (now - first).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(target_os = "linux")]
type OutputPin = linux_embedded_hal::CdevPin;

#[cfg(target_os = "linux")]
fn open_gpio(spec: &str) -> anyhow::Result<OutputPin> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let (chip, line) = spec.rsplit_once(':').with_context(|| {
        format!("--gpio {spec:?}: expected CHIP:LINE, e.g. 0:17, gpiochip0:17 or /dev/gpiochip0:17")
    })?;
    let line: u32 = line
        .parse()
        .with_context(|| format!("--gpio {spec:?}: LINE must be a number"))?;
    let chip_path = gpio_chip_path(chip);
    let mut chip = Chip::new(&chip_path).with_context(|| {
        format!("opening GPIO chip {chip_path}; check the path and permissions")
    })?;
    let handle = chip
        .get_line(line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, 0, "lookout-edge"))
        .with_context(|| {
            format!("requesting GPIO line {line} of {chip_path} as an output; is it in use?")
        })?;
    linux_embedded_hal::CdevPin::new(handle)
        .with_context(|| format!("GPIO line {line} of {chip_path}"))
}

/// The device of a `--gpio` chip: `0` and `gpiochip0` are `/dev/gpiochip0`; anything with a `/` is a path.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn gpio_chip_path(chip: &str) -> String {
    if chip.chars().all(|c| c.is_ascii_digit()) {
        format!("/dev/gpiochip{chip}")
    } else if chip.contains('/') {
        chip.to_string()
    } else {
        format!("/dev/{chip}")
    }
}

#[cfg(not(target_os = "linux"))]
type OutputPin = embedded_hal_no_gpio::NoPin;

#[cfg(not(target_os = "linux"))]
mod embedded_hal_no_gpio {
    /// Placeholder pin type where gpio-cdev does not exist.
    #[derive(Debug)]
    pub struct NoPin;
    impl embedded_hal::digital::ErrorType for NoPin {
        type Error = core::convert::Infallible;
    }
    impl embedded_hal::digital::OutputPin for NoPin {
        fn set_low(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
        fn set_high(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn open_gpio(_spec: &str) -> anyhow::Result<OutputPin> {
    bail!("--gpio needs Linux's GPIO character devices")
}

fn open_serial(
    path: &std::path::Path,
    baud: u32,
) -> anyhow::Result<Box<dyn serialport::SerialPort>> {
    let name = path.to_string_lossy().into_owned();
    let port = serialport::new(&name, baud)
        .timeout(Duration::from_secs(1))
        .open()
        .with_context(|| format!("opening serial port {name}; check the device and that you may use it (dialout group)"))?;
    Ok(port)
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
    let mut model = load_model(&args.model, args.threads)?;
    let labels = model.labels().to_vec();
    let when = match &args.when {
        Some(name) => Some(labels.iter().position(|l| l == name).with_context(|| {
            format!(
                "--when {name:?} is not a label of this model; its labels are: {}",
                labels.join(", ")
            )
        })?),
        None => None,
    };
    let mut pin = match (&args.gpio, when) {
        (Some(_), None) => bail!("--gpio needs --when LABEL: the label that switches the line on"),
        (Some(spec), Some(label)) => Some(
            LabelPin::new(open_gpio(spec)?, label)
                .map_err(|e| anyhow::anyhow!("setting GPIO {spec} low: {e:?}"))?,
        ),
        (None, _) => None,
    };
    let mut serial = match &args.serial {
        Some(path) => Some(DetectionWriter::new(open_serial(path, args.baud)?)),
        None => None,
    };
    let mut exec = args
        .exec
        .clone()
        .map(|cmd| ExecAction::new(cmd, Duration::from_secs_f64(args.exec_interval.max(0.0))));

    let shared = Arc::new(Shared {
        slot: LatestSlot::new(),
        stop: Arc::new(AtomicBool::new(false)),
        captured: AtomicU64::new(0),
    });
    let status: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|line: &str| eprintln!("{line}"));
    let source_opts = SourceOptions {
        fps: (args.fps > 0.0).then_some(args.fps),
        stop: Arc::clone(&shared.stop),
        status,
    };
    let source: Box<dyn FrameSource> = if args.looping {
        Box::new(Looping::open(spec.clone(), source_opts)?)
    } else {
        open_source(&spec, &source_opts)?
    };
    {
        let shared = Arc::clone(&shared);
        ctrlc::set_handler(move || {
            shared.stop.store(true, Ordering::SeqCst);
            shared.slot.close_now();
        })
        .context("installing the Ctrl-C / SIGTERM handler")?;
    }
    let capture = spawn_capture(source, Arc::clone(&shared), args.fps, args.no_drop)?;

    let started = Instant::now();
    let mut smoother = Smoother::new(args.smooth);
    let mut trigger = EventTrigger::new(labels.len(), args.threshold, args.hysteresis);
    let mut fps_meter = FpsMeter {
        times: VecDeque::new(),
    };
    let mut summary = Summary::default();
    let mut serial_failed = false;

    while let Some(frame) = shared.slot.take() {
        // With newest-frame-wins this is 0 (or 1, racing the capture thread): a queue would make it grow.
        let newer_at_start = shared
            .captured
            .load(Ordering::SeqCst)
            .saturating_sub(frame.number);
        summary.max_newer_at_start = summary.max_newer_at_start.max(newer_at_start);
        let name = frame.raw.name().map(|p| p.display().to_string());
        let result = frame
            .raw
            .decode()
            .and_then(|image| model.classify(&image).map_err(EdgeError::from));
        let prediction = match result {
            Ok(p) => p,
            Err(e) => {
                summary.failed += 1;
                report_frame_error(args.json, frame.number, name.as_deref(), &e);
                continue;
            }
        };
        let now = Instant::now();
        let latency = now - frame.captured;
        let behind = shared
            .captured
            .load(Ordering::SeqCst)
            .saturating_sub(frame.number);
        summary.classified += 1;
        summary.latency.record(latency);
        summary.max_behind = summary.max_behind.max(behind);
        let fps = fps_meter.tick(now);
        let label_name = labels.get(prediction.label).map_or("?", String::as_str);
        if args.json {
            let mut line = json!({"type": "frame", "frame": frame.number, "label": label_name, "label_index": prediction.label,
                "score": prediction.score, "latency_ms": round3(ms(latency)), "fps": round3(fps), "behind": behind, "newer_at_start": newer_at_start});
            if let Some(name) = &name {
                line["path"] = json!(name);
            }
            println!("{line}");
        } else {
            println!(
                "frame {:>6}  {:<20} {:.3}  {:>7.1} ms  {:>5.1} fps",
                frame.number,
                label_name,
                prediction.score,
                ms(latency),
                fps
            );
        }

        let detection = |label: usize, score: f32| Detection {
            frame: frame.number,
            label: u16::try_from(label).unwrap_or(u16::MAX),
            score,
            latency_us: u32::try_from(latency.as_micros()).unwrap_or(u32::MAX),
        };
        if args.serial_frames {
            send_serial(
                &mut serial,
                &detection(prediction.label, prediction.score),
                &mut serial_failed,
            );
        }

        let smoothed = smoother.push(&prediction.probabilities);
        let changes = if smoother.is_full() {
            trigger.update(&smoothed)
        } else {
            Vec::new()
        };
        for change in changes {
            let (kind, label, score) = match change {
                Trigger::Fired { label, score } => ("event", label, score),
                Trigger::Cleared { label, score } => ("clear", label, score),
            };
            let label_name = labels.get(label).map_or("?", String::as_str);
            if args.json {
                println!(
                    "{}",
                    json!({"type": kind, "frame": frame.number, "label": label_name, "label_index": label, "score": score})
                );
            } else {
                println!(
                    "{} {label_name} (smoothed score {score:.3}) at frame {}",
                    kind.to_uppercase(),
                    frame.number
                );
            }
            if kind == "event" {
                summary.events += 1;
                if !args.serial_frames {
                    send_serial(&mut serial, &detection(label, score), &mut serial_failed);
                }
                if let Some(exec) = exec.as_mut().filter(|_| when.is_none_or(|w| w == label)) {
                    if let Err(e) = exec.fire(label_name, score, frame.number) {
                        eprintln!("--exec: cannot start the shell: {e}");
                    }
                }
            }
        }
        if let Some(pin) = pin.as_mut() {
            if let Err(e) = pin.update(|l| trigger.is_active(l)) {
                eprintln!("--gpio: cannot set the line: {e:?}");
            }
        }
        if let Some(exec) = exec.as_mut() {
            exec.reap();
        }
        if args.max_frames.is_some_and(|max| summary.classified >= max) {
            shared.stop.store(true, Ordering::SeqCst);
            shared.slot.close_now();
        }
    }

    if let Some(pin) = pin.take() {
        if let Err(e) = pin.release() {
            eprintln!("--gpio: cannot set the line low: {e:?}");
        }
    }
    // When stopped, the capture thread may be blocked reading a pipe: do not wait for it then.
    let source_error = if shared.stop.load(Ordering::SeqCst) {
        None
    } else {
        capture
            .join()
            .map_err(|_| anyhow::anyhow!("the capture thread panicked"))?
    };
    print_summary(
        &args,
        &shared,
        &summary,
        serial.as_ref().map(DetectionWriter::sent),
        started.elapsed(),
    );
    if let Some(e) = source_error {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(EXIT_SOME_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

fn send_serial(
    serial: &mut Option<DetectionWriter<Box<dyn serialport::SerialPort>>>,
    detection: &Detection,
    failed_before: &mut bool,
) {
    if let Some(writer) = serial.as_mut() {
        match writer.send(detection) {
            Ok(()) => *failed_before = false,
            Err(e) => {
                // One line per run of failures, not one per frame.
                if !*failed_before {
                    eprintln!("--serial: write failed: {e}; will keep trying");
                }
                *failed_before = true;
            }
        }
    }
}

fn report_frame_error(json: bool, frame: u64, name: Option<&str>, e: &EdgeError) {
    if json {
        let mut line = json!({"type": "error", "frame": frame, "error": e.to_string()});
        if let Some(name) = name {
            line["path"] = json!(name);
        }
        println!("{line}");
    } else {
        eprintln!(
            "frame {frame}{}: {e}",
            name.map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }
}

/// Starts the capture thread; it returns the source's error, if the source failed rather than ended.
fn spawn_capture(
    mut source: Box<dyn FrameSource>,
    shared: Arc<Shared>,
    fps: f32,
    no_drop: bool,
) -> anyhow::Result<JoinHandle<Option<EdgeError>>> {
    let pace =
        (source.is_file() && fps > 0.0).then(|| Duration::from_secs_f64(1.0 / f64::from(fps)));
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let mut next_tick = Instant::now();
            let mut error = None;
            while !shared.stop.load(Ordering::SeqCst) {
                if let Some(period) = pace {
                    let now = Instant::now();
                    if next_tick > now {
                        std::thread::sleep(next_tick - now);
                    }
                    // Never let a stall make the source burst to catch up.
                    next_tick = next_tick.max(now) + period;
                }
                match source.next_frame() {
                    Ok(Some(raw)) => {
                        let number = shared.captured.fetch_add(1, Ordering::SeqCst) + 1;
                        let frame = Frame {
                            number,
                            captured: Instant::now(),
                            raw,
                        };
                        let accepted = if no_drop {
                            shared.slot.put_waiting(frame)
                        } else {
                            shared.slot.put(frame)
                        };
                        if !accepted {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            shared.slot.close();
            error
        })
        .context("starting the capture thread")
}

fn print_summary(
    args: &Args,
    shared: &Shared,
    s: &Summary,
    serial_sent: Option<u64>,
    elapsed: Duration,
) {
    let captured = shared.captured.load(Ordering::SeqCst);
    let dropped = shared.slot.dropped();
    let secs = elapsed.as_secs_f64();
    let fps = if secs > 0.0 {
        s.classified as f64 / secs
    } else {
        0.0
    };
    if args.json {
        println!(
            "{}",
            json!({"type": "summary", "captured": captured, "frames": s.classified, "dropped": dropped, "failed": s.failed,
                "events": s.events, "latency_ms": {"mean": round3(s.latency.mean_ms()), "p50": round3(s.latency.quantile_ms(0.5)),
                "p99": round3(s.latency.quantile_ms(0.99)), "max": round3(s.latency.max_ms())}, "max_behind": s.max_behind, "max_newer_at_start": s.max_newer_at_start,
                "fps": round3(fps), "seconds": round3(secs), "serial_sent": serial_sent})
        );
    } else {
        eprintln!(
            "{} frames classified of {captured} captured ({dropped} dropped, {} failed), {} events; latency mean {:.1} ms, p99 {:.1} ms; {fps:.1} fps over {secs:.1} s",
            s.classified,
            s.failed,
            s.events,
            s.latency.mean_ms(),
            s.latency.quantile_ms(0.99),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::gpio_chip_path;

    #[test]
    fn gpio_chips_by_number_name_or_path() {
        assert_eq!(gpio_chip_path("0"), "/dev/gpiochip0");
        assert_eq!(gpio_chip_path("gpiochip4"), "/dev/gpiochip4");
        assert_eq!(gpio_chip_path("/dev/gpiochip1"), "/dev/gpiochip1");
    }
}
