"""Hard protections H-1..H-8 (+ H-10 mains), evaluated every fast tick.

Requirements section 5.  Not debounced by the 5 s rule: each protection
has its own (short, configurable, default 0 except CC1 and mains)
debounce, measured on the clock.  ``evaluate`` reads ``board.Inputs``
only, allocates nothing, never raises, and returns the code of the
highest-priority protection that fires (0 = none); ``t_first`` is when
that condition was first seen (start of its debounce), which is the
"cause" time the trip path's 100 ms deadline counts from.

Priority (first listed wins when several fire on the same tick):
H-3 E-stop, H-8 leakage, H-1 overvoltage, H-2 overcurrent, H-4 insulation,
H-5 CC1, H-7 contactor, H-6 gun temperature, H-10 mains.

H-6 also derates: ``current_limit`` (0.1 A) falls linearly from the rated
current at ``h6.derate_t`` to ``h6.min_dA`` at ``h6.trip_t``; above
``h6.trip_t`` it trips.  A gun sensor outside ``h6.sensor_lo..hi`` (open
or shorted NTC) trips too: without the sensor the connector is unguarded.

H-7 watches the contactor feedback against the command that was applied
(``track_k``): still closed ``h7.open_ms`` after an open command = welded;
still open ``h7.close_ms`` after a close command = failed to close; a
disagreement must persist ``h7.deb_ms`` (contact bounce).
"""
from micropython import const
import config
from rt.clock import ticks_diff
from safety.risk import H1, H2, H3, H4, H5, H6, H7, H8, H9, H10

# CST masks (values of gbt.messages; local so this module stands alone)
_F_OVERTEMP = const(0x001)
_F_CONNECTOR = const(0x004)
_F_NO_ENERGY = const(0x040)
_F_ESTOP = const(0x100)
_F_OTHER = const(0x400)
_E_CURRENT = const(0x01)
_E_VOLTAGE = const(0x04)

K_OK = const(0)
K_WELDED = const(1)
K_NO_CLOSE = const(2)

_NH = const(11)   # index = code - 100

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


_cfg = config.get   # setting, or its registered default


def cst_fault_of(code):
    """CST fault mask for hard-protection code (no allocation)."""
    if code == H3:
        return _F_ESTOP
    if code == H5 or code == H6:
        return _F_CONNECTOR
    if code == H10:
        return _F_NO_ENERGY
    return _F_OTHER


def cst_error_of(code):
    if code == H1:
        return _E_VOLTAGE
    if code == H2:
        return _E_CURRENT
    return 0


