//! Opening what `watch` drives: a GPIO line (gpio-cdev on Linux) and a serial port.

use std::time::Duration;

#[cfg(not(target_os = "linux"))]
use anyhow::bail;
use anyhow::Context as _;

#[cfg(target_os = "linux")]
pub type OutputPin = linux_embedded_hal::CdevPin;

#[cfg(target_os = "linux")]
pub fn open_gpio(spec: &str) -> anyhow::Result<OutputPin> {
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
pub type OutputPin = embedded_hal_no_gpio::NoPin;

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
pub fn open_gpio(_spec: &str) -> anyhow::Result<OutputPin> {
    bail!("--gpio needs Linux's GPIO character devices")
}

pub fn open_serial(
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
