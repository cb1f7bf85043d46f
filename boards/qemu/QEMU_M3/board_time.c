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
