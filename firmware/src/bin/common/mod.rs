//! What every board's firmware shares besides the logic: the rule table, the millisecond clock (SysTick), the
//! defmt timestamp and the small heap lookout-shared's `alloc` needs.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use lookout_firmware::Rule;

/// The bundle's labels as `lookout-edge info` lists them (cats-vs-dogs: 0 Cat, 1 Dog), each to an output.
pub const RULES: [Rule; 2] = [
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
pub const SILENCE_MS: u32 = 3_000;

static MILLISECONDS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    MILLISECONDS.fetch_add(1, Ordering::Relaxed);
}

defmt::timestamp!("{=u32:ms}", MILLISECONDS.load(Ordering::Relaxed));

#[global_allocator]
static HEAP: embedded_alloc::LlffHeap = embedded_alloc::LlffHeap::empty();

/// Gives the heap its memory; call once, first thing in `main`.
pub fn init_heap() {
    static mut HEAP_MEMORY: [u8; 256] = [0; 256];
    // SAFETY: called once, before anything allocates; the memory is used for nothing else.
    unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, 256) }
}

/// Starts SysTick at one interrupt a millisecond for a core clocked at `cpu_hz`.
pub fn start_clock(syst: &mut SYST, cpu_hz: u32) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(cpu_hz / 1_000 - 1);
    syst.clear_current();
    syst.enable_counter();
    syst.enable_interrupt();
}

/// Milliseconds since start, widened to 64 bits (the counter wraps after 49 days).
#[derive(Default)]
pub struct Clock {
    last: u32,
    total: u64,
}

impl Clock {
    /// Now.
    pub fn now(&mut self) -> u64 {
        let raw = MILLISECONDS.load(Ordering::Relaxed);
        self.total += u64::from(raw.wrapping_sub(self.last));
        self.last = raw;
        self.total
    }
}
