//! The microcontroller end of Lookout: reads the detections `lookout-edge watch --serial` sends (COBS-framed
//! postcard [`Detection`]s, decoded by `lookout-shared`'s own [`FrameReader`], so the two ends agree by
//! construction) and drives outputs by a rule table: label → output, minimum score, hold time.
//!
//! This is the logic, `no_std` and without allocation, tested on the host: [`Controller`] (bytes and time in,
//! [`Event`]s out, the outputs' state), [`Rule`], and [`serve`] (with the `defmt` feature), the loop every
//! board's firmware runs; `src/bin/nucleo_f411.rs` (an ST Nucleo-F411RE) and `src/bin/mps2.rs` (the board
//! `qemu-system-arm -M mps2-an386` emulates) are the firmware around it. Safety comes first: an output is on only while a detection that a rule accepts is
//! younger than the rule's hold time, and every output returns to off (the safe state) when the Pi goes
//! silent (no valid frame for [`Controller::silence_ms`]). Bad bytes, truncated or damaged frames, frames of
//! an unknown protocol version, unknown label indices and scores that are not a probability are each
//! reported as an [`Event`] and skipped: nothing a byte stream holds can panic or switch an output on.
#![no_std]

pub use lookout_shared::detection::{Detection, DetectionError, FrameReader, PROTOCOL_VERSION};

/// One line of the rule table: detections of `label` with at least `min_score` keep `output` on for
/// `hold_ms` after the last one.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rule {
    /// The label's index in the bundle (what `lookout-edge info` lists, in order).
    pub label: u16,
    /// Which output it drives (an index into the controller's outputs).
    pub output: usize,
    /// Detections scoring below this are ignored.
    pub min_score: f32,
    /// How long the output stays on after the last accepted detection, milliseconds.
    pub hold_ms: u32,
}

/// Why a frame was read but not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Ignored {
    /// No rule names this label index (a bundle with more labels than the table knows).
    UnknownLabel,
    /// The score is not a probability (NaN, below 0, above 1).
    BadScore,
    /// A rule names the label, but the score is below its minimum.
    BelowMinimum,
}

/// What the controller did with what it was given: each one is worth a log line.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A valid frame arrived.
    Received(Detection),
    /// A frame could not be read; it is skipped and the reader resynchronises at the next `0x00`.
    BadFrame(DetectionError),
    /// A valid frame that no rule acts on.
    Ignored {
        /// The frame.
        detection: Detection,
        /// Why.
        why: Ignored,
    },
    /// An output switched on (or its hold was renewed: `renewed`).
    On {
        /// The output.
        output: usize,
        /// The label that switched it.
        label: u16,
        /// The frame number the Pi gave.
        frame: u64,
        /// Whether it was on already (its hold restarted).
        renewed: bool,
    },
    /// An output's hold ran out: back to off.
    Off {
        /// The output.
        output: usize,
    },
    /// No valid frame for [`Controller::silence_ms`]: every output is off until the Pi speaks again.
    Silent {
        /// Milliseconds since the last valid frame.
        since_ms: u64,
    },
    /// A valid frame after silence.
    Resumed,
}

/// The decoder, the rules and the outputs' state. `N` outputs; time is the caller's milliseconds (a
/// monotonic counter, e.g. SysTick).
pub struct Controller<'r, const N: usize> {
    reader: FrameReader,
    rules: &'r [Rule],
    /// When each output's hold ends (`None`: off).
    until: [Option<u64>; N],
    /// When the last valid frame came.
    last_frame: Option<u64>,
    silent: bool,
    silence_ms: u32,
}

impl<'r, const N: usize> Controller<'r, N> {
    /// A controller with every output off. Rules naming an output `>= N` never act.
    pub const fn new(rules: &'r [Rule], silence_ms: u32) -> Self {
        Controller {
            reader: FrameReader::new(),
            rules,
            until: [None; N],
            last_frame: None,
            silent: false,
            silence_ms,
        }
    }

    /// How long without a valid frame before every output goes off.
    pub fn silence_ms(&self) -> u32 {
        self.silence_ms
    }

    /// Which outputs are on now (call [`Controller::tick`] first to let holds run out).
    pub fn outputs(&self) -> [bool; N] {
        self.until.map(|until| until.is_some())
    }

    /// Takes bytes from the line at time `now_ms`; tells `log` what happened, in order.
    pub fn feed(&mut self, bytes: &[u8], now_ms: u64, mut log: impl FnMut(Event)) {
        for &byte in bytes {
            match self.reader.push(byte) {
                Some(Ok(detection)) => self.apply(detection, now_ms, &mut log),
                Some(Err(error)) => log(Event::BadFrame(error)),
                None => {}
            }
        }
    }

