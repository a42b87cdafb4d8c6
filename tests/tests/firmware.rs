//! The microcontroller end, whole: the firmware (`firmware/`, its own cargo workspace) is built for the
//! Cortex-M4 and run by `qemu-system-arm -M mps2-an386` with its UART on a pty; `lookout-edge watch --serial`
//! on that pty classifies a folder of photos; the firmware's defmt log (over semihosting, decoded with the
//! firmware's own ELF by defmt-decoder) shows each event `watch` printed arriving, its output switching on and
//! the LED register following, bad bytes skipped, and every output back to off once `watch` has stopped. The
//! firmware's logic tests (host, property tests) run from here too, so `cargo test --workspace` covers them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lookout_e2e::{command, fit_small_lite0, json_lines, photos, require_shared, which};

const TARGET: &str = "thumbv7em-none-eabihf";

fn firmware_dir() -> PathBuf {
    lookout_testdata::crate_dir(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("firmware")
}

/// The firmware's own target folder, beside this test's.
fn firmware_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("firmware-target")
}

/// Whether qemu-system-arm and the Cortex-M target are here; under CI their absence fails the test.
fn have_firmware_tools(test: &str) -> bool {
    let target_installed = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .is_some_and(|dir| dir.is_dir());
    let found = target_installed && which("qemu-system-arm").is_some();
    if !found {
        lookout_testdata::missing(
            test,
            "qemu-system-arm or the thumbv7em-none-eabihf target is missing (apt-get install \
             qemu-system-arm; rustup target add thumbv7em-none-eabihf; .ci/run does both)",
        );
    }
    found
}

/// `cargo ARGS` in the firmware's folder (its `.cargo/config.toml` applies there), into its own target folder.
fn cargo_in_firmware(args: &[&str]) -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(args)
        .current_dir(firmware_dir())
        .env("CARGO_TARGET_DIR", firmware_target())
        .output()
        .expect("run cargo for the firmware")
}

/// The firmware ELF, built once.
fn firmware_elf() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let out = cargo_in_firmware(&[
            "build",
            "--locked",
            "--release",
            "--target",
            TARGET,
            "--features",
            "board",
        ]);
        assert!(
            out.status.success(),
            "building the firmware: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        firmware_target()
            .join(TARGET)
            .join("release/lookout-firmware-mps2")
    })
}

