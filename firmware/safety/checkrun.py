"""The supervisor's check tick: H-11 and S-1..S-13, owned by
``safety.supervisor.Supervisor`` (``sup.run``), which keeps the public
entry points (``check_tick``, ``check_head``/``mid``/``tail``).

``check_head`` first runs H-11, independent of the session and of
``charging``: while the output current flows (``|i_out| > h11.flow_dA``),
no valid BCL for ``h11.bcl_ms`` or BCS for ``h11.bcs_ms`` (ages from
``sup.rx_times`` = the link's ``last_ok``, counted from when the current
started flowing if the message is older) cuts the current at once
(``sup.current_limit`` 0, applied to ``out.i_set`` every protection tick)
and, if the output is still on ``h11.stop_ms`` later, trips (K1/K2 open,
CST).  The cut (``sup.h11_on``, read by the protection tick) ends when K1/K2
and the power stage are off.

Then S-1..S-13 while ``sup.charging`` is set, in three parts (head S-1..S-4
with the session's start/end and the integrators, mid S-5..S-9, tail
S-10..S-13; the app runs them in three scheduler passes): level III trips,
level II asks the session to stop (``sup.stop_request``), level I only
records.  Raised checks are queued (``notes``) for the lockout, which the
slow tick updates.

The functions of the check tick keep to frames of at most 11 words, the
rest is viper (``_eval``, ``_conds``, ``_h11_quiet``): a bigger frame comes
from the heap at every call.  The viper functions return before changing
anything when their case is not the common one, and the method they stand
for (``_h11``) then does the whole work from the same state.
"""
import micropython
from micropython import const
import config
from rt.clock import ticks_diff
from rt import guard as _guard
from safety import risk as _risk
from safety.risk import _steps, EV_RAISE, EV_CLEAR, EV_LOCKOUT, EV_CONFIRM, H11

_NA = const(-1)
_NPEND = const(8)
_PF_BCL = const(0x10)
_PF_BCS = const(0x11)
_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)

# the check tick in three parts (check ids lo+1..hi): head S-1..S-4 (with
# H-11, session start/end, integrators), mid S-5..S-9, tail S-10..S-13
_PARTS = ((0, 4), (4, 9), (9, 13))
_TR_CLEAR = const(15)  # safety.risk.TR_CLEAR_SHIFT
_COND = const(14)      # safety.risk: the condition row of RiskTable.b
assert _TR_CLEAR == _risk.TR_CLEAR_SHIFT and _COND == _risk.COND_ROW
assert _PARTS == ((0, 4), (4, 9), (9, 13))     # (_eval spells them out)

CONFIG_SCHEMA = (
    ("h11.bcl_ms", 1000, 100, 60000, "ms", "H-11: no valid BCL for longer than this while current flows -> current to zero, then stop, whatever the session does (GB/T 27930 BCL timeout 1 s)"),
    ("h11.bcs_ms", 5000, 100, 60000, "ms", "H-11: no valid BCS for longer than this while current flows -> current to zero, then stop (GB/T 27930 BCS timeout 5 s)"),
    ("h11.flow_dA", 50, 0, 2000, "0.1 A", "H-11: |output current| above this counts as current flowing"),
    ("h11.stop_ms", 500, 0, 10000, "ms", "H-11: K1/K2 or the power stage still on this long after the current was cut -> trip (K1/K2 open, CST)"),
)
config.register(CONFIG_SCHEMA)


@micropython.viper
def _conds(pairs, ctx, now, b: ptr8):
    """Each check's condition into the risk table's condition row
    (``safety.risk``: condition + 1: TRUE 2, FALSE 1, INACTIVE 0); a check
    that raises is INACTIVE, "error in check"."""
    for p in pairs:
        c = p[1]
        r = -1
        try:
            r = int(c.eval(ctx, now))
        except Exception:
            c.why = "error in check"
            r = -1
        b[_COND + int(p[0])] = r + 1


@micropython.viper
def _eval(run, now, p: int):
    """Part p of the check tick (checks lo+1..hi of ``_PARTS[p]``; only the
    enabled ones are evaluated, a disabled one stays INACTIVE, "disabled"):
    each condition, then the risk table for all of them at once, then the
    actions of any that were raised or cleared, in check order.  (A check's
    condition reads the measurements and the BMS data only, never what an
    earlier check's action did, so the order of conditions and actions is
    free.)"""
    lo = 9
    hi = 13
    if p == 0:
        lo = 0
        hi = 4
    elif p == 1:
        lo = 4
        hi = 9
    rk = run.risk
    b = rk.b
    _conds(run._pairs[p], run.ctx, now, b)
    m = int(_steps(now, lo + 1, hi + 1, b, rk.since, rk.clr_since, rk.raised_count, rk.pr))
    if m != 0:
        lv = ptr8(rk.level)
        cks = run.checks
        i = lo + 1
        while i <= hi:
            if m & (1 << i):
                run._raised(now, i, lv[i], cks[i - 1].value)
            elif m & (1 << (i + _TR_CLEAR)):
                run.events.add(now, EV_CLEAR, i, lv[i], cks[i - 1].value)
            i += 1


