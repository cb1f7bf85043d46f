"""Output control during charging: limits, current ramp, energy and time.

The power stage takes a voltage set-point and a current limit.  Both BCL
modes map onto that pair: in CC mode (0x02) the current demand is the
regulated quantity and the voltage demand is the ceiling; in CV mode (0x01)
the voltage demand is regulated and the current demand is the ceiling.  So
``v_set = min(BCL V, BCP max V, rated max V)`` and ``i_set`` = the ramped
``min(BCL I, BCP max I, rated max I, i_cap, rated power / voltage)``.

The ramp is kept in milli-deciamperes so any slope (0.1 A/s) times any tick
length (ms) adds up exactly.  Energy is integrated in W*ms and carried into
whole Wh, so the accumulators stay far below 2**30 (small ints on 32-bit
ports) for any realistic input; inputs are clamped first so garbage cannot
make a big int either.  Nothing here allocates.
"""
import micropython
from micropython import const

_V_CLAMP = const(20000)      # 2000 V (0.1 V)
_I_CLAMP = const(12000)      # 1200 A (0.1 A)
_DT_MAX = const(100)         # ms: longer gaps count as 100 ms
_WH_MJ = const(3600000)      # 1 Wh in mJ (W*ms)
_MS_CAP = const(0x1FFFFFFF)


class Control:
    def __init__(self, c):
        self.c = c
        self.reset()

    def reset(self):
        """New plug session: nothing delivered yet."""
        self.i_m = 0             # ramped current, 0.001 x 0.1 A
        self.target = 0          # last target current (0.1 A)
        self.v_set = 0           # last voltage set-point of charge_step (0.1 V)
        self.energy_wh = 0
        self._e_mj = 0           # remainder below 1 Wh, mJ
        self.charge_ms = 0       # cumulative charging time

    def i_set(self):
        return self.i_m // 1000

    def limit(self, bms, i_cap, v_meas):
        """Target current (0.1 A) from the BMS demand and every limit."""
        c = self.c
        t = bms.req_i
        if t < 0:
            return 0
        if 0 <= bms.max_i < t:
            t = bms.max_i
        if c.max_i < t:
            t = c.max_i
        if i_cap < t:
            t = i_cap
        v = v_meas if v_meas > 100 else 100
        if v > _V_CLAMP:
            v = _V_CLAMP
        ip = c.max_p * 10000 // v    # 0.1 kW * 10000 / 0.1 V = 0.1 A
        if ip < t:
            t = ip
        return t if t > 0 else 0

    def v_limit(self, bms):
        c = self.c
        v = bms.req_v
        if v < 0:
            return 0
        if 0 <= bms.max_v < v:
            v = bms.max_v
        if c.max_v < v:
            v = c.max_v
        return v

    def ramp(self, target, dt, up, down):
        """Move the current toward ``target`` by at most slope * dt."""
        if dt < 0:
            dt = 0
        elif dt > _DT_MAX:
            dt = _DT_MAX
        self.target = target
        tm = target * 1000
        if self.i_m < tm:
            self.i_m += up * dt
            if self.i_m > tm:
                self.i_m = tm
        elif self.i_m > tm:
            self.i_m -= down * dt
            if self.i_m < tm:
                self.i_m = tm
        return self.i_m // 1000

    def drop(self):
        """Set-point straight to zero (trip: the output is already cut)."""
        self.i_m = 0

    def integrate(self, v, i, dt, charging):
        """Add v * i * dt to the energy; ``charging`` also adds to the time."""
        if dt <= 0:
            return
        if dt > _DT_MAX:
            dt = _DT_MAX
        if charging and self.charge_ms < _MS_CAP:
            self.charge_ms += dt
        if v <= 0 or i <= 0:
            return
        if v > _V_CLAMP:
            v = _V_CLAMP
        if i > _I_CLAMP:
            i = _I_CLAMP
        self._e_mj += (v * i // 100) * dt        # W * ms = mJ
        while self._e_mj >= _WH_MJ:
            self._e_mj -= _WH_MJ
            self.energy_wh += 1

    def minutes(self):
        return self.charge_ms // 60000

    @micropython.viper
    def charge_step(self, bms, i_cap: int, v: int, i: int, dt: int, up: int, down: int,
                    demand: int) -> int:
        """One charging tick in one call (the session's 10 ms hot path):
        ``ramp(limit(bms, i_cap, v) if demand else 0, dt, up, down)``,
        ``v_set = v_limit(bms)`` and ``integrate(v, i, dt, True)``, with the
        same arithmetic as those methods (kept in step with them: tests/mp/
        test_session_heap.py compares both on the same inputs).  Returns the
        current set-point; the voltage set-point is left in ``v_set``.

        Machine code (viper): in bytecode this is ~10 kinstr per tick on the
        target, nearly all of it interpreter overhead of small-int
        arithmetic (docs/performance.md).  Every value stays far below 2**30
        (the clamps above), so 32-bit machine words give the same results as
        Python ints, and the attributes stay small ints."""
        c = self.c
        # -- limit
        t = 0
        if demand:
            t = int(bms.req_i)
            if t < 0:
                t = 0
            else:
                m = int(bms.max_i)
                if 0 <= m and m < t:
                    t = m
                m = int(c.max_i)
                if m < t:
                    t = m
                if i_cap < t:
                    t = i_cap
                vv = v if v > 100 else 100
                if vv > _V_CLAMP:
                    vv = _V_CLAMP
                m = int(c.max_p) * 10000 // vv
                if m < t:
                    t = m
                if t < 0:
                    t = 0
        # -- v_limit
        w = int(bms.req_v)
        if w < 0:
            w = 0
        else:
            m = int(bms.max_v)
            if 0 <= m and m < w:
                w = m
            m = int(c.max_v)
            if m < w:
                w = m
        self.v_set = w
        # -- ramp
        self.target = t
        d = dt
        if d < 0:
            d = 0
        elif d > _DT_MAX:
            d = _DT_MAX
        tm = t * 1000
        im = int(self.i_m)
        if im < tm:
            im += up * d
            if im > tm:
                im = tm
            self.i_m = im
        elif im > tm:
            im -= down * d
            if im < tm:
                im = tm
            self.i_m = im
        # -- integrate (charging)
        if d > 0:
            cm = int(self.charge_ms)
            if cm < _MS_CAP:
                self.charge_ms = cm + d
            if v > 0 and i > 0:
                if v > _V_CLAMP:
                    v = _V_CLAMP
                if i > _I_CLAMP:
                    i = _I_CLAMP
                e = int(self._e_mj) + (v * i // 100) * d
                if e >= _WH_MJ:
                    wh = int(self.energy_wh)
                    while e >= _WH_MJ:
                        e -= _WH_MJ
                        wh += 1
                    self.energy_wh = wh
                self._e_mj = e
        return im // 1000
