// Wall-clock time for littlefs file timestamps on the QEMU board.
//
// The qemu port has no RTC, so upstream provides no mp_hal_time_ns(), which
// extmod's littlefs driver needs for file mtimes.  The emulated board's
// "wall clock" is its uptime: virtual time, which under -icount counts
// instructions, so builds stay deterministic.  (The charger's own date comes
// from the harness's simulated RTC, not from here.)
#include <stdint.h>
#include "py/mphal.h"

uint64_t mp_hal_time_ns(void) {
    return (uint64_t)mp_hal_ticks_ms() * 1000000ULL;
}

// ticks_us() without the read race of the port's version (mcu/arm/ticks.c,
// renamed ticks_us_port by mpconfigboard.mk).  That one adds the SysTick
// interrupt's millisecond count and the counter's progress, but in QEMU the
// counter reloads a few instructions before or after the interrupt counts
// the millisecond (both seen), so a read in between is off by 1 ms and
// time.ticks_us() steps back by up to 999 us (measured: 12 times in 200,000
// reads).  Under -icount every CPU figure of the firmware is a ticks_us
// difference: a task run straddling such a read showed -999 or +999 kinstr.
//
// Here the counter decides the millisecond near its reload: a counter
// higher than at the previous read has reloaded (the firmware reads the
// clock many times per millisecond), so the software count moves on then.
// Away from the reload (more than TB_W counts from either end) the
// interrupt's count is certainly settled and resynchronises it (sparse
// reads: the emulator idle, the REPL).
uintptr_t ticks_ms(void);

#define TB_CPU_FREQ_HZ    25000000u
#define TB_SYST_RVR       (*(volatile uint32_t *)0xE000E014)
#define TB_SYST_CVR       (*(volatile uint32_t *)0xE000E018)
#define TB_W              250u      // 10 us; the race seen is < 3 us wide

static uint32_t tb_k, tb_last_cvr;

uintptr_t ticks_us(void) {
    uint32_t m = ticks_ms();
    uint32_t cvr = TB_SYST_CVR;
    uint32_t rvr = TB_SYST_RVR;
    if (cvr > tb_last_cvr) {
        tb_k += 1;                  // reloaded since the previous read
    }
    tb_last_cvr = cvr;
    if (cvr >= TB_W && cvr <= rvr - TB_W) {
        tb_k = m;                   // mid-millisecond: the interrupt's count is exact
    } else if (m - tb_k + 1u > 2u) {
        tb_k = m;                   // more than 1 ms apart: sparse reads
    }
    return tb_k * 1000 + ((rvr - cvr) * 1000) / (TB_CPU_FREQ_HZ / 1000);
}