@micropython.viper
def _h11_quiet(sup, run, now) -> int:
    """H-11's common case in machine code: no cut running, and the current
    not flowing or both BCL and BCS fresh enough.  1 = nothing to do; 0 =
    let ``CheckRunner._h11`` decide (from the same state: the only change
    made here, the start of the current, is one it would make the same)."""
    if int(sup.h11_on) != 0:
        return 0
    i = int(sup.inp.i_out)
    fl = int(run.h11_flow)
    if (i <= fl and i >= 0 - fl) or int(sup.tripped) != 0:
        run._flowing = 0
        return 1
    n = int(now)
    if int(run._flowing) == 0:
        run._flowing = 1
        run._flow_t = now
    t0 = int(run._flow_t)
    lo = sup.rx_times
    t = int(lo[_PF_BCL])
    if t < 0 or ((t - t0 + _HALF) & _MASK) - _HALF < 0:
        t = t0                          # older than the current: count from its start
    if ((n - t + _HALF) & _MASK) - _HALF > int(run.h11_bcl):
        return 0
    t = int(lo[_PF_BCS])
    if t < 0 or ((t - t0 + _HALF) & _MASK) - _HALF < 0:
        t = t0
    if ((n - t + _HALF) & _MASK) - _HALF > int(run.h11_bcs):
        return 0
    return 1


@micropython.viper
def _copy(dst: ptr8, src: ptr8, n: int):
    i = 0
    while i < n:
        dst[i] = src[i]
        i += 1