    /// Lets time pass: holds that ran out switch their output off, and silence switches every output off.
    pub fn tick(&mut self, now_ms: u64, mut log: impl FnMut(Event)) {
        for (output, until) in self.until.iter_mut().enumerate() {
            if until.is_some_and(|end| now_ms >= end) {
                *until = None;
                log(Event::Off { output });
            }
        }
        let since = now_ms.saturating_sub(self.last_frame.unwrap_or(0));
        if !self.silent && since >= u64::from(self.silence_ms) {
            self.silent = true;
            for (output, until) in self.until.iter_mut().enumerate() {
                if until.take().is_some() {
                    log(Event::Off { output });
                }
            }
            log(Event::Silent { since_ms: since });
        }
    }

    fn apply(&mut self, detection: Detection, now_ms: u64, log: &mut impl FnMut(Event)) {
        log(Event::Received(detection));
        self.last_frame = Some(now_ms);
        if core::mem::take(&mut self.silent) {
            log(Event::Resumed);
        }
        let ignored = |why| Event::Ignored { detection, why };
        if !(0.0..=1.0).contains(&detection.score) {
            log(ignored(Ignored::BadScore));
            return;
        }
        let mut named = false;
        let mut acted = false;
        for rule in self.rules.iter().filter(|r| r.label == detection.label) {
            named = true;
            if detection.score < rule.min_score {
                continue;
            }
            let Some(until) = self.until.get_mut(rule.output) else {
                continue;
            };
            let renewed = until.is_some();
            *until = Some(now_ms.saturating_add(u64::from(rule.hold_ms)));
            acted = true;
            log(Event::On {
                output: rule.output,
                label: detection.label,
                frame: detection.frame,
                renewed,
            });
        }
        if !acted {
            log(ignored(if named {
                Ignored::BelowMinimum
            } else {
                Ignored::UnknownLabel
            }));
        }
    }
}

/// What every board's firmware runs once its peripherals are up: read the UART, feed the controller, let
/// time pass, drive the pins, log every step with defmt. A board gives its UART (embedded-hal-nb
/// `serial::Read`), its output pins (embedded-hal `OutputPin`) and a millisecond clock.
#[cfg(feature = "defmt")]
pub mod serve {
    use embedded_hal::digital::OutputPin;
    use embedded_hal_nb::nb;
    use embedded_hal_nb::serial::{Error as _, Read};

    use super::{Controller, Event};

    /// Logs one event of the controller.
    pub fn log(event: Event) {
        match event {
            Event::Received(d) => defmt::info!(
                "frame {=u64}: label {=u16} score {=f32} latency {=u32} us",
                d.frame,
                d.label,
                d.score,
                d.latency_us
            ),
            Event::BadFrame(error) => defmt::warn!("skipped a bad frame: {}", error),
            Event::Ignored { detection, why } => {
                defmt::info!("frame {=u64} ignored: {}", detection.frame, why)
            }
            Event::On {
                output,
                label,
                frame,
                renewed,
            } => defmt::info!(
                "output {=usize} ON (label {=u16}, frame {=u64}, renewed {=bool})",
                output,
                label,
                frame,
                renewed
            ),
            Event::Off { output } => defmt::info!("output {=usize} off", output),
            Event::Silent { since_ms } => defmt::warn!(
                "no frame for {=u64} ms: the Pi is silent, every output off",
                since_ms
            ),
            Event::Resumed => defmt::info!("the Pi speaks again"),
        }
    }

    /// Runs forever: `uart` in, `pins` out (pin `i` is output `i`), `now_ms` the clock; `changed` is called
    /// after the pins changed (a board may log what its hardware shows).
    pub fn serve<U: Read<u8>, P: OutputPin, const N: usize>(
        controller: &mut Controller<'_, N>,
        uart: &mut U,
        pins: &mut [P; N],
        mut now_ms: impl FnMut() -> u64,
        mut changed: impl FnMut(),
    ) -> ! {
        defmt::info!(
            "lookout firmware {=str}: protocol version {=u8}, {=usize} rules, outputs off after {=u32} ms of silence",
            env!("CARGO_PKG_VERSION"),
            super::PROTOCOL_VERSION,
            controller.rules.len(),
            controller.silence_ms
        );
        for rule in controller.rules {
            defmt::info!("rule: {}", rule);
        }
        let mut shown: Option<[bool; N]> = None;
        loop {
            let now = now_ms();
            match uart.read() {
                Ok(byte) => controller.feed(&[byte], now, log),
                Err(nb::Error::WouldBlock) => {}
                Err(nb::Error::Other(error)) => {
                    defmt::warn!("UART: {} (bytes lost)", defmt::Debug2Format(&error.kind()))
                }
            }
            controller.tick(now, log);
            let outputs = controller.outputs();
            if shown != Some(outputs) {
                for (pin, on) in pins.iter_mut().zip(outputs) {
                    if pin.set_state(on.into()).is_err() {
                        defmt::error!("an output pin could not be set");
                    }
                }
                shown = Some(outputs);
                changed();
            }
        }
    }
}
