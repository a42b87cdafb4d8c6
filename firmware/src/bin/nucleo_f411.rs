//! Lookout's firmware for an ST Nucleo-F411RE (STM32F411RE, Cortex-M4F, 3.3 V): detections arrive on USART1
//! RX (PA10, Arduino header D2) at 115200 baud; label 0 drives the green user LED LD2 (PA5, D13), label 1 the
//! output PA6 (D12, for a relay module); every frame, event and error is logged with defmt over RTT, which
//! `probe-rs run` shows. See docs/firmware.md for the wiring and the flash command.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use lookout_firmware::{serve, Controller, Rule};
use stm32f4xx_hal::{pac, prelude::*, rcc::Config, serial::Serial};

use defmt_rtt as _;
use panic_probe as _;

/// The bundle's labels as `lookout-edge info` lists them (cats-vs-dogs: 0 Cat, 1 Dog).
const RULES: [Rule; 2] = [
    Rule {
        label: 0,
        output: 0,
        min_score: 0.6,
        hold_ms: 1_500,
    },
    Rule {
        label: 1,
        output: 1,
        min_score: 0.6,
        hold_ms: 1_500,
    },
];
/// No valid frame for this long: every output off.
const SILENCE_MS: u32 = 3_000;

static MILLISECONDS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLISECONDS.fetch_add(1, Ordering::Relaxed);
}

defmt::timestamp!("{=u32:ms}", MILLISECONDS.load(Ordering::Relaxed));

#[global_allocator]
static HEAP: embedded_alloc::LlffHeap = embedded_alloc::LlffHeap::empty();

#[entry]
fn main() -> ! {
    {
        static mut HEAP_MEMORY: [u8; 256] = [0; 256];
        // SAFETY: called once, before anything allocates; the memory is used for nothing else.
        unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, 256) }
    }
    let (Some(dp), Some(mut core)) = (pac::Peripherals::take(), cortex_m::Peripherals::take())
    else {
        defmt::panic!("the peripherals were taken before main");
    };
    // The internal 16 MHz oscillator: the Nucleo's ST-LINK clock output is not fitted on every board.
    let mut rcc = dp.RCC.freeze(Config::hsi().sysclk(84.MHz()));
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(rcc.clocks.sysclk().raw() / 1_000 - 1);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    core.SYST.enable_interrupt();

    let gpioa = dp.GPIOA.split(&mut rcc);
    let Ok(mut uart) = Serial::<_, u8>::rx(dp.USART1, gpioa.pa10, 115_200.bps(), &mut rcc) else {
        defmt::panic!("USART1 refused 115200 baud at this clock");
    };
    let mut pins = [
        gpioa.pa5.into_push_pull_output().erase(),
        gpioa.pa6.into_push_pull_output().erase(),
    ];
    let mut controller = Controller::<2>::new(&RULES, SILENCE_MS);
    let (mut last, mut total) = (0u32, 0u64);
    let now_ms = || {
        let raw = MILLISECONDS.load(Ordering::Relaxed);
        total += u64::from(raw.wrapping_sub(last));
        last = raw;
        total
    };
    serve::serve(&mut controller, &mut uart, &mut pins, now_ms, || {})
}
