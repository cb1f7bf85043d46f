"""Reference implementations: code of the firmware's hot paths as it was in
Python before it became machine code (viper), kept verbatim, for the tests
that compare the two on random inputs (not a test script itself):
``RefProtections.evaluate`` vs ``safety.protections._hprot``
(tests/mp/test_protections.py), ``ref_integrate`` vs
``safety.checks.Ctx.integrate`` (tests/mp/test_checks.py)."""
import config
from rt.clock import ticks_diff

_cfg = config.get


class RefProtections:
    """The protection tick as it was in Python (before the viper kernel),
    verbatim: the reference the kernel is compared with."""

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
        deb = [0] * 11
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
        self.on = bytearray(11)       # condition currently true
        self.active = bytearray(11)   # protection has the inputs / context it needs
        # always active (evaluate updates only the conditional ones: H-4, H-5, H-10)
        for h in (1, 2, 3, 6, 8):
            self.active[h] = 1
        self.active[7] = 1 if self.k_en else 0
        self.first = [0] * 11         # first seen (start of debounce)
        self.value = [0] * 11         # last value per protection (diagnostics)
        self.limit = [0] * 11
        self.limit[1] = self.v_max
        self.limit[2] = self.i_max
        self.limit[4] = self.ins_min
        self.limit[6] = self.t_trip
        self.limit[8] = self.leak_ma
        self.current_limit = self.rated_i
        self.t_first = 0
        self.k_cmd = 0
        self.k_since = 0
        self.k_fault = 0
        self.sensor_fault = 0

    def track_k(self, now, k):
        """Record the K1/K2 command actually applied this tick."""
        k = 1 if k else 0
        if k != self.k_cmd:
            self.k_cmd = k
            self.k_since = now

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
                code = 103
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
                code = 108
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
                code = 101
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
                code = 102
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
                    code = 104
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
                    code = 105
            else:
                on[5] = 0
        else:
            act[5] = 0
            on[5] = 0
        # H-7 contactor feedback
        kf = 0
        val[7] = kfb
        if self.k_en:
            el = ticks_diff(now, self.k_since)
            if k_cmd:
                if not kfb and el >= self.k_close_ms:
                    kf = 2
            elif el >= self.k_open_ms:
                if kfb:
                    kf = 1
                elif self.v_check:
                    d = vi - vo
                    if d < 0:
                        d = -d
                    lv = self.live_dv
                    if vi > lv and vo > lv and d < self.weld_dv:
                        kf = 1
        if kf:
            if not on[7]:
                on[7] = 1
                first[7] = now
            if ticks_diff(now, first[7]) >= deb[7]:
                self.k_fault = kf
                if not code:
                    code = 107
            else:
                self.k_fault = 0
        else:
            on[7] = 0
            self.k_fault = 0
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
                code = 106
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
                    code = 110
            else:
                on[10] = 0
        else:
            act[10] = 0
            on[10] = 0
        if code:
            self.t_first = first[code - 100]
        return code


def ref_integrate(ctx, now):
    """safety.checks.Ctx.integrate as it was (on a plain object ``ctx``)."""
    dt = ticks_diff(now, ctx._last)
    ctx._last = now
    if dt <= 0:
        return
    if dt > 5000:
        dt = 5000
    i = ctx.inp.i_out
    v = ctx.inp.v_outside
    if i < -10000 or i > 10000 or v < 0 or v > 15000:
        return
    p10 = v * i // 1000
    a = ctx._wacc + p10 * dt
    ctx.wh += a // 360000
    ctx._wacc = a % 360000
    q = ctx._qacc + i * dt
    ctx.cah += q // 360000
    ctx._qacc = q % 360000
    if ctx.wh > 1000000:
        ctx.wh = 1000000
    elif ctx.wh < -1000000:
        ctx.wh = -1000000
