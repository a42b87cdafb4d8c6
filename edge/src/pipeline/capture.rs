//! The capture thread: reads the source as fast as it delivers (or at `--fps` for files) into the slot.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::EdgeError;
use crate::slot::LatestSlot;
use crate::source::{FrameSource, RawFrame};

/// A frame with its number and capture time.
#[derive(Debug)]
pub struct Frame {
    /// From 1, in capture order.
    pub number: u64,
    /// When the source delivered it.
    pub captured: Instant,
    /// The frame as the source delivered it (decoded on the inference thread, only if it is not dropped).
    pub raw: RawFrame,
}

/// Starts the capture thread; it returns the source's error, if the source failed rather than ended.
pub fn spawn_capture(
    mut source: Box<dyn FrameSource>,
    slot: Arc<LatestSlot<Frame>>,
    stop: Arc<AtomicBool>,
    captured: Arc<AtomicU64>,
    fps: f32,
    no_drop: bool,
) -> Result<JoinHandle<Option<EdgeError>>, EdgeError> {
    let pace =
        (source.is_file() && fps > 0.0).then(|| Duration::from_secs_f64(1.0 / f64::from(fps)));
    let describe = source.describe();
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let mut next_tick = Instant::now();
            let mut error = None;
            while !stop.load(Ordering::SeqCst) {
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
                        let number = captured.fetch_add(1, Ordering::SeqCst) + 1;
                        let frame = Frame {
                            number,
                            captured: Instant::now(),
                            raw,
                        };
                        let accepted = if no_drop {
                            slot.put_waiting(frame)
                        } else {
                            slot.put(frame)
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
            slot.close();
            error
        })
        .map_err(|e| EdgeError::SourceOpen {
            source_spec: describe,
            reason: format!("cannot start the capture thread: {e}"),
        })
}
