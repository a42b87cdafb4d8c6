//! A one-frame mailbox between the capture thread and the inference thread: the newest frame wins.
//!
//! If the model is slower than the camera, a frame waiting in the slot is replaced by the next one (and counted
//! as dropped), so the model always works on the freshest frame and latency never builds up in a queue.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug)]
struct State<T> {
    item: Option<T>,
    closed: bool,
    dropped: u64,
}

/// A single-slot, newest-wins channel.
#[derive(Debug)]
pub struct LatestSlot<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LatestSlot<T> {
    /// An empty, open slot.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                item: None,
                closed: false,
                dropped: 0,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state inconsistent (plain field writes).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a frame in the slot, replacing (and counting as dropped) one not taken yet.
    /// Returns false if the slot is closed (the frame is discarded).
    pub fn put(&self, item: T) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        if state.item.replace(item).is_some() {
            state.dropped += 1;
        }
        self.changed.notify_all();
        true
    }

    /// Waits until the slot is empty, then puts the frame: nothing is dropped (for offline files).
    /// Returns false if the slot is closed.
    pub fn put_waiting(&self, item: T) -> bool {
        let mut state = self.lock();
        while state.item.is_some() && !state.closed {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.closed {
            return false;
        }
        state.item = Some(item);
        self.changed.notify_all();
        true
    }

    /// Waits for a frame; `None` once the slot is closed and empty.
    pub fn take(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.item.take() {
                self.changed.notify_all();
                return Some(item);
            }
            if state.closed {
                return None;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Closes the slot: the frame in it can still be taken, then `take` returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Closes the slot and discards a waiting frame (on Ctrl-C: stop now).
    pub fn close_now(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.item = None;
        self.changed.notify_all();
    }

    /// Frames replaced before they were taken.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn newest_frame_wins_and_drops_are_counted() {
        let slot = LatestSlot::new();
        assert!(slot.put(1));
        assert!(slot.put(2));
        assert!(slot.put(3));
        assert_eq!(slot.take(), Some(3));
        assert_eq!(slot.dropped(), 2);
        slot.close();
        assert!(!slot.put(4));
        assert_eq!(slot.take(), None);
    }

    #[test]
    fn take_waits_for_a_producer_thread() {
        let slot = Arc::new(LatestSlot::new());
        let producer = {
            let slot = Arc::clone(&slot);
            std::thread::spawn(move || {
                for i in 0..100 {
                    slot.put_waiting(i);
                }
                slot.close();
            })
        };
        let received: Vec<i32> = std::iter::from_fn(|| slot.take()).collect();
        producer.join().unwrap();
        assert_eq!(received, (0..100).collect::<Vec<_>>());
        assert_eq!(slot.dropped(), 0);
    }
}
