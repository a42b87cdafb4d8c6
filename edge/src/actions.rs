//! What `watch` does when an event fires, besides printing it: send a detection over a serial line, run a
//! command. (Driving a GPIO line is in [`crate::gpio`].)

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lookout_shared::Detection;

/// Writes COBS-framed [`Detection`] messages to a byte sink (a serial port).
#[derive(Debug)]
pub struct DetectionWriter<W: Write> {
    sink: W,
    frame: Vec<u8>,
    sent: u64,
}

impl<W: Write> DetectionWriter<W> {
    /// Wraps a sink.
    pub fn new(sink: W) -> Self {
        Self {
            sink,
            frame: Vec::with_capacity(32),
            sent: 0,
        }
    }

    /// Encodes and writes one message, flushing so it leaves now.
    pub fn send(&mut self, detection: &Detection) -> std::io::Result<()> {
        self.frame.clear();
        self.frame.extend_from_slice(&detection.encode());
        self.sink.write_all(&self.frame)?;
        self.sink.flush()?;
        self.sent += 1;
        Ok(())
    }

    /// Messages sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// What happened when an event asked for the command to run.
#[derive(Debug, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The command was started.
    Started,
    /// It ran less than the minimum interval ago: skipped.
    RateLimited,
    /// The previous run has not finished: skipped, so runs never pile up.
    StillRunning,
}

/// Runs a shell command on events, at most once per interval, never waiting for it.
#[derive(Debug)]
pub struct ExecAction {
    command: String,
    interval: Duration,
    last_start: Option<Instant>,
    running: Option<Child>,
}

impl ExecAction {
    /// Runs `command` with `sh -c`, at most once per `interval`.
    pub fn new(command: String, interval: Duration) -> Self {
        Self {
            command,
            interval,
            last_start: None,
            running: None,
        }
    }

    /// Starts the command with `LOOKOUT_LABEL`, `LOOKOUT_SCORE`, `LOOKOUT_FRAME` (and `LOOKOUT_ZONE`, with
    /// zones) in its environment, unless rate-limited or still running. Returns an error only if the shell
    /// cannot be started.
    pub fn fire(
        &mut self,
        label: &str,
        score: f32,
        frame: u64,
        zone: Option<&str>,
    ) -> std::io::Result<ExecOutcome> {
        if let Some(child) = self.running.as_mut() {
            match child.try_wait()? {
                None => return Ok(ExecOutcome::StillRunning),
                Some(_) => self.running = None,
            }
        }
        if self.last_start.is_some_and(|t| t.elapsed() < self.interval) {
            return Ok(ExecOutcome::RateLimited);
        }
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.command)
            .env("LOOKOUT_LABEL", label)
            .env("LOOKOUT_SCORE", format!("{score:.4}"))
            .env("LOOKOUT_FRAME", frame.to_string())
            .stdin(Stdio::null());
        // Set only with zones, and never inherited from the environment lookout-edge was started in.
        match zone {
            Some(zone) => command.env("LOOKOUT_ZONE", zone),
            None => command.env_remove("LOOKOUT_ZONE"),
        };
        let child = command.spawn()?;
        self.running = Some(child);
        self.last_start = Some(Instant::now());
        Ok(ExecOutcome::Started)
    }

    /// Reaps a finished run (call now and then so no zombie lingers).
    pub fn reap(&mut self) {
        if let Some(child) = self.running.as_mut() {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                self.running = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_is_rate_limited_and_passes_the_label() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.txt");
        let cmd = format!(
            "echo \"$LOOKOUT_LABEL $LOOKOUT_SCORE $LOOKOUT_FRAME ${{LOOKOUT_ZONE:-}}\" >> {}",
            out.display()
        );
        let mut exec = ExecAction::new(cmd, Duration::from_secs(3600));
        assert_eq!(
            exec.fire("cat", 0.9, 7, Some("bowl")).expect("sh runs"),
            ExecOutcome::Started
        );
        let second = exec.fire("dog", 0.8, 8, None).expect("sh runs");
        assert!(
            matches!(second, ExecOutcome::RateLimited | ExecOutcome::StillRunning),
            "{second:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while exec.running.is_some() && Instant::now() < deadline {
            exec.reap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            std::fs::read_to_string(&out).expect("command wrote"),
            "cat 0.9000 7 bowl\n"
        );
    }
}
