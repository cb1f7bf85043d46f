"""Real-time safety checks S-1..S-13 (requirements section 3, seed 000 5.1).

Each check (a ``Check`` of id 1..13, its condition in ``_s1`` .. ``_s13``)
only answers "is the condition true right now?": ``eval(ctx, now)`` returns ``TRUE`` (1), ``FALSE`` (0) or
``INACTIVE`` (-1) and leaves ``value`` / ``limit`` (what was compared, for
diagnostics) and, when inactive, ``why`` (which input is missing or
untrusted).  Persistence (5 s), release, levels and actions live in
``safety.risk`` and ``safety.supervisor``; keeping them apart makes every
condition testable on its own.

Inputs are named per check in ``INPUTS``.  They come from one ``Ctx``:

    ctx.bms    gbt.bmsdata.BmsData (NA = -1 for "not received / not available")
    ctx.inp    board.Inputs (charger measurements, 0.1 V / 0.1 A)
    ctx.stale  bit mask of BMS messages the link considers stale/untrusted
               (``STALE_*``; set by the app from the link's last-seen times)
    ctx.soc0   SOC at session start, 0.1 %
    ctx.wh     energy delivered this session, Wh (integrated here from U*I)
    ctx.cah    charge delivered this session, 0.01 Ah

Integer math only.  On a 32-bit port a small int holds +-2**30, so every
product below is bounded (see docs/safety.md "integer ranges"): going
past it would allocate a long int on the hot path.  Nothing here divides
by a value that can be zero and no input value can raise.
"""
import micropython
from array import array
from micropython import const
import config
from rt.clock import ticks_diff, ticks_add

NA = const(-1)
TRUE = const(1)
FALSE = const(0)
INACTIVE = const(-1)

# ctx.stale bits: a message the link reports as timed out / untrusted makes
# every check that reads it INACTIVE (visible in diagnostics).
_STALE_BCP = const(0x01)
STALE_BCL = const(0x02)
STALE_BCS = const(0x04)
STALE_BSM = const(0x08)
STALE_BMV = const(0x10)
STALE_BMT = const(0x20)
_STALE_OUT = const(0x40)   # charger's own output measurement untrusted

# CST masks (same values as gbt.messages; local so this module stands alone)
_F_OTHER = const(0x400)
_E_CURRENT = const(0x01)
_E_VOLTAGE = const(0x04)

_MAX_WH = const(1000000)      # clamp: keeps wh * 1000 below 2**30
_TMASK = const(0x3FFFFFFF)    # ticks ms differences modulo 2**30 (exact below 2**29 ms)
_HALF = const(0x20000000)
_MAX_DT = const(5000)         # clamp one integration step (stalled tick)
_WMS_PER_WH = const(360000)   # 10 W * ms per Wh
_DAMS_PER_CAH = const(360000) # 0.1 A * ms per 0.01 Ah

