"""The conditions of the real-time safety checks S-1..S-13: ``EVAL[i]``
is check i's condition (``_s1`` .. ``_s13``), called by ``Check.eval``
(``safety.checks``, which holds each check's settings and state) on every
check tick.  A condition answers "is it true right now?" only: ``TRUE``,
``FALSE`` or ``INACTIVE`` (an input missing or stale, ``why`` says which),
and leaves what it compared in ``value`` / ``limit``.

Integer math only.  On a 32-bit port a small int holds +-2**30, so every
product below is bounded (see docs/safety.md "integer ranges"): going
past it would allocate a long int on the hot path.  Nothing here divides
by a value that can be zero and no input value can raise.
"""
import micropython
from micropython import const
from rt.clock import ticks_diff, ticks_add

NA = const(-1)        # an input not received / not available (gbt.bmsdata's NA)

# A condition's verdict (``INACTIVE``: the check cannot judge now)
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


EVAL = (None, _s1, _s2, _s3, _s4, _s5, _s6, _s7, _s8, _s9, _s10, _s11, _s12, _s13)
