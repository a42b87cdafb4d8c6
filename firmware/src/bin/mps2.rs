//! Lookout's firmware for the ARM MPS2 AN386 board (Cortex-M4), the board `qemu-system-arm -M mps2-an386`
//! models: detections arrive on UART0, the rule table drives the board's two user LEDs (FPGA I/O), every frame,
//! event and error is logged with defmt over semihosting.
//!
//! The board is the emulator's, so CI runs the whole firmware; a real board changes the three peripherals below
//! (UART, output pins, millisecond clock) and nothing of the logic (`lookout_firmware::Controller`). Registers
//! are written directly: the two peripherals are a few registers each, and the embedded-hal 1.0 traits
//! (`OutputPin`, `serial::Read`) are what the logic's outputs and input go through, as a HAL's would.
#![no_std]
#![no_main]

mod common;

use common::{Clock, RULES, SILENCE_MS};
use cortex_m_rt::entry;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal_nb::nb;
use embedded_hal_nb::serial::{ErrorKind, ErrorType as SerialErrorType, Read};
use lookout_firmware::{serve, Controller};

use defmt_semihosting as _;

/// The MPS2 system clock (SysTick counts it).
const CPU_HZ: u32 = 25_000_000;
/// CMSDK APB UART0.
const UART0: usize = 0x4000_4000;
/// The FPGA I/O block: its first register holds the user LEDs, one bit each.
const FPGAIO_LED: usize = 0x4002_8000;
const BAUD: u32 = 115_200;

/// The CMSDK APB UART: DATA, STATE (bit 1: a byte waits; bit 3: one was lost), CTRL (bit 1: receive on),
/// BAUDDIV.
struct CmsdkUart {
    base: usize,
}

impl CmsdkUart {
    fn new(base: usize, baud: u32) -> CmsdkUart {
        let uart = CmsdkUart { base };
        // SAFETY: the UART's own registers, at the address the board's memory map gives; nothing else uses them.
        unsafe {
            uart.register(0x10).write_volatile(CPU_HZ / baud);
            uart.register(0x08).write_volatile(0b10);
        }
        uart
    }

    fn register(&self, offset: usize) -> *mut u32 {
        (self.base + offset) as *mut u32
    }
}

impl SerialErrorType for CmsdkUart {
    type Error = ErrorKind;
}

impl Read<u8> for CmsdkUart {
    fn read(&mut self) -> nb::Result<u8, ErrorKind> {
        // SAFETY: as in `new`.
        let state = unsafe { self.register(0x04).read_volatile() };
        if state & 0b1000 != 0 {
            // Writing the bit clears it; the byte that stayed is still read next time.
            unsafe { self.register(0x04).write_volatile(0b1000) };
            return Err(nb::Error::Other(ErrorKind::Overrun));
        }
        if state & 0b10 == 0 {
            return Err(nb::Error::WouldBlock);
        }
        Ok(unsafe { self.register(0x00).read_volatile() } as u8)
    }
}

/// One user LED of the FPGA I/O block as an output pin.
struct Led {
    bit: u32,
}

impl Led {
    fn set(&mut self, on: bool) {
        let register = FPGAIO_LED as *mut u32;
        // SAFETY: the LED register, only written from this loop.
        unsafe {
            let value = register.read_volatile();
            let value = if on {
                value | 1 << self.bit
            } else {
                value & !(1 << self.bit)
            };
            register.write_volatile(value);
        }
    }
}

fn led_register() -> u32 {
    // SAFETY: reading the LED register.
    unsafe { (FPGAIO_LED as *const u32).read_volatile() }
}

impl PinErrorType for Led {
    type Error = core::convert::Infallible;
}

impl OutputPin for Led {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.set(true);
        Ok(())
    }
}

#[entry]
fn main() -> ! {
    common::init_heap();
    let Some(mut core) = cortex_m::Peripherals::take() else {
        defmt::panic!("the core peripherals were taken before main");
    };
    common::start_clock(&mut core.SYST, CPU_HZ);

    let mut uart = CmsdkUart::new(UART0, BAUD);
    let mut pins = [Led { bit: 0 }, Led { bit: 1 }];
    let mut controller = Controller::<2>::new(&RULES, SILENCE_MS);
    let mut clock = Clock::default();
    // The LED register as the board shows it, read back after every change.
    let show_leds = || defmt::info!("LEDs {=u32:02b}", led_register());
    show_leds();
    serve::serve(
        &mut controller,
        &mut uart,
        &mut pins,
        || clock.now(),
        show_leds,
    )
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    defmt::error!("panic: stopping");
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