CONFIG_SCHEMA = (
    ("s1.permille", 995, 500, 2000, "0.1 %", "S-1: BCL current demand limit, per mille of BCP max current"),
    ("s2.permille", 15, 1, 500, "0.1 %", "S-2: |I_out - I_BCS| limit, per mille of I_out"),
    ("s2.floor_dA", 10, 0, 1000, "0.1 A", "S-2: deviation never flagged below this (sensor resolution; DECISION)"),
    ("s2.window", 10, 1, 16, "ticks", "S-2: the BMS measurement may be up to this many check ticks old (BCS every 250 ms + transport): the output current's range over the window is added to the limit, so a ramp is not a deviation (DECISION)"),
    ("s3.permille", 1005, 500, 2000, "0.1 %", "S-3: output current limit, per mille of BCP max current"),
    ("s4.permille", 995, 500, 2000, "0.1 %", "S-4: BCL voltage demand limit, per mille of BCP max voltage"),
    ("s5.dv", 50, 1, 1000, "0.1 V", "S-5: |V_out - V_BCS| limit"),
    ("s6.permille", 1005, 500, 2000, "0.1 %", "S-6: output voltage limit, per mille of BCP max voltage"),
    ("s7.permille", 1005, 500, 2000, "0.1 %", "S-7: max cell voltage limit, per mille of BCP max cell voltage"),
    ("s8.spread", 20, 1, 500, "0.01 V", "S-8: max - min cell voltage limit"),
    ("s9.interval_ms", 60000, 1000, 600000, "ms", "S-9: dQ/dV sampling interval"),
    ("s9.soc_min", 70, 0, 100, "%", "S-9: evaluated only above this SOC (CC mode)"),
    ("s9.thresh", 1000, 1, 100000, "0.1 Ah/V", "S-9: |dQ/dV2 - dQ/dV1| limit (DECISION, calibrate per pack)"),
    ("s9.min_dv", 2, 1, 100, "0.01 V", "S-9: |dV| below this = interval not evaluable (no division)"),
    ("s11.sample_ms", 10000, 1000, 60000, "ms", "S-11: temperature sampling period"),
    ("s11.samples", 7, 2, 13, "-", "S-11: rate over (samples - 1) * sample_ms (default 60 s)"),
    ("s11.rate", 20, 1, 1000, "0.1 degC/min", "S-11: max temperature rise rate (DECISION)"),
    ("s13.thresh", 100, 1, 1000, "0.1 %", "S-13: |SOC_BMS - SOC_est| limit (DECISION)"),
    ("s13.eff", 1000, 500, 1000, "0.1 %", "S-13: charge efficiency applied to integral(U*I) (1000 = formula as written)"),
)
config.register(CONFIG_SCHEMA)


class Ctx:
    """Everything the checks read.  One per supervisor, allocated once."""

    def __init__(self, bms, inp):
        self.bms = bms
        self.inp = inp
        self.stale = 0
        self.soc0 = NA
        self.reset(0)

    def reset(self, now):
        """Start of a session: zero the integrators."""
        self.wh = 0
        self.cah = 0
        self._wacc = 0       # remainder, 10 W * ms
        self._qacc = 0       # remainder, 0.1 A * ms
        self._last = now

    @micropython.viper
    def integrate(self, now):
        """Add U*I*dt and I*dt since the last call (measured at the output).

        Machine code (viper), the integer arithmetic of the reference
        comment below, every bound kept: products below 2**30 on every
        port, ``//`` and ``%`` with Python's floor semantics (viper's)::

            dt = ticks_diff(now, _last); _last = now; (dt <= 0: done)
            dt = min(dt, _MAX_DT); skip |i| > 1000 A, v outside 0..1500 V
            p10 = v * i // 1000; a = _wacc + p10 * dt
            wh += a // _WMS_PER_WH; _wacc = a % _WMS_PER_WH
            q = _qacc + i * dt; cah += q // _DAMS_PER_CAH; _qacc = q % ...
            wh clamped to +-_MAX_WH
        """
        n = int(now)
        dt = ((n - int(self._last) + _HALF) & _TMASK) - _HALF
        self._last = now
        if dt <= 0:
            return
        if dt > _MAX_DT:
            dt = _MAX_DT
        inp = self.inp
        i = int(inp.i_out)
        v = int(inp.v_outside)
        if i < -10000 or i > 10000 or v < 0 or v > 15000:
            return               # implausible sample: skip it, never overflow
        p10 = v * i // 1000      # 10 W units: 0.1 V * 0.1 A = 0.01 W
        a = int(self._wacc) + p10 * dt
        wh = int(self.wh) + a // _WMS_PER_WH
        self._wacc = a % _WMS_PER_WH
        q = int(self._qacc) + i * dt
        self.cah = int(self.cah) + q // _DAMS_PER_CAH
        self._qacc = q % _DAMS_PER_CAH
        if wh > _MAX_WH:
            wh = _MAX_WH
        elif wh < 0 - _MAX_WH:
            wh = 0 - _MAX_WH
        self.wh = wh