class Protections:
    def __init__(self, c):
        self.rated_i = _cfg(c, "rating.max_i")
        rated_v = _cfg(c, "rating.max_v")
        self.v_max = rated_v * _cfg(c, "h1.permille") // 1000
        self.i_max = self.rated_i * _cfg(c, "h2.permille") // 1000
        # threshold kOhm = ohm/V * V / 1000 ; rated_v in 0.1 V
        self.ins_min = _cfg(c, "h4.ohm_per_v") * rated_v // 10000
        self.cc_lo = _cfg(c, "h5.lo_mv")
        self.cc_hi = _cfg(c, "h5.hi_mv")
        self.t_derate = _cfg(c, "h6.derate_t")
        self.t_trip = _cfg(c, "h6.trip_t")
        self.i_min = _cfg(c, "h6.min_dA")
        self.s_lo = _cfg(c, "h6.sensor_lo")
        self.s_hi = _cfg(c, "h6.sensor_hi")
        self.k_en = _cfg(c, "h7.enable")
        self.k_open_ms = _cfg(c, "h7.open_ms")
        self.k_close_ms = _cfg(c, "h7.close_ms")
        self.v_check = _cfg(c, "h7.v_check")
        self.weld_dv = _cfg(c, "h7.weld_dv")
        self.live_dv = _cfg(c, "h7.live_dv")
        self.leak_ma = _cfg(c, "h8.ma")
        self.mains_en = _cfg(c, "h10.enable")
        deb = [0] * _NH
        deb[1] = _cfg(c, "h1.deb_ms")
        deb[2] = _cfg(c, "h2.deb_ms")
        deb[3] = _cfg(c, "h3.deb_ms")
        deb[4] = _cfg(c, "h4.deb_ms")
        deb[5] = _cfg(c, "h5.deb_ms")
        deb[6] = _cfg(c, "h6.deb_ms")
        deb[7] = _cfg(c, "h7.deb_ms")
        deb[10] = _cfg(c, "h10.deb_ms")
        deb[8] = _cfg(c, "h8.deb_ms")
        self.deb = deb
        self.on = bytearray(_NH)       # condition currently true
        self.active = bytearray(_NH)   # protection has the inputs / context it needs
        # always active (evaluate updates only the conditional ones: H-4, H-5, H-10)
        for h in (1, 2, 3, 6, 8):
            self.active[h] = 1
        self.active[7] = 1 if self.k_en else 0
        self.first = [0] * _NH         # first seen (start of debounce)
        self.value = [0] * _NH         # last value per protection (diagnostics)
        self.limit = [0] * _NH
        self.limit[1] = self.v_max
        self.limit[2] = self.i_max
        self.limit[4] = self.ins_min
        self.limit[6] = self.t_trip
        self.limit[8] = self.leak_ma
        self.current_limit = self.rated_i
        self.t_first = 0
        self.k_cmd = 0
        self.k_since = 0
        self.k_fault = K_OK
        self.sensor_fault = 0

    def track_k(self, now, k):
        """Record the K1/K2 command actually applied this tick."""
        k = 1 if k else 0
        if k != self.k_cmd:
            self.k_cmd = k
            self.k_since = now

    def _deb(self, i, cond, now):
        """Debounce of protection ``i`` (reference form: ``evaluate``
        inlines exactly this for speed; tests and tools may call it)."""
        if not cond:
            self.on[i] = 0
            return 0
        if not self.on[i]:
            self.on[i] = 1
            self.first[i] = now
        return 1 if ticks_diff(now, self.first[i]) >= self.deb[i] else 0

    def evaluate(self, now, inp, charging):
        """Evaluate every protection once; return the code that fires or 0.

        Runs every fast tick (5 ms), so it is written for the interpreter:
        the debounce of ``_deb`` is inlined per protection (a Python call
        costs as much as the whole comparison), the arrays and thresholds
        are read into locals once, and the ``active`` flags that never
        change (H-1, H-2, H-3, H-6, H-8 always; H-7 = ``h7.enable``) are set
        in ``__init__``.  Same order, same state updates, same result as
        calling ``_deb`` for every protection."""
        on = self.on
        first = self.first
        deb = self.deb
        val = self.value
        act = self.active
        code = 0
        k_cmd = self.k_cmd
        kfb = inp.k12_fb
        live = k_cmd or kfb
        # H-3 E-stop
        x = inp.estop
        val[3] = x
        if x:
            if not on[3]:
                on[3] = 1
                first[3] = now
            if ticks_diff(now, first[3]) >= deb[3]:
                code = H3
        else:
            on[3] = 0
        # H-8 leakage
        x = inp.leakage_ma
        val[8] = x
        if x > self.leak_ma:
            if not on[8]:
                on[8] = 1
                first[8] = now
            if ticks_diff(now, first[8]) >= deb[8] and not code:
                code = H8
        else:
            on[8] = 0
        # H-1 output overvoltage: either side of K1/K2
        vi = inp.v_inside
        vo = inp.v_outside
        x = vo if vo > vi else vi
        val[1] = x
        if x > self.v_max:
            if not on[1]:
                on[1] = 1
                first[1] = now
            if ticks_diff(now, first[1]) >= deb[1] and not code:
                code = H1
        else:
            on[1] = 0
        # H-2 output overcurrent (either direction)
        x = inp.i_out
        if x < 0:
            x = -x
        val[2] = x
        if x > self.i_max:
            if not on[2]:
                on[2] = 1
                first[2] = now
            if ticks_diff(now, first[2]) >= deb[2] and not code:
                code = H2
        else:
            on[2] = 0
        # H-4 insulation, only while the output is live and a reading exists
        x = inp.insulation_kohm
        val[4] = x
        if live and x >= 0:
            act[4] = 1
            if x < self.ins_min:
                if not on[4]:
                    on[4] = 1
                    first[4] = now
                if ticks_diff(now, first[4]) >= deb[4] and not code:
                    code = H4
            else:
                on[4] = 0
        else:
            act[4] = 0
            on[4] = 0
        # H-5 CC1 band, while charging or live
        x = inp.cc1_mv
        val[5] = x
        if charging or live:
            act[5] = 1
            if x < self.cc_lo or x > self.cc_hi:
                if not on[5]:
                    on[5] = 1
                    first[5] = now
                if ticks_diff(now, first[5]) >= deb[5] and not code:
                    code = H5
            else:
                on[5] = 0
        else:
            act[5] = 0
            on[5] = 0
        # H-7 contactor feedback
        kf = K_OK
        val[7] = kfb
        if self.k_en:
            el = ticks_diff(now, self.k_since)
            if k_cmd:
                if not kfb and el >= self.k_close_ms:
                    kf = K_NO_CLOSE
            elif el >= self.k_open_ms:
                if kfb:
                    kf = K_WELDED
                elif self.v_check:
                    d = vi - vo
                    if d < 0:
                        d = -d
                    lv = self.live_dv
                    if vi > lv and vo > lv and d < self.weld_dv:
                        kf = K_WELDED
        if kf:
            if not on[7]:
                on[7] = 1
                first[7] = now
            if ticks_diff(now, first[7]) >= deb[7]:
                self.k_fault = kf
                if not code:
                    code = H7
            else:
                self.k_fault = K_OK
        else:
            on[7] = 0
            self.k_fault = K_OK
        # H-6 gun temperature: sensor plausibility, derate, trip
        t = inp.t_gun_pos
        t2 = inp.t_gun_neg
        lo = self.s_lo
        hi = self.s_hi
        sf = t < lo or t > hi or t2 < lo or t2 > hi
        self.sensor_fault = 1 if sf else 0
        if t2 > t:
            t = t2
        val[6] = t
        lim = self.rated_i
        tt = self.t_trip
        if sf or t >= tt:
            lim = self.i_min
        elif t > self.t_derate:
            span = tt - self.t_derate     # > 0 here
            lim = self.i_min + (lim - self.i_min) * (tt - t) // span
        self.current_limit = lim
        if sf or t > tt:
            if not on[6]:
                on[6] = 1
                first[6] = now
            if ticks_diff(now, first[6]) >= deb[6] and not code:
                code = H6
        else:
            on[6] = 0
        # H-10 mains, while live
        x = inp.mains_ok
        val[10] = x
        if self.mains_en and live:
            act[10] = 1
            if not x:
                if not on[10]:
                    on[10] = 1
                    first[10] = now
                if ticks_diff(now, first[10]) >= deb[10] and not code:
                    code = H10
            else:
                on[10] = 0
        else:
            act[10] = 0
            on[10] = 0
        if code:
            self.t_first = first[code - 100]
        return code
