//! Lookout's firmware for an ST Nucleo-F411RE (STM32F411RE, Cortex-M4F, 3.3 V): detections arrive on USART1
//! RX (PA10, Arduino header D2) at 115200 baud; label 0 drives the green user LED LD2 (PA5, D13), label 1 the
//! output PA6 (D12, for a relay module); every frame, event and error is logged with defmt over RTT, which
//! `probe-rs run` shows. See docs/firmware.md for the wiring and the flash command.
#![no_std]
#![no_main]

mod common;

use common::{Clock, RULES, SILENCE_MS};
use cortex_m_rt::entry;
use lookout_firmware::{serve, Controller};
use stm32f4xx_hal::{pac, prelude::*, rcc::Config, serial::Serial};

use defmt_rtt as _;
use panic_probe as _;

#[entry]
fn main() -> ! {
    common::init_heap();
    let (Some(dp), Some(mut core)) = (pac::Peripherals::take(), cortex_m::Peripherals::take())
    else {
        defmt::panic!("the peripherals were taken before main");
    };
    // The internal 16 MHz oscillator: the Nucleo's ST-LINK clock output is not fitted on every board.
    let mut rcc = dp.RCC.freeze(Config::hsi().sysclk(84.MHz()));
    common::start_clock(&mut core.SYST, rcc.clocks.sysclk().raw());

    let gpioa = dp.GPIOA.split(&mut rcc);
    let Ok(mut uart) = Serial::<_, u8>::rx(dp.USART1, gpioa.pa10, 115_200.bps(), &mut rcc) else {
        defmt::panic!("USART1 refused 115200 baud at this clock");
    };
    let mut pins = [
        gpioa.pa5.into_push_pull_output().erase(),
        gpioa.pa6.into_push_pull_output().erase(),
    ];
    let mut controller = Controller::<2>::new(&RULES, SILENCE_MS);
    let mut clock = Clock::default();
    serve::serve(&mut controller, &mut uart, &mut pins, || clock.now(), || {})
}