# One class for the 13 checks (a class per check cost ~200 B of heap each:
# type object, class dict, bases tuple, methods); instance ``k`` of id i
# evaluates with ``_EVAL[i]``.  Its name and inputs (diagnostics and
# documentation only) are ``NAME[i - 1]`` and ``INPUTS[i - 1]``.
NAME = (
    "S-1 current demand > max allowed",
    "S-2 output current deviation",
    "S-3 charging overcurrent",
    "S-4 voltage demand > max allowed",
    "S-5 output voltage deviation",
    "S-6 pack overvoltage",
    "S-7 cell overvoltage",
    "S-8 cell voltage spread",
    "S-9 dQ/dV divergence",
    "S-10 cell overtemperature",
    "S-11 temperature rise rate",
    "S-12 SOC out of range",
    "S-13 SOC rate abnormal",
)
INPUTS = (
    "BCL req_i, BCP max_i",
    "inp.i_out, BCS meas_i",
    "inp.i_out, BCP max_i",
    "BCL req_v, BCP max_v",
    "inp.v_outside, BCS meas_v",
    "inp.v_outside, BCP max_v",
    "BCS cell_max_v / BMV bmv_max_v, BCP max_cell_v",
    "BMV cell_min_v, BMV bmv_max_v (else BCS cell_max_v)",
    "BCL req_mode, BCS soc, BCS/BMV cell max, BMV cell_min_v, inp.i_out",
    "BSM temp_max / BMT bmt_max, BCP max_temp",
    "BSM temp_max",
    "BCS soc (1 %), BCP bcp_soc (0.1 %)",
    "BCS soc, ctx.soc0, ctx.wh, BCP energy (else BRM rated_ah*rated_v)",
)


class Check:
    """Check ``ID`` (1..13): its settings from ``c`` (a configuration),
    diagnostics fields and state.  ``CST_FAULT``/``CST_ERROR`` are the CST
    masks of a level-2 stop; ``TIMED``: reset(now) uses the time (call it
    at the session's start)."""

    CST_FAULT = _F_OTHER
    CST_ERROR = 0       # S-2, S-3 (current), S-5..S-7 (voltage): per instance
    TIMED = False       # S-11: per instance

    def __init__(self, c, i):
        self.ID = i
        self.value = NA
        self.limit = NA
        self.why = "not evaluated"
        if i == 2 or i == 3:
            self.CST_ERROR = _E_CURRENT
        elif 5 <= i <= 7:
            self.CST_ERROR = _E_VOLTAGE
        if i == 2:
            self.pm = config.get(c, "s2.permille")
            self.floor = config.get(c, "s2.floor_dA")
            # Output current of the last ``s2.window`` check ticks: BCS
            # carries a measurement taken some time before it arrives, so
            # during a ramp the two legitimately differ by up to the ramp
            # over that time.  The window holds only real samples: until
            # it is full, the slots not written yet hold the session's
            # first sample (a copy of a sample that is in the window
            # anyway, so its range is that of the samples so far);
            # ``_span`` takes the range in machine code.  (Samples are
            # >= 0: no sign to extend from the int array.)
            self.hist = array("i", [0] * config.get(c, "s2.window"))
            self.k = 0
            self.empty = True
        elif i == 5:
            self.dv = config.get(c, "s5.dv")
        elif i == 8:
            self.lim = config.get(c, "s8.spread")
        elif i == 9:
            self.interval = config.get(c, "s9.interval_ms")
            self.soc_min = config.get(c, "s9.soc_min")
            self.thr = config.get(c, "s9.thresh")
            self.min_dv = config.get(c, "s9.min_dv")
            self.reset(0)
        elif i == 11:
            self.TIMED = True
            self.period = config.get(c, "s11.sample_ms")
            self.n = config.get(c, "s11.samples")
            self.rate = config.get(c, "s11.rate")
            self.ring = [0] * self.n
            self.reset(0)
        elif i == 13:
            self.thr = config.get(c, "s13.thresh")
            self.eff = config.get(c, "s13.eff")
        elif i != 10 and i != 12:
            self.pm = config.get(c, _PM_KEY[i])

    def na(self, why):
        self.why = why
        return INACTIVE

    def reset(self, now):
        """Start of a session (a TIMED check's reset uses ``now``: the
        supervisor resets every check when charging ends and a TIMED one
        again when the next session starts)."""
        self.why = "not evaluated"
        i = self.ID
        if i == 2:
            self.empty = True
        elif i == 9:
            self.t0 = 0
            self.q0 = 0
            self.v2 = NA
            self.v1 = NA
            self.res = INACTIVE
        elif i == 11:
            self.count = 0
            self.head = 0
            self.t_next = now
            self.res = INACTIVE

    def eval(self, ctx, now):
        return _EVAL[self.ID](self, ctx, now)


