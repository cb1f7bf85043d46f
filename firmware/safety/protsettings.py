"""Hard protections H-1..H-8 (+ H-10 mains): their settings, and what a
trip of each reports in CST.

The settings (thresholds, debounces) are read by ``safety.protections``
(``Protections``, the per-tick evaluation) and by the boards' interrupt
path (``boards/pinboard/fastprot.py``: H-1/H-2/H-3); ``_cross`` rejects a
configuration whose bands are empty.  ``cst_fault_of``/``cst_error_of``
give the CST fault and error masks of a protection's trip (the supervisor
sends them in the charger's stop frame).
"""
from micropython import const
import config

# CST masks (values of gbt.messages; local so this module stands alone)
_F_CONNECTOR = const(0x004)
_F_NO_ENERGY = const(0x040)
_F_ESTOP = const(0x100)
_F_OTHER = const(0x400)
_E_CURRENT = const(0x01)
_E_VOLTAGE = const(0x04)

CONFIG_SCHEMA = (
    ("h1.permille", 1100, 1000, 1500, "0.1 %", "H-1: trip above this per mille of rating.max_v"),
    ("h1.deb_ms", 0, 0, 8, "ms", "H-1 debounce (action time budget 10 ms)"),
    ("h2.permille", 1200, 1000, 2000, "0.1 %", "H-2: trip above this per mille of rating.max_i"),
    ("h2.deb_ms", 0, 0, 50, "ms", "H-2 debounce"),
    ("h3.deb_ms", 0, 0, 50, "ms", "H-3 E-stop debounce (latched until reset)"),
    ("h4.ohm_per_v", 100, 10, 1000, "ohm/V", "H-4: trip below this * rating.max_v (GB/T 18487.1 fault level 100 ohm/V)"),
    ("h4.deb_ms", 0, 0, 50, "ms", "H-4 debounce"),
    ("h5.lo_mv", 3200, 0, 12000, "mV", "H-5: CC1 valid band low (state 3 = 4 V -0.8 V)"),
    ("h5.hi_mv", 4800, 0, 12000, "mV", "H-5: CC1 valid band high (state 3 = 4 V +0.8 V)"),
    ("h5.deb_ms", 10, 0, 40, "ms", "H-5 debounce (budget: I < 5 A within 50 ms of CC1 leaving 4 V)"),
    ("h6.derate_t", 800, 0, 2000, "0.1 degC", "H-6: gun temperature where derating starts"),
    ("h6.trip_t", 900, 0, 2000, "0.1 degC", "H-6: gun temperature trip (above)"),
    ("h6.min_dA", 0, 0, 10000, "0.1 A", "H-6: current limit reached at trip_t"),
    ("h6.sensor_lo", -400, -1000, 0, "0.1 degC", "H-6: gun sensor plausible low (below = sensor fault, trip)"),
    ("h6.sensor_hi", 2000, 500, 3000, "0.1 degC", "H-6: gun sensor plausible high (above = sensor fault, trip)"),
    ("h6.deb_ms", 0, 0, 1000, "ms", "H-6 trip debounce"),
    ("h7.enable", 1, 0, 1, "-", "H-7: contactor feedback supervision on"),
    ("h7.open_ms", 100, 10, 1000, "ms", "H-7: K1/K2 feedback must read open this long after an open command"),
    ("h7.close_ms", 100, 10, 1000, "ms", "H-7: K1/K2 feedback must read closed this long after a close command"),
    ("h7.deb_ms", 10, 0, 100, "ms", "H-7: feedback disagreement must persist this long (contact bounce)"),
    ("h7.v_check", 0, 0, 1, "-", "H-7: also call welded if inside follows outside after open (needs inside discharge)"),
    ("h7.weld_dv", 100, 1, 1000, "0.1 V", "H-7: |v_inside - v_outside| below this counts as 'follows'"),
    ("h7.live_dv", 600, 0, 10000, "0.1 V", "H-7: voltages above this count as live"),
    ("h8.ma", 30, 1, 1000, "mA", "H-8: residual current trip above (seed 002: 30 mA)"),
    ("h8.deb_ms", 0, 0, 50, "ms", "H-8 debounce (seed 002: act within 100 ms)"),
    ("h10.enable", 1, 0, 1, "-", "H-10: trip on AC mains loss while the output is live"),
    ("h10.deb_ms", 20, 0, 500, "ms", "H-10 debounce"),
)
config.register(CONFIG_SCHEMA)


def _cross(c):
    if c["h5.lo_mv"] >= c["h5.hi_mv"]:
        return "h5.lo_mv must be below h5.hi_mv"
    if c["h6.derate_t"] >= c["h6.trip_t"]:
        return "h6.derate_t must be below h6.trip_t"
    if c["h6.trip_t"] >= c["h6.sensor_hi"]:
        return "h6.trip_t must be below h6.sensor_hi"
    return None


if _cross not in config.CROSS_CHECKS:
    config.CROSS_CHECKS.append(_cross)


# (codes: safety.risk's H1..H10, 101..110, written out as the kernel
# ``safety.protections._hprot`` returns them)
def cst_fault_of(code):
    """CST fault mask for hard-protection code (no allocation)."""
    if code == 103:                     # H-3 E-stop
        return _F_ESTOP
    if code == 105 or code == 106:      # H-5 CC1, H-6 gun temperature
        return _F_CONNECTOR
    if code == 110:                     # H-10 mains
        return _F_NO_ENERGY
    return _F_OTHER


def cst_error_of(code):
    """CST error mask for hard-protection code (no allocation)."""
    if code == 101:                     # H-1 overvoltage
        return _E_VOLTAGE
    if code == 102:                     # H-2 overcurrent
        return _E_CURRENT
    return 0
