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

The settings (``h1.*`` .. ``h10.*``) and the CST codes of each trip are
declared in ``safety.protsettings``; this module is the evaluation: the
state arrays built from the settings and the kernel that runs every tick.
"""
import micropython
from array import array
from micropython import const
import config
# the settings read below (declared there) and the CST codes of a trip
# (re-exported: the supervisor's import)
from safety.protsettings import cst_fault_of, cst_error_of  # noqa: F401

K_OK = const(0)
K_WELDED = const(1)
K_NO_CLOSE = const(2)

_NH = const(11)   # index = code - 100

# The state the kernel (``_hprot``) works on: one int array ``Protections._st``
#   [_C ...]   thresholds (all >= 0: the H-6 sensor low limit is stored negated)
#   [_DEB + i] debounce of H-i, ms
#   [_VAL + i] last value of H-i (diagnostics, the event value of a trip)
#   [_KCMD]    K1/K2 command applied (track_k), [_KSINCE] when (ticks ms mod 2**30)
#   [_KFAULT], [_SF], [_LIM]   K_OK/K_WELDED/K_NO_CLOSE, sensor fault, current limit
# and one bytearray ``Protections._fl``: [i] = H-i's condition on (``on``),
# [_ACT + i] = H-i active.  Only values the kernel reads back are in the int
# array, and only non-negative ones: a ptr32 load sign-extends on a 32-bit
# port but zero-extends on x64, so a negative entry would read differently.
_VMAX = const(0)
_IMAX = const(1)
_INSMIN = const(2)
_CCLO = const(3)
_CCHI = const(4)
_TDER = const(5)
_TTRIP = const(6)
_IMIN = const(7)
_NSLO = const(8)
_SHI = const(9)
_KEN = const(10)
_KOPEN = const(11)
_KCLOSE = const(12)
_VCHECK = const(13)
_WELDDV = const(14)
_LIVEDV = const(15)
_LEAK = const(16)
_MAINSEN = const(17)
_RATEDI = const(18)
_DEB = const(20)
_VAL = const(32)
_KCMD = const(44)
_KSINCE = const(45)
_KFAULT = const(46)
_SF = const(47)
_LIM = const(48)
_STN = const(50)
_ACT = const(11)
_MASK = const(0x3FFFFFFF)    # ticks ms differences (modulo 2**30: exact below 2**29 ms)

class Protections:
    def __init__(self, c):
        self.rated_i = config.get(c, "rating.max_i")
        rated_v = config.get(c, "rating.max_v")
        self.v_max = rated_v * config.get(c, "h1.permille") // 1000
        self.i_max = self.rated_i * config.get(c, "h2.permille") // 1000
        # threshold kOhm = ohm/V * V / 1000 ; rated_v in 0.1 V
        self.ins_min = config.get(c, "h4.ohm_per_v") * rated_v // 10000
        cc_lo = config.get(c, "h5.lo_mv")
        cc_hi = config.get(c, "h5.hi_mv")
        t_derate = config.get(c, "h6.derate_t")
        t_trip = config.get(c, "h6.trip_t")
        i_min = config.get(c, "h6.min_dA")
        s_lo = config.get(c, "h6.sensor_lo")
        s_hi = config.get(c, "h6.sensor_hi")
        k_en = config.get(c, "h7.enable")
        self.k_open_ms = config.get(c, "h7.open_ms")
        k_close_ms = config.get(c, "h7.close_ms")
        self.v_check = config.get(c, "h7.v_check")
        self.weld_dv = config.get(c, "h7.weld_dv")
        self.live_dv = config.get(c, "h7.live_dv")
        leak_ma = config.get(c, "h8.ma")
        mains_en = config.get(c, "h10.enable")
        st = array("i", [0] * _STN)
        for k, v in ((_VMAX, self.v_max), (_IMAX, self.i_max), (_INSMIN, self.ins_min),
                     (_CCLO, cc_lo), (_CCHI, cc_hi), (_TDER, t_derate),
                     (_TTRIP, t_trip), (_IMIN, i_min), (_NSLO, -s_lo),
                     (_SHI, s_hi), (_KEN, k_en), (_KOPEN, self.k_open_ms),
                     (_KCLOSE, k_close_ms), (_VCHECK, self.v_check),
                     (_WELDDV, self.weld_dv), (_LIVEDV, self.live_dv), (_LEAK, leak_ma),
                     (_MAINSEN, mains_en), (_RATEDI, self.rated_i)):
            if v < 0:
                raise ValueError("protection threshold < 0")   # (schema ranges exclude it)
            st[k] = v
        for h, key in ((1, "h1.deb_ms"), (2, "h2.deb_ms"), (3, "h3.deb_ms"), (4, "h4.deb_ms"),
                       (5, "h5.deb_ms"), (6, "h6.deb_ms"), (7, "h7.deb_ms"), (8, "h8.deb_ms"),
                       (10, "h10.deb_ms")):
            st[_DEB + h] = config.get(c, key)
        st[_LIM] = self.rated_i
        self._st = st
        mv = memoryview(st)
        self.deb = mv[_DEB:_DEB + _NH]       # debounce per protection, ms
        self.value = mv[_VAL:_VAL + _NH]     # last value per protection (diagnostics)
        fl = bytearray(2 * _NH)
        self._fl = fl
        fv = memoryview(fl)
        self.on = fv[0:_NH]                  # condition currently true
        self.active = fv[_ACT:_ACT + _NH]    # protection has the inputs / context it needs
        # always active (evaluate updates only the conditional ones: H-4, H-5, H-10)
        for h in (1, 2, 3, 6, 8):
            self.active[h] = 1
        self.active[7] = 1 if k_en else 0
        self.first = [0] * _NH         # first seen (start of debounce), ticks ms
        self.limit = [0] * _NH
        self.limit[1] = self.v_max
        self.limit[2] = self.i_max
        self.limit[4] = self.ins_min
        self.limit[6] = t_trip
        self.limit[8] = leak_ma
        self.t_first = 0

    def __getattr__(self, name):
        # Kernel state, read as attributes (not properties: a class with a
        # property makes every attribute store on it look the class up first).
        # ``k_since`` is modulo 2**30 (only differences are meaningful).
        k = _STATE.get(name)
        if k is not None:
            return self._st[k]
        raise AttributeError(name)

    def track_k(self, now, k):
        """Record the K1/K2 command actually applied this tick."""
        k = 1 if k else 0
        st = self._st
        if k != st[_KCMD]:
            st[_KCMD] = k
            st[_KSINCE] = now & _MASK

    def evaluate(self, now, inp, charging):
        """Evaluate every protection once; return the code that fires or 0.

        Runs every fast tick (5 ms): the work is ``_hprot``, a viper
        function over the preallocated arrays (see its docstring)."""
        code = _hprot(now, inp, charging, self._st, self._fl, self.first)
        if code:
            self.t_first = self.first[code - 100]
        return code


_STATE = {"k_cmd": _KCMD, "k_since": _KSINCE, "k_fault": _KFAULT, "sensor_fault": _SF,
          "current_limit": _LIM}


@micropython.viper
def _hprot(now, inp, charging, st: ptr32, fl: ptr8, first) -> int:
    """Every hard protection, once: returns the code that fires (priority
    order) or 0.  The tick's hot path in machine code (viper): thresholds,
    debounce flags and values in the arrays of ``Protections`` (``st``,
    ``fl``), the inputs read once from ``inp`` (an ``Inputs``), integers
    only, no allocation.  ``first`` (the list of debounce start times,
    exact ticks) is touched only when a condition starts or holds.

    Same order, same state updates, same result as the independent
    oracle ``tests/mp/refimpl.py`` (tests/mp/test_protections.py compares
    them on random inputs, on unix (x64) and on the target (armv7m)).  Inputs are board integers (``board.Inputs``: 32-bit at
    most, the SIL link's i32); magnitudes are compared without negating
    (|i_out| of -2**31 would overflow a 32-bit machine int)."""
    n = int(now)
    code = 0
    k_cmd = st[_KCMD]
    vi = int(inp.v_inside)
    vo = int(inp.v_outside)
    kfb = int(inp.k12_fb)
    live = 0
    if k_cmd != 0 or kfb != 0:
        live = 1
    # H-3 E-stop
    x = int(inp.estop)
    st[_VAL + 3] = x
    if x != 0:
        e = 0
        if fl[3] == 0:
            fl[3] = 1
            first[3] = now
        else:
            e = (n - int(first[3])) & _MASK
        if e >= st[_DEB + 3]:
            code = 103
    else:
        fl[3] = 0
    # H-8 leakage
    x = int(inp.leakage_ma)
    st[_VAL + 8] = x
    if x > st[_LEAK]:
        e = 0
        if fl[8] == 0:
            fl[8] = 1
            first[8] = now
        else:
            e = (n - int(first[8])) & _MASK
        if e >= st[_DEB + 8] and code == 0:
            code = 108
    else:
        fl[8] = 0
    # H-1 output overvoltage: either side of K1/K2
    x = vi
    if vo > vi:
        x = vo
    st[_VAL + 1] = x
    if x > st[_VMAX]:
        e = 0
        if fl[1] == 0:
            fl[1] = 1
            first[1] = now
        else:
            e = (n - int(first[1])) & _MASK
        if e >= st[_DEB + 1] and code == 0:
            code = 101
    else:
        fl[1] = 0
    # H-2 output overcurrent (either direction)
    x = int(inp.i_out)
    lim = st[_IMAX]
    if x < 0:
        st[_VAL + 2] = 0 - x
    else:
        st[_VAL + 2] = x
    if x > lim or x < 0 - lim:
        e = 0
        if fl[2] == 0:
            fl[2] = 1
            first[2] = now
        else:
            e = (n - int(first[2])) & _MASK
        if e >= st[_DEB + 2] and code == 0:
            code = 102
    else:
        fl[2] = 0
    # H-4 insulation, only while the output is live and a reading exists
    x = int(inp.insulation_kohm)
    st[_VAL + 4] = x
    if live != 0 and x >= 0:
        fl[_ACT + 4] = 1
        if x < st[_INSMIN]:
            e = 0
            if fl[4] == 0:
                fl[4] = 1
                first[4] = now
            else:
                e = (n - int(first[4])) & _MASK
            if e >= st[_DEB + 4] and code == 0:
                code = 104
        else:
            fl[4] = 0
    else:
        fl[_ACT + 4] = 0
        fl[4] = 0
    # H-5 CC1 band, while charging or live
    x = int(inp.cc1_mv)
    st[_VAL + 5] = x
    if int(charging) != 0 or live != 0:
        fl[_ACT + 5] = 1
        if x < st[_CCLO] or x > st[_CCHI]:
            e = 0
            if fl[5] == 0:
                fl[5] = 1
                first[5] = now
            else:
                e = (n - int(first[5])) & _MASK
            if e >= st[_DEB + 5] and code == 0:
                code = 105
        else:
            fl[5] = 0
    else:
        fl[_ACT + 5] = 0
        fl[5] = 0
    # H-7 contactor feedback
    kf = 0
    st[_VAL + 7] = kfb
    if st[_KEN] != 0:
        el = (n - st[_KSINCE]) & _MASK
        if k_cmd != 0:
            if kfb == 0 and el >= st[_KCLOSE]:
                kf = 2                              # K_NO_CLOSE
        elif el >= st[_KOPEN]:
            if kfb != 0:
                kf = 1                              # K_WELDED
            elif st[_VCHECK] != 0:
                d = vi - vo
                if d < 0:
                    d = 0 - d
                lv = st[_LIVEDV]
                if vi > lv and vo > lv and d < st[_WELDDV]:
                    kf = 1
    if kf != 0:
        e = 0
        if fl[7] == 0:
            fl[7] = 1
            first[7] = now
        else:
            e = (n - int(first[7])) & _MASK
        if e >= st[_DEB + 7]:
            st[_KFAULT] = kf
            if code == 0:
                code = 107
        else:
            st[_KFAULT] = 0
    else:
        fl[7] = 0
        st[_KFAULT] = 0
    # H-6 gun temperature: sensor plausibility, derate, trip
    t = int(inp.t_gun_pos)
    t2 = int(inp.t_gun_neg)
    lo = 0 - st[_NSLO]
    hi = st[_SHI]
    sf = 0
    if t < lo or t > hi or t2 < lo or t2 > hi:
        sf = 1
    st[_SF] = sf
    if t2 > t:
        t = t2
    st[_VAL + 6] = t
    lim = st[_RATEDI]
    tt = st[_TTRIP]
    imin = st[_IMIN]
    if sf != 0 or t >= tt:
        lim = imin
    elif t > st[_TDER]:
        span = tt - st[_TDER]                # > 0 here
        lim = imin + (lim - imin) * (tt - t) // span
    st[_LIM] = lim
    if sf != 0 or t > tt:
        e = 0
        if fl[6] == 0:
            fl[6] = 1
            first[6] = now
        else:
            e = (n - int(first[6])) & _MASK
        if e >= st[_DEB + 6] and code == 0:
            code = 106
    else:
        fl[6] = 0
    # H-10 mains, while live
    x = int(inp.mains_ok)
    st[_VAL + 10] = x
    if st[_MAINSEN] != 0 and live != 0:
        fl[_ACT + 10] = 1
        if x == 0:
            e = 0
            if fl[10] == 0:
                fl[10] = 1
                first[10] = now
            else:
                e = (n - int(first[10])) & _MASK
            if e >= st[_DEB + 10] and code == 0:
                code = 110
        else:
            fl[10] = 0
    else:
        fl[_ACT + 10] = 0
        fl[10] = 0
    return code