_PM_KEY = (None, "s1.permille", None, "s3.permille", "s4.permille", None,
           "s6.permille", "s7.permille")


def _pct_over(chk, v, lim, pm):
    """Shared form 'v > pm/1000 * lim' (lim > 0, v >= 0 already checked)."""
    chk.value = v
    chk.limit = lim * pm // 1000
    return TRUE if v * 1000 > lim * pm else FALSE


def _s1(self, ctx, now):
    b = ctx.bms
    if ctx.stale & (STALE_BCL | _STALE_BCP):
        return self.na("BCL/BCP stale")
    if b.max_i <= 0:
        return self.na("BCP max_i NA")
    if b.req_i < 0:
        return self.na("BCL req_i NA")
    return _pct_over(self, b.req_i, b.max_i, self.pm)


def _s2(self, ctx, now):
    i = ctx.inp.i_out
    if i < 0:
        i = 0
    h = self.hist
    if self.empty:
        self.empty = False
        for j in range(len(h)):
            h[j] = i
    h[self.k] = i
    self.k = (self.k + 1) % len(h)
    if ctx.stale & (STALE_BCS | _STALE_OUT):
        return self.na("BCS/output stale")
    m = ctx.bms.meas_i
    if m < 0:
        return self.na("BCS meas_i NA")
    d = i - m
    if d < 0:
        d = -d
    self.value = d
    ramp = _span(h, len(h))
    lim = i * self.pm // 1000
    if lim < self.floor:
        lim = self.floor
    self.limit = lim + ramp
    return TRUE if (d - ramp) * 1000 > i * self.pm and d - ramp > self.floor else FALSE


@micropython.viper
def _span(h: ptr32, n: int) -> int:
    """max - min of h[0:n] (values >= 0)."""
    lo = h[0]
    hi = lo
    j = 1
    while j < n:
        x = h[j]
        if x < lo:
            lo = x
        elif x > hi:
            hi = x
        j += 1
    return hi - lo


def _s3(self, ctx, now):
    if ctx.stale & (_STALE_BCP | _STALE_OUT):
        return self.na("BCP/output stale")
    lim = ctx.bms.max_i
    if lim <= 0:
        return self.na("BCP max_i NA")
    i = ctx.inp.i_out
    if i < 0:
        i = 0
    return _pct_over(self, i, lim, self.pm)


def _s4(self, ctx, now):
    b = ctx.bms
    if ctx.stale & (STALE_BCL | _STALE_BCP):
        return self.na("BCL/BCP stale")
    if b.max_v <= 0:
        return self.na("BCP max_v NA")
    if b.req_v < 0:
        return self.na("BCL req_v NA")
    return _pct_over(self, b.req_v, b.max_v, self.pm)


def _s5(self, ctx, now):
    if ctx.stale & (STALE_BCS | _STALE_OUT):
        return self.na("BCS/output stale")
    m = ctx.bms.meas_v
    if m < 0:
        return self.na("BCS meas_v NA")
    d = ctx.inp.v_outside - m
    if d < 0:
        d = -d
    self.value = d
    self.limit = self.dv
    return TRUE if d > self.dv else FALSE