class CheckRunner:
    def __init__(self, sup, cfg, ctx, checks, risk, events):
        self.sup = sup
        self.ctx = ctx
        self.checks = checks
        self.risk = risk
        self.events = events
        # (id, check) of the enabled checks of each part of the check tick
        lv = risk.level
        self._pairs = tuple(tuple((k + 1, checks[k]) for k in range(lo, hi) if lv[k + 1])
                            for lo, hi in _PARTS)
        # ... and those to renew at a session's start (TIMED or disabled)
        self._renewed = tuple(tuple(checks[k] for k in range(lo, hi)
                                    if checks[k].TIMED or not lv[k + 1])
                              for lo, hi in _PARTS)
        # H-11: BCL/BCS freshness while current flows
        self.h11_bcl = config.get(cfg, "h11.bcl_ms")
        self.h11_bcs = config.get(cfg, "h11.bcs_ms")
        self.h11_flow = config.get(cfg, "h11.flow_dA")
        self.h11_stop = config.get(cfg, "h11.stop_ms")
        self.h11_t = 0
        self.h11_pf = 0              # PF of the message that went stale (0x10 BCL, 0x11 BCS)
        self._flowing = 0
        self._flow_t = 0
        self.warn_count = 0          # level-I raises this session
        self._was_charging = False
        # raised checks not yet noted in the lockout (slow tick)
        self._pend = bytearray(_NPEND)
        self._npend = 0
        self._pend_lost = 0
        self._vinbuf = bytearray(17)
        self._vinlen = 0
        # the entry points, each inside a generator that catches (rt.guard:
        # no heap frame per call)
        self._g_head = _guard.start(self._head, sup.fail_safe)
        self._g_mid = _guard.start(self._mid, sup.fail_safe)
        self._g_tail = _guard.start(self._tail, sup.fail_safe)
        self._due = 0                # bit p: check_head evaluated, part p may run
        self._fresh = 0              # bit p: part p resets its checks first

    def check_head(self, now):
        try:
            return self._g_head(now)             # self._head(now), guarded (rt.guard)
        except StopIteration:                    # a BaseException ended the guard
            return self._rs_head(now)

    def check_mid(self, now):
        try:
            return self._g_mid(now)
        except StopIteration:
            return self._rs_mid(now)

    def check_tail(self, now):
        try:
            return self._g_tail(now)
        except StopIteration:
            return self._rs_tail(now)

    # (A new guard for an entry point whose guard a BaseException ended,
    # and the call that found it ended.  Separate methods: with an argument
    # more, the entry points' frames would no longer fit the C stack.)
    def _rs_head(self, now):
        self._g_head = _guard.start(self._head, self.sup.fail_safe)
        return self._g_head(now)

    def _rs_mid(self, now):
        self._g_mid = _guard.start(self._mid, self.sup.fail_safe)
        return self._g_mid(now)

    def _rs_tail(self, now):
        self._g_tail = _guard.start(self._tail, self.sup.fail_safe)
        return self._g_tail(now)

    def _mid(self, now):
        self._part(now, 1)

    def _tail(self, now):
        self._part(now, 2)

    def _head(self, now):
        sup = self.sup
        if sup.rx_times is not None and not _h11_quiet(sup, self, now):
            self._h11(now)
        self._check(now)

    def _part(self, now, p):
        bit = 2 if p == 1 else 4
        if self._due & bit:
            self._due &= ~bit
            if self.sup.charging:
                if self._fresh & bit:
                    self._fresh &= ~bit
                    self._renew(now, p)
                _eval(self, now, p)

    def _h11(self, now):
        """BCL/BCS freshness while current flows, whatever the session
        believes: cut the current, then stop if the output stays on."""
        sup = self.sup
        out = sup.out
        if sup.h11_on:
            if not out.k12 and not out.pwr_en:
                sup.h11_on = 0                # output off: the stop is complete
                self.events.add(now, EV_CLEAR, H11, 2, self.h11_pf)
            elif not sup.tripped and ticks_diff(now, self.h11_t) >= self.h11_stop:
                self.events.add(now, EV_RAISE, H11, 3, self.h11_pf)
                sup._start_trip(now, H11, now)
            return
        i = sup.inp.i_out
        if i < 0:
            i = -i
        if i <= self.h11_flow or sup.tripped:
            self._flowing = 0
            return
        t0 = self._flow_t
        if not self._flowing:
            self._flowing = 1
            self._flow_t = t0 = now
        lo = sup.rx_times
        pf = 0
        t = lo[_PF_BCL]
        if t < 0 or ticks_diff(t, t0) < 0:
            t = t0                            # older than the current: count from its start
        if ticks_diff(now, t) > self.h11_bcl:
            pf = _PF_BCL
        else:
            t = lo[_PF_BCS]
            if t < 0 or ticks_diff(t, t0) < 0:
                t = t0
            if ticks_diff(now, t) > self.h11_bcs:
                pf = _PF_BCS
        if pf:
            sup.h11_on = 1
            self.h11_t = now
            self.h11_pf = pf
            sup.current_limit = 0
            if out.i_set > 0:
                out.i_set = 0                 # the next protection tick writes it
            self.events.add(now, EV_RAISE, H11, 2, pf)

    def h11_clear(self):
        """The cut ends with a rearm (``Supervisor.rearm``)."""
        self.sup.h11_on = 0
        self._flowing = 0

    def _check(self, now):
        sup = self.sup
        if not sup.charging:
            self._due = 0
            if self._was_charging:
                self._end_checks(now)
            return
        if not self._was_charging:
            self._begin(now)
        ctx = self.ctx
        ctx.stale = sup.stale
        ctx.integrate(now)
        if ctx.soc0 < 0:
            self._take_soc0()
        _eval(self, now, 0)
        self._due = 6                   # check_mid, check_tail may run

    def _end_checks(self, now):
        # the next session's fresh state, made now (no check runs in
        # between): the first charging tick has enough to do
        self._was_charging = False
        self.risk.reset()
        for c in self.checks:
            c.reset(now)
            c.why = "not charging"

    def _renew(self, now, p):
        """Part p's first run of a session: the checks were reset when the
        last session ended (or built); reset again those whose state starts
        at the session's time (``TIMED``), mark the disabled ones."""
        lv = self.risk.level
        for c in self._renewed[p]:
            if c.TIMED:
                c.reset(now)
            if lv[c.ID] == 0:
                c.why = "disabled"

    def _raised(self, now, i, level, value):
        self.events.add(now, EV_RAISE, i, level, value)
        if self._npend < _NPEND:
            self._pend[self._npend] = i
            self._npend += 1
        else:
            self._pend_lost += 1
        if level >= 3:
            if not self.sup.tripped:
                self.sup._start_trip(now, i, now)
        elif level == 2:
            self.sup._stop_for_check(i)
        else:
            self.warn_count += 1

    def _take_soc0(self):
        b = self.sup.bms
        soc_start = self.sup.soc_start
        if soc_start >= 0:
            self.ctx.soc0 = soc_start
        elif b.bcp_soc >= 0:
            self.ctx.soc0 = b.bcp_soc
        elif b.soc >= 0:
            self.ctx.soc0 = b.soc * 10

    def _begin(self, now):
        """Charging just started: fresh session state."""
        self._was_charging = True
        self.ctx.reset(now)
        self.ctx.soc0 = _NA
        self._take_soc0()
        self.risk.reset()
        self._renew(now, 0)
        self._fresh = 6                 # check_mid, check_tail renew theirs first
        self.warn_count = 0
        self.sup._new_session()
        v = self.sup.vin
        n = 0
        if v:
            n = len(v)
            if n > 17:
                n = 17
            if type(v) is bytes or type(v) is bytearray:
                _copy(self._vinbuf, v, n)
            else:
                for j in range(n):
                    self._vinbuf[j] = v[j]
        self._vinlen = n

    def notes(self, now, lock, wall_s):
        """Note the checks raised since the last call in the lockout (slow
        tick; allocates).  Returns True if there were any."""
        if not self._npend:
            return False
        vin = bytes(self._vinbuf[:self._vinlen])
        lv = self.risk.level
        for k in range(self._npend):
            i = self._pend[k]
            cnt = lock.note(vin, i, wall_s)
            if cnt:
                self.events.add(now, EV_LOCKOUT, i, lv[i], cnt)
            if (i == 12 or i == 13) and not lock.confirm:
                # one flag; the first SOC anomaly is kept until acknowledged
                lock.set_confirm(vin, i, wall_s)
                self.events.add(now, EV_CONFIRM, i, lv[i], 0)
        self._npend = 0
        return True
