//! Driving a GPIO line from events, generic over `embedded_hal::digital::OutputPin` so the logic is tested
//! with a mock pin and runs on a gpio-cdev line on the Pi.

use embedded_hal::digital::OutputPin;

/// Keeps an output pin high while one label is the active event label, low otherwise.
#[derive(Debug)]
pub struct LabelPin<P: OutputPin> {
    pin: P,
    label: usize,
    high: bool,
}

impl<P: OutputPin> LabelPin<P> {
    /// Takes the pin and drives it low (no event yet).
    pub fn new(mut pin: P, label: usize) -> Result<Self, P::Error> {
        pin.set_low()?;
        Ok(Self {
            pin,
            label,
            high: false,
        })
    }

    /// The label that drives the pin.
    pub fn label(&self) -> usize {
        self.label
    }

    /// Makes `label` the one that drives the pin (a new bundle numbered it otherwise); the line follows at the
    /// next [`LabelPin::update`].
    pub fn set_label(&mut self, label: usize) {
        self.label = label;
    }

    /// Whether the pin is currently driven high.
    pub fn is_high(&self) -> bool {
        self.high
    }

    /// Drives the pin high if `label_active(self.label())`, low otherwise; touches the line only on a change.
    pub fn update(&mut self, label_active: impl Fn(usize) -> bool) -> Result<(), P::Error> {
        let want_high = label_active(self.label);
        if want_high != self.high {
            if want_high {
                self.pin.set_high()?;
            } else {
                self.pin.set_low()?;
            }
            self.high = want_high;
        }
        Ok(())
    }

    /// Drives the pin low and gives it back (on shutdown, so nothing stays switched on).
    pub fn release(mut self) -> Result<P, P::Error> {
        self.pin.set_low()?;
        Ok(self.pin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoothing::EventTrigger;
    use embedded_hal_mock::eh1::digital::{Mock, State, Transaction};

    #[test]
    fn the_line_follows_the_active_label_and_is_touched_only_on_changes() {
        // Expected line writes: low at start, high when "cat" (label 1) fires, low when it re-arms, low on release.
        let expectations = [
            Transaction::set(State::Low),
            Transaction::set(State::High),
            Transaction::set(State::Low),
            Transaction::set(State::Low),
        ];
        let mut mock = Mock::new(&expectations);
        let mut pin = LabelPin::new(mock.clone(), 1).expect("mock pin");
        let mut trigger = EventTrigger::new(2, 0.8, 0.1);
        let frames: [[f32; 2]; 6] = [
            [0.9, 0.1],
            [0.1, 0.9],
            [0.2, 0.8],
            [0.25, 0.75],
            [0.5, 0.5],
            [0.9, 0.1],
        ];
        let mut levels = Vec::new();
        for smoothed in frames {
            trigger.update(&smoothed);
            pin.update(|l| trigger.is_active(l)).expect("mock pin");
            levels.push(pin.is_high());
        }
        // Label 0 firing on the first and last frames never touches the line.
        assert_eq!(levels, [false, true, true, true, false, false]);
        pin.release().expect("mock pin");
        mock.done();
    }
}