def _s6(self, ctx, now):
    if ctx.stale & (_STALE_BCP | _STALE_OUT):
        return self.na("BCP/output stale")
    lim = ctx.bms.max_v
    if lim <= 0:
        return self.na("BCP max_v NA")
    v = ctx.inp.v_outside
    if v < 0:
        v = 0
    return _pct_over(self, v, lim, self.pm)


def _max_cell(ctx):
    """Highest cell voltage (0.01 V) from BCS and/or BMV, NA if neither."""
    b = ctx.bms
    v = NA
    if not ctx.stale & STALE_BCS:
        v = b.cell_max_v
    if not ctx.stale & STALE_BMV and b.cells.bmv_max_v > v:
        v = b.cells.bmv_max_v
    return v


def _s7(self, ctx, now):
    if ctx.stale & _STALE_BCP:
        return self.na("BCP stale")
    lim = ctx.bms.max_cell_v
    if lim <= 0:
        return self.na("BCP max_cell_v NA")
    v = _max_cell(ctx)
    if v < 0:
        return self.na("cell max (BCS/BMV) NA")
    return _pct_over(self, v, lim, self.pm)


def _s8(self, ctx, now):
    b = ctx.bms
    if ctx.stale & STALE_BMV:
        return self.na("BMV stale")
    lo = b.cells.cell_min_v
    if lo < 0:
        return self.na("BMV cell_min_v NA")
    # prefer max and min from the same BMV snapshot
    hi = b.cells.bmv_max_v
    if hi < 0:
        if ctx.stale & STALE_BCS:
            return self.na("cell max NA (BCS stale)")
        hi = b.cell_max_v
    if hi < 0:
        return self.na("cell max NA")
    self.value = hi - lo
    self.limit = self.lim
    return TRUE if hi - lo > self.lim else FALSE


def _s9_restart(self, ctx, now, hi, lo):
    self.t0 = now
    self.q0 = ctx.cah
    self.v2 = hi
    self.v1 = lo


def _s9(self, ctx, now):
    """dQ/dV divergence of the highest and lowest cell.

    Every ``s9.interval_ms`` the charge added (ctx.cah, 0.01 Ah) and the
    change of the highest (V2) and lowest (V1) cell voltage (0.01 V) are
    taken: dQ/dV = dQ[0.01 Ah] / dV[0.01 V] in Ah/V, computed in 0.1 Ah/V.
    If |dV1| or |dV2| < ``s9.min_dv`` the interval is not evaluable (that is
    the "dV near zero" case): INACTIVE until the next interval.  The result
    of an interval holds until the next one."""
    b = ctx.bms
    if ctx.stale & (STALE_BCL | STALE_BCS | STALE_BMV):
        self.v2 = NA
        return self.na("BCL/BCS/BMV stale")
    if b.req_mode != 2:
        self.v2 = NA
        return self.na("not CC mode")
    if b.soc < 0:
        self.v2 = NA
        return self.na("BCS soc NA")
    if b.soc <= self.soc_min:
        self.v2 = NA
        return self.na("SOC <= soc_min")
    hi = _max_cell(ctx)
    lo = b.cells.cell_min_v
    if hi < 0 or lo < 0:
        self.v2 = NA
        return self.na("cell max/min NA")
    if self.v2 < 0:
        _s9_restart(self, ctx, now, hi, lo)
        self.res = INACTIVE
        return self.na("first interval")
    if ticks_diff(now, self.t0) < self.interval:
        if self.res == INACTIVE:
            self.why = "interval running"
        return self.res
    dq = ctx.cah - self.q0
    d2 = hi - self.v2
    d1 = lo - self.v1
    _s9_restart(self, ctx, now, hi, lo)
    if -self.min_dv < d2 < self.min_dv or -self.min_dv < d1 < self.min_dv:
        self.res = INACTIVE
        return self.na("dV too small")
    if dq > 1000000 or dq < -1000000:
        self.res = INACTIVE
        return self.na("dQ implausible")
    r2 = dq * 10 // d2      # 0.1 Ah/V; |d2| >= min_dv >= 1, never 0
    r1 = dq * 10 // d1
    d = r2 - r1
    if d < 0:
        d = -d
    self.value = d
    self.limit = self.thr
    self.res = TRUE if d > self.thr else FALSE
    return self.res