/// qemu running the firmware: its stdout (qemu's one line, then the defmt stream) gathered on a thread.
struct Board {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Board {
    fn start(elf: &Path) -> (Board, PathBuf) {
        let mut child = Command::new("qemu-system-arm")
            .args(["-M", "mps2-an386", "-display", "none", "-monitor", "none"])
            .args([
                "-semihosting-config",
                "enable=on,target=native",
                "-serial",
                "pty",
            ])
            .arg("-kernel")
            .arg(elf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-system-arm");
        let mut pipe = child.stdout.take().expect("stdout");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let gathered = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                gathered
                    .lock()
                    .expect("stdout")
                    .extend_from_slice(&chunk[..n]);
            }
        });
        let board = Board { child, stdout };
        // "char device redirected to /dev/pts/N (label serial0)"
        let deadline = Instant::now() + Duration::from_secs(20);
        let pty = loop {
            let text = String::from_utf8_lossy(&board.stdout.lock().expect("stdout")).to_string();
            if let Some(line) = text.lines().find(|l| l.contains("(label serial0)")) {
                let path = line.split_whitespace().find(|w| w.starts_with("/dev/"));
                break PathBuf::from(path.expect("a pty path"));
            }
            assert!(Instant::now() < deadline, "qemu named no pty: {text:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        (board, pty)
    }

    /// The firmware's log so far, decoded: one `LEVEL message` line per defmt frame.
    fn log(&self, elf: &Path) -> Vec<String> {
        let bytes = self.stdout.lock().expect("stdout").clone();
        // The defmt stream starts after qemu's own line.
        let start = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        let elf = std::fs::read(elf).expect("firmware ELF");
        let table = defmt_decoder::Table::parse(&elf)
            .expect("the ELF's defmt table")
            .expect("defmt data in the ELF");
        let mut decoder = table.new_stream_decoder();
        decoder.received(&bytes[start..]);
        let mut lines = Vec::new();
        loop {
            match decoder.decode() {
                Ok(frame) => {
                    let level = frame.level().map_or("PRINT", |l| l.as_str());
                    lines.push(format!(
                        "{} {}",
                        level.to_uppercase(),
                        frame.display_message()
                    ));
                }
                Err(defmt_decoder::DecodeError::UnexpectedEof) => break,
                Err(defmt_decoder::DecodeError::Malformed) => panic!("a malformed defmt frame"),
            }
        }
        lines
    }

    fn wait_for(&self, elf: &Path, what: &str, within: Duration) -> Vec<String> {
        self.wait_until(elf, what, within, |log| {
            log.iter().any(|l| l.contains(what))
        })
    }

    fn wait_until(
        &self,
        elf: &Path,
        what: &str,
        within: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log(elf);
            if done(&log) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} in the firmware's log: {log:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_firmware_logic_passes_its_host_tests() {
    // The no_std logic with its property tests, on this machine (no emulator needed).
    let out = cargo_in_firmware(&["test", "--locked"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("any_line_in_any_chunks_switches_only_what_received_frames_ask ... ok"));
}

#[test]
fn watch_serial_drives_the_firmware_under_qemu_and_its_outputs_go_safe_when_watch_stops() {
    let shared = require_shared!();
    if !have_firmware_tools("watch_serial_drives_the_firmware") {
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let bundle = fit_small_lite0(&shared, tmp.path(), 40);
    let elf = firmware_elf();
    let (board, pty) = Board::start(elf);
    let log = board.wait_for(elf, "protocol version 1", Duration::from_secs(20));
    assert!(log.iter().any(|l| l.contains("LEDs 00")), "{log:#?}");

    // Noise on the line first: skipped, logged, nothing switched. (The pty stays open until qemu read it:
    // qemu only reads a pty whose other end it has seen open.)
    let mut port = std::fs::OpenOptions::new()
        .write(true)
        .open(&pty)
        .expect("open the pty");
    port.write_all(b"noise on the line\x00")
        .expect("write to the pty");
    let log = board.wait_for(elf, "skipped a bad frame", Duration::from_secs(10));
    drop(port);
    assert!(log.iter().all(|l| !l.contains(" ON ")), "{log:#?}");

    // Three cats then three dogs: an event for each (labels Cat = 0, Dog = 1, the firmware's two LEDs).
    let camera = tmp.path().join("camera");
    std::fs::create_dir(&camera).expect("camera folder");
    let (cats, dogs) = (photos(&shared, "Cat"), photos(&shared, "Dog"));
    for (i, photo) in cats[300..303].iter().chain(&dogs[300..303]).enumerate() {
        std::fs::copy(photo, camera.join(format!("{i:02}.jpg"))).expect("copy photo");
    }
    let out = command("lookout-edge")
        .args([
            "watch",
            "--json",
            "--no-drop",
            "--fps",
            "2",
            "--smooth",
            "1",
        ])
        .args(["--baud", "115200", "--serial"])
        .arg(&pty)
        .arg("--model")
        .arg(&bundle)
        .arg("--source")
        .arg(format!("dir:{}", camera.display()))
        .output()
        .expect("run watch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out.stdout);
    let events: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l["type"] == "event")
        .map(|l| {
            let frame = l["frame"].as_u64().expect("frame");
            (frame, l["label_index"].as_u64().expect("label_index"))
        })
        .collect();
    let labels: Vec<u64> = events.iter().map(|(_, label)| *label).collect();
    assert!(
        labels.contains(&0) && labels.contains(&1),
        "a Cat event and a Dog event: {lines:?}"
    );
    let summary = lines.last().expect("summary");
    assert_eq!(summary["serial_sent"], events.len(), "{summary}");

    // Each event reached the firmware and switched its output, and the LED register followed.
    let silent_after_the_last_event = |log: &[String]| {
        let last_on = log.iter().rposition(|l| l.contains(" ON ("));
        let silent = log.iter().rposition(|l| l.contains("the Pi is silent"));
        matches!((last_on, silent), (Some(on), Some(silent)) if silent > on)
    };
    let log = board.wait_until(
        elf,
        "silence after the last event",
        Duration::from_secs(15),
        silent_after_the_last_event,
    );
    // Shown with --nocapture (and with a failure): what docs/firmware.md quotes.
    eprintln!(
        "watch printed:\n{lines:#?}\nthe firmware logged:\n{}",
        log.join("\n")
    );
    for (frame, label) in &events {
        let received = format!("frame {frame}: label {label} score");
        let on = format!("output {label} ON (label {label}, frame {frame},");
        let at = |what: &str| log.iter().position(|l| l.contains(what));
        let (Some(received), Some(on)) = (at(&received), at(&on)) else {
            panic!("event at frame {frame} (label {label}) not acted on: {log:#?}");
        };
        assert!(received < on, "{log:#?}");
    }
    // Bit 0 is the Cat LED, bit 1 the Dog LED (both may be on while the Cat's hold runs out).
    assert!(log.iter().any(|l| l.ends_with("LEDs 01")), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.ends_with("LEDs 10") || l.ends_with("LEDs 11")),
        "{log:#?}"
    );
    // watch stopped: after the holds and the silence, every output is off.
    let silent = log
        .iter()
        .rposition(|l| l.contains("the Pi is silent"))
        .expect("silent");
    let last_leds = log
        .iter()
        .rev()
        .find(|l| l.contains("LEDs "))
        .expect("an LED line");
    assert!(last_leds.ends_with("LEDs 00"), "{log:#?}");
    assert!(log[silent].starts_with("WARN"), "{}", log[silent]);
    assert!(
        log.iter().all(|l| !l.starts_with("ERROR")),
        "no error, no panic: {log:#?}"
    );
}