def _s10(self, ctx, now):
    b = ctx.bms
    if ctx.stale & _STALE_BCP:
        return self.na("BCP stale")
    lim = b.max_temp
    if lim == NA:
        return self.na("BCP max_temp NA")
    t = NA
    have = 0
    if not ctx.stale & STALE_BSM and b.temp_max != NA:
        t = b.temp_max
        have = 1
    if not ctx.stale & STALE_BMT and b.cells.bmt_max != NA and (not have or b.cells.bmt_max > t):
        t = b.cells.bmt_max
        have = 1
    if not have:
        return self.na("BSM/BMT temp max NA")
    self.value = t
    self.limit = lim
    return TRUE if t > lim else FALSE


def _s11(self, ctx, now):
    """Temperature rise rate: a ring of ``s11.samples`` readings taken every
    ``s11.sample_ms``; rate = (newest - oldest) over (samples - 1) *
    sample_ms, scaled to 0.1 degC/min.
    INACTIVE until the window is full (a 1 degC step over a short span
    would read as a huge rate)."""
    t = ctx.bms.temp_max
    if ctx.stale & STALE_BSM or t == NA:
        self.count = 0
        self.res = INACTIVE
        return self.na("BSM temp_max NA/stale")
    if ticks_diff(now, self.t_next) < 0:
        if self.res == INACTIVE:
            self.why = "filling window"
        return self.res
    self.t_next = ticks_add(now, self.period)
    n = self.n
    self.ring[self.head] = t
    self.head += 1
    if self.head >= n:
        self.head = 0
    if self.count < n:
        self.count += 1
    if self.count < n:
        self.res = INACTIVE
        return self.na("filling window")
    oldest = self.ring[self.head]      # head now points at the oldest
    newest = self.ring[self.head - 1]  # index -1 wraps to the end
    span = (n - 1) * self.period
    r = (newest - oldest) * 600000 // span   # 0.1 degC per minute
    self.value = r
    self.limit = self.rate
    self.res = TRUE if r > self.rate else FALSE
    return self.res


def _s12(self, ctx, now):
    b = ctx.bms
    v = NA
    if not ctx.stale & STALE_BCS and b.soc >= 0:
        v = b.soc * 10
    if not ctx.stale & _STALE_BCP and b.bcp_soc > v:
        v = b.bcp_soc
    if v < 0:
        return self.na("BCS soc / BCP soc NA")
    self.value = v
    self.limit = 1000
    return TRUE if v > 1000 else FALSE


def _s13(self, ctx, now):
    """estimated SOC = soc0 + integral(U*I dt) * eff / rated energy."""
    b = ctx.bms
    if ctx.stale & (STALE_BCS | _STALE_OUT):
        return self.na("BCS/output stale")
    if b.soc < 0:
        return self.na("BCS soc NA")
    if ctx.soc0 < 0:
        return self.na("initial SOC NA")
    if b.energy > 0:
        e = b.energy * 100                    # Wh
    elif b.rated_ah > 0 and b.rated_v > 0:
        e = (b.rated_ah // 10) * b.rated_v // 10  # Ah * 0.1 V -> Wh
    else:
        return self.na("rated energy NA")
    if e <= 0 or e > 10000000:
        return self.na("rated energy implausible")
    est = ctx.soc0 + ctx.wh * self.eff // e   # 0.1 %
    d = b.soc * 10 - est
    if d < 0:
        d = -d
    self.value = d
    self.limit = self.thr
    return TRUE if d > self.thr else FALSE


_EVAL = (None, _s1, _s2, _s3, _s4, _s5, _s6, _s7, _s8, _s9, _s10, _s11, _s12, _s13)


N_CHECKS = const(13)


def build(c):
    """One instance of every check, index i = check id - 1."""
    return [Check(c, i) for i in range(1, N_CHECKS + 1)]
