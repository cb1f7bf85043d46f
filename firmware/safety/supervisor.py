"""Safety supervisor: composes checks, risk table, hard protections, trip
path and lockout.  Independent of the charging session.

App wiring (per scheduler pass, protection first)::

    board.read_inputs(inp)
    sup.protect_tick(now)      # every fast tick (2 ms), before anything else
    session.tick(now)          # computes out (10 ms)
    sup.protect_tick ...       # (next fast tick)
    sup.check_tick(now)        # every 100 ms
    sup.slow_tick(now, wall_s) # every ~1 s: lockout notes + persistence
    board.write_outputs(out)

``protect_tick`` runs the hard protections on ``inp``; when tripped it
overrides ``out`` (power off, K1/K2 per the trip sequence, bleeder) *and*
writes it to the board itself, so a trip does not wait for (or depend
on) the session; outside a trip it caps ``out.i_set`` at
``current_limit``.  Any exception inside it ends in ``fail_safe`` (H-9).

H-12 (output interlock, ``safety.interlock``): outside a trip,
``protect_tick`` compares the commanded K1/K2 and power-stage enable with
the table of what the current ``stage`` allows, before anything is
written; a disallowed output trips (so it never reaches the board),
whoever set it.

``check_tick`` first runs H-11, independent of the session and of
``charging``: while the output current flows (``|i_out| > h11.flow_dA``),
no valid BCL for ``h11.bcl_ms`` or BCS for ``h11.bcs_ms`` (ages from
``rx_times`` = the link's ``last_ok``, counted from when the current
started flowing if the message is older) cuts the current at once
(``current_limit`` 0, applied to ``out.i_set`` every protection tick) and,
if the output is still on ``h11.stop_ms`` later, trips (K1/K2 open, CST).
The cut ends when K1/K2 and the power stage are off.

``check_tick`` then evaluates S-1..S-13 while ``charging`` is set; level III
trips, level II sets ``stop_request`` (= check id) for the session to
ramp down and send CST with ``cst_reason/cst_fault/cst_error``; level I
only records.  Every raise/clear is an event in ``events``.

The app sets: ``charging`` (bool), ``vin`` (bytes-like, may be None),
``soc_start`` (0.1 %, -1 = take it from BCP), ``stale`` (``checks.STALE_*``
bits for BMS messages the link reports as timed out), ``stage`` (the
session's stage, every session tick) and once ``rx_times`` (the link's
``last_ok`` list: time of the last valid message per PF, -1 = never).

Both ticks allocate nothing (proved under micropython.heap_lock()).
"""
import micropython
from micropython import const
import config
from rt.clock import ticks_diff
from rt import guard as _guard
from safety import checks as _checks
from safety import risk as _risk
from safety.risk import (RiskTable, Events, T_RAISED, T_CLEARED, name_of, _steps,
                         EV_RAISE, EV_CLEAR, EV_TRIP, EV_K_OPEN, EV_SAFE_V,
                         EV_BLEED_TO, EV_LOCKOUT, EV_CONFIRM, EV_LATCH,
                         EV_RESET, EV_FAILSAFE, H3, H7, H9, H11, H12)
from safety.protections import Protections, cst_fault_of, cst_error_of, _hprot, _STATE
from safety.trip import TripPath, IDLE, POWER_OFF, BLEED, SAFE
from safety.interlock import ALLOW as _ALLOW
from safety import lockout as _lockout
from safety.lockout import Lockout, L_ESTOP, L_CONTACTOR, L_STORE

NA = const(-1)
CST_R_FAULT = const(0x10)
_NPEND = const(8)
_PF_BCL = const(0x10)
_PF_BCS = const(0x11)
_A_K12 = const(1)      # safety.interlock bits (local: folded by the compiler)
_A_PWR = const(2)
_A_TIMED = const(4)

CONFIG_SCHEMA = (
    ("store.path", "safety.rec", None, None, "-", "File name (in the state directory) of the persisted safety state (lockout, latches): 1..32 of A-Z a-z 0-9 . _ -"),
    ("store.max_bytes", 1024, 128, 8192, "bytes", "Max persisted record size; must hold a full lockout record: >= 26 + 28 x lockout.slots"),
    ("h11.bcl_ms", 1000, 100, 60000, "ms", "H-11: no valid BCL for longer than this while current flows -> current to zero, then stop, whatever the session does (GB/T 27930 BCL timeout 1 s)"),
    ("h11.bcs_ms", 5000, 100, 60000, "ms", "H-11: no valid BCS for longer than this while current flows -> current to zero, then stop (GB/T 27930 BCS timeout 5 s)"),
    ("h11.flow_dA", 50, 0, 2000, "0.1 A", "H-11: |output current| above this counts as current flowing"),
    ("h11.stop_ms", 500, 0, 10000, "ms", "H-11: K1/K2 or the power stage still on this long after the current was cut -> trip (K1/K2 open, CST)"),
)
config.register(CONFIG_SCHEMA)


_cfg = config.get   # setting, or its registered default

# safety.protections' kernel state (folded by the compiler)
_P_KCMD = const(44)
_P_KSINCE = const(45)
_P_KFAULT = const(46)
_P_LIM = const(48)
_NST = const(14)       # stages in the H-12 table
_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)
assert len(_ALLOW) == _NST and (_STATE["k_cmd"], _STATE["k_since"], _STATE["k_fault"],
                                 _STATE["current_limit"]) == (_P_KCMD, _P_KSINCE, _P_KFAULT, _P_LIM)


# the check tick in three parts (check ids lo+1..hi): head S-1..S-4 (with
# H-11, session start/end, integrators), mid S-5..S-9, tail S-10..S-13
_PARTS = ((0, 4), (4, 9), (9, 13))
_TR_CLEAR = const(15)  # safety.risk.TR_CLEAR_SHIFT
_COND = const(14)      # safety.risk: the condition row of RiskTable.b
assert _TR_CLEAR == _risk.TR_CLEAR_SHIFT and _COND == _risk.COND_ROW
assert _PARTS == ((0, 4), (4, 9), (9, 13))     # (check_mid, check_tail spell them out)


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
def _eval(sup, now, p: int):
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
    rk = sup.risk
    b = rk.b
    _conds(sup._pairs[p], sup.ctx, now, b)
    m = int(_steps(now, lo + 1, hi + 1, b, rk.since, rk.clr_since, rk.raised_count, rk.pr))
    if m != 0:
        lv = ptr8(rk.level)
        cks = sup.checks
        i = lo + 1
        while i <= hi:
            if m & (1 << i):
                sup._raised(now, i, lv[i], cks[i - 1].value)
            elif m & (1 << (i + _TR_CLEAR)):
                sup.events.add(now, EV_CLEAR, i, lv[i], cks[i - 1].value)
            i += 1


@micropython.viper
def _h11_quiet(sup, now) -> int:
    """H-11's common case in machine code: no cut running, and the current
    not flowing or both BCL and BCS fresh enough.  1 = nothing to do; 0 =
    let ``Supervisor._h11`` decide (from the same state: the only change
    made here, the start of the current, is one it would make the same)."""
    if int(sup.h11_on) != 0:
        return 0
    i = int(sup.inp.i_out)
    fl = int(sup.h11_flow)
    if (i <= fl and i >= 0 - fl) or int(sup.tripped) != 0:
        sup._flowing = 0
        return 1
    n = int(now)
    if int(sup._flowing) == 0:
        sup._flowing = 1
        sup._flow_t = now
    t0 = int(sup._flow_t)
    lo = sup.rx_times
    t = int(lo[_PF_BCL])
    if t < 0 or ((t - t0 + _HALF) & _MASK) - _HALF < 0:
        t = t0                          # older than the current: count from its start
    if ((n - t + _HALF) & _MASK) - _HALF > int(sup.h11_bcl):
        return 0
    t = int(lo[_PF_BCS])
    if t < 0 or ((t - t0 + _HALF) & _MASK) - _HALF < 0:
        t = t0
    if ((n - t + _HALF) & _MASK) - _HALF > int(sup.h11_bcs):
        return 0
    return 1


@micropython.viper
def _copy(dst: ptr8, src: ptr8, n: int):
    i = 0
    while i < n:
        dst[i] = src[i]
        i += 1


@micropython.viper
def _ptick(sup, now) -> int:
    """The protection tick's common path: ``_hprot``, then ``_quiet`` if
    nothing fired.  0 = done; else 1 + the code that fired (0: not quiet),
    for ``Supervisor._protect``.  (Machine code: no Python frame, which for
    a function this size would come from the heap at every call.)"""
    p = sup.prot
    st = p._st
    code = int(_hprot(now, sup.inp, sup.charging, st, p._fl, p.first))
    if code == 0 and int(_quiet(sup, now, sup.out, st, _ALLOW)) != 0:
        return 0
    return code + 1


@micropython.viper
def _quiet(sup, now, out, ps: ptr32, allow: ptr8) -> int:
    """The rest of a quiet protection tick in machine code: no protection
    fired (the caller checked), no latch, no trip, no reboot cause.  Caps
    the current (H-6 derate, lockout cap, H-11 cut), checks H-12 and tracks
    the K1/K2 command, exactly as ``Supervisor._protect`` does; returns 1.
    Returns 0 *before changing anything* when that is not the case (a
    contactor fault, a trip, H-9, an H-12 violation, a stage outside the
    table): ``_protect`` then does the whole tick."""
    if ps[_P_KFAULT] != 0:
        return 0
    if int(sup._boot_cause) != 0 or int(sup.tripped) != 0 or int(sup.failed) != 0:
        return 0
    n = int(now)
    lim = ps[_P_LIM]
    cap = int(sup._cap)
    if cap < lim:
        lim = cap
    if int(sup.h11_on) != 0:
        lim = 0
    stg = int(sup.stage)
    if stg < 0 or stg >= _NST:
        return 0
    new = 0
    if stg != int(sup._ilk_stage):
        new = 1
    ko = out.k12
    k = int(ko)
    pe = int(out.pwr_en)
    if k != 0 or pe != 0:
        a = allow[stg]
        if (k != 0 and (a & 1) == 0) or (pe != 0 and (a & 2) == 0):
            return 0
        if (a & 4) != 0 and new == 0:
            if ((n - int(sup._ilk_t)) & _MASK) > int(sup.h12_stop):
                return 0
    sup.current_limit = lim
    if int(out.i_set) > lim:
        out.i_set = lim
    if new != 0:
        sup._ilk_stage = stg
        sup._ilk_t = now
    sup._k_applied = ko
    if k != 0:
        k = 1
    if k != ps[_P_KCMD]:
        ps[_P_KCMD] = k
        ps[_P_KSINCE] = n & _MASK
    return 1


class Supervisor:
    def __init__(self, cfg, clock, board, inp, out, bms, store=None):
        self.clock = clock
        self.board = board
        self.inp = inp
        self.out = out
        self.bms = bms
        self.ctx = _checks.Ctx(bms, inp)
        self.checks = _checks.build(cfg)
        self.risk = RiskTable(cfg)
        # (id, check) of the enabled checks of each half of the check tick
        lv = self.risk.level
        self._pairs = tuple(tuple((k + 1, self.checks[k]) for k in range(lo, hi) if lv[k + 1])
                            for lo, hi in _PARTS)
        # ... and those to renew at a session's start (TIMED or disabled)
        self._renewed = tuple(tuple(self.checks[k] for k in range(lo, hi)
                                    if self.checks[k].TIMED or not lv[k + 1])
                              for lo, hi in _PARTS)
        self.events = Events(_risk._cfg(cfg, "risk.events"))
        self.prot = Protections(cfg)
        self.trip = TripPath(cfg)
        self.lock = Lockout(cfg)
        self.rated_i = self.prot.rated_i
        # set by the app
        self.charging = False
        self.vin = None
        self.soc_start = NA
        self.stale = 0
        self.wall_s = 0
        self.stage = 0               # session stage (gbt.stages), for H-12
        self.rx_times = None         # link.last_ok (PF -> ms of last valid message), for H-11
        # H-11: BCL/BCS freshness while current flows
        self.h11_bcl = _cfg(cfg, "h11.bcl_ms")
        self.h11_bcs = _cfg(cfg, "h11.bcs_ms")
        self.h11_flow = _cfg(cfg, "h11.flow_dA")
        self.h11_stop = _cfg(cfg, "h11.stop_ms")
        self.h11_on = 0              # current cut (until K1/K2 and power stage are off)
        self.h11_t = 0
        self.h11_pf = 0              # PF of the message that went stale (0x10 BCL, 0x11 BCS)
        self._flowing = 0
        self._flow_t = 0
        # H-12: output interlock
        self.h12_stop = _cfg(cfg, "h12.stop_ms")
        self._ilk_stage = 0
        self._ilk_t = 0
        # read by the session / console
        self.tripped = False
        self.trip_cause = 0
        self.trip_name = ""
        self.cst_reason = 0
        self.cst_fault = 0
        self.cst_error = 0
        self.stop_request = 0
        self.current_limit = self.rated_i
        self.failed = False
        self.last_exc = None
        self.warn_count = 0          # level-I raises this session
        # internals
        self._was_charging = False
        self._k_applied = 0
        self._cap = self.rated_i     # lockout cap for this session
        self._pend = bytearray(_NPEND)
        self._npend = 0
        self._pend_lost = 0
        self._trip_state = IDLE
        self._boot_cause = 0
        self._vinbuf = bytearray(17)
        self._vinlen = 0
        # the per-tick entry points, each inside a generator that catches
        # (rt.guard: no heap frame per call)
        self._g_protect = _guard.start(self._tick, self.fail_safe)
        self._g_head = _guard.start(self._head, self.fail_safe)
        self._g_mid = _guard.start(self._mid, self.fail_safe)
        self._g_tail = _guard.start(self._tail, self.fail_safe)
        self._due = 0                # bit p: check_head evaluated, part p may run
        self._fresh = 0              # bit p: part p resets its checks first
        # persistence
        if store is None:
            import store as _store
            store = _store.Store(_cfg(cfg, "store.path"), _cfg(cfg, "store.max_bytes"))
        self.store = store
        self.store_warnings = []
        self._load()

    # ---------------------------------------------------------- persistence
    def _load(self):
        # The store tries the generations newest first and keeps the first
        # one ``unpack`` accepts (a newer record version, a malformed record
        # under a valid CRC: the next older generation).  A record was there
        # but none is usable: the latches are unknown, so refuse to charge
        # (L_STORE, persisted) until an operator clears it; never defaults.
        st = self.store
        try:
            st.accept = self.lock.unpack
            data, warn = st.load()
            present = getattr(st, "present", data is not None)
        except Exception as ex:        # a store must not stop the charger booting
            data, warn, present = None, ["store: load failed (%s)" % ex], True
        self.store_warnings = list(warn)
        err = self.lock.unpack(data) if data is not None else None
        if err or (data is None and present):
            self.lock.clear()
            self.lock.set_latch(L_STORE)
            self.store_warnings.append("store: no usable safety record%s: charging "
                                       "refused until clear_store_fault()"
                                       % ((" (%s)" % err) if err else ""))
        if self.lock.latched & L_ESTOP:
            self._boot_cause = H3
        elif self.lock.latched & L_CONTACTOR:
            self._boot_cause = H7

    def save(self):
        """Persist lockout/latches now (allocates, does file I/O)."""
        ok = self.store.save(self.lock.pack())
        if ok:
            self.lock.dirty = False
        return ok

    # ------------------------------------------------------------ fast tick
    def protect_tick(self, now):
        """Hard protections + trip path; every fast tick, never raises.

        The common tick -- nothing fires, no trip, no latch, the outputs
        allowed -- is two viper functions: ``_hprot`` (every protection,
        ``safety.protections``) and ``_quiet`` (current limit, H-12, K1/K2
        tracking).  Anything else, or any doubt, takes ``_protect``, the
        whole tick in Python (``_quiet`` decides before it changes anything,
        so ``_protect`` starts from the same state)."""
        try:
            return self._g_protect(now)          # self._tick(now), guarded (rt.guard)
        except StopIteration:             # a BaseException ended the guard
            return self._rs_protect(now)

    # (A new guard for an entry point whose guard a BaseException ended,
    # and the call that found it ended.  Separate methods: with an argument
    # more, the entry points' frames would no longer fit the C stack.)
    def _rs_protect(self, now):
        self._g_protect = _guard.start(self._tick, self.fail_safe)
        return self._g_protect(now)

    def _rs_head(self, now):
        self._g_head = _guard.start(self._head, self.fail_safe)
        return self._g_head(now)

    def _rs_mid(self, now):
        self._g_mid = _guard.start(self._mid, self.fail_safe)
        return self._g_mid(now)

    def _rs_tail(self, now):
        self._g_tail = _guard.start(self._tail, self.fail_safe)
        return self._g_tail(now)

    def _tick(self, now):
        c = _ptick(self, now)
        if c:
            self._protect(now, c - 1)

    def _protect(self, now, code):
        inp = self.inp
        out = self.out
        p = self.prot
        if code:
            p.t_first = p.first[code - 100]
        boot = self._boot_cause
        if boot:
            if not code:
                code = boot           # latched before the reboot
                p.t_first = now
            self._boot_cause = 0
        if code == H3:
            self.lock.set_latch(L_ESTOP)
        if p.k_fault:                 # also while another cause tripped first
            if not self.lock.latched & L_CONTACTOR:
                self.events.add(now, EV_LATCH, H7, 3, p.k_fault)
            self.lock.set_latch(L_CONTACTOR)
        if code and not self.tripped:
            self.events.add(now, EV_RAISE, code, 3, p.value[code - 100])
            self._start_trip(now, code, p.t_first)
        if self.tripped:
            force = self.trip.apply(now, inp, out)
            self._trip_events(now)
            if not self.failed:
                # (after H-9 the block below writes the fail-safe state
                # once; writing the trip's state first made the bleeder
                # output toggle every tick)
                self._write(out)
            if force:
                self.board.force_safe()
        else:
            lim = p.current_limit
            cap = self._cap
            if cap < lim:
                lim = cap
            if self.h11_on:
                lim = 0                   # H-11: BMS data lost, current cut
            self.current_limit = lim
            if out.i_set > lim:
                out.i_set = lim
            # H-12 output interlock (before anything reaches the board)
            st = self.stage
            if st != self._ilk_stage:
                self._ilk_stage = st
                self._ilk_t = now
            k = out.k12
            pe = out.pwr_en
            if k or pe:
                a = _ALLOW[st]
                if ((k and not a & _A_K12) or (pe and not a & _A_PWR)
                        or (a & _A_TIMED and ticks_diff(now, self._ilk_t) > self.h12_stop)):
                    v = st * 100 + (10 if k else 0) + (1 if pe else 0)
                    self.events.add(now, EV_RAISE, H12, 3, v)
                    self._start_trip(now, H12, now)
        if self.failed:
            out.safe()
            self._write(out)
        k = out.k12
        self._k_applied = k
        p.track_k(now, k)

    def _write(self, out):
        try:
            self.board.write_outputs(out)
        except Exception:
            self.board.force_safe()

    def _start_trip(self, now, code, t_cause):
        self.tripped = True
        self.trip_cause = code
        self.trip_name = name_of(code)
        self.cst_reason = CST_R_FAULT
        if code > 100:
            self.cst_fault = cst_fault_of(code)
            self.cst_error = cst_error_of(code)
        else:
            c = self.checks[code - 1]
            self.cst_fault = c.CST_FAULT
            self.cst_error = c.CST_ERROR
        self.current_limit = 0
        self.trip.start(now, code, t_cause, self._k_applied)
        self._trip_state = POWER_OFF
        self.events.add(now, EV_TRIP, code, 3, ticks_diff(now, t_cause))
        # act now: the out this tick must not energise anything
        self.trip.apply(now, self.inp, self.out)
        self._trip_events(now)
        self._write(self.out)

    def _trip_events(self, now):
        tr = self.trip
        st = tr.state
        prev = self._trip_state
        if st == prev:
            return
        if prev == POWER_OFF:
            self.events.add(now, EV_K_OPEN, self.trip_cause, 3, tr.i_at_open)
        if st == SAFE:
            if tr.bleed_timeout:
                self.events.add(now, EV_BLEED_TO, self.trip_cause, 3, self.inp.v_outside)
            else:
                self.events.add(now, EV_SAFE_V, self.trip_cause, 3, self.inp.v_outside)
        self._trip_state = st

    # ----------------------------------------------------------- check tick
    def check_tick(self, now):
        """H-11, then S-1..S-13 with persistence/release while charging;
        never raises.  = ``check_head`` + ``check_mid`` + ``check_tail`` at
        the same time: the app runs the three parts in three scheduler
        passes (no pass then holds all 13 checks); the API and the unit
        tests use this one."""
        self.check_head(now)
        self.check_mid(now)
        self.check_tail(now)

    def check_head(self, now):
        """H-11, session start/end of the checks, the U*I and I integrators,
        S-1..S-4; never raises."""
        try:
            return self._g_head(now)             # self._head(now), guarded (rt.guard)
        except StopIteration:
            return self._rs_head(now)

    def check_mid(self, now):
        """S-5..S-9, after ``check_head`` of the same check tick (a later
        pass of the app: same period, fixed phase, so the 5 s persistence
        and the release time are those of a check evaluated every
        ``sched.checks_ms``); never raises.  Does nothing unless the head
        evaluated its checks since (charging)."""
        try:
            return self._g_mid(now)
        except StopIteration:
            return self._rs_mid(now)

    def check_tail(self, now):
        """S-10..S-13, as ``check_mid``; never raises."""
        try:
            return self._g_tail(now)
        except StopIteration:
            return self._rs_tail(now)

    def _mid(self, now):
        self._part(now, 1)

    def _tail(self, now):
        self._part(now, 2)

    # (The check tick's functions are kept to frames of at most 11 words,
    # the rest is viper: a bigger frame comes from the heap at every call.)
    def _head(self, now):
        if self.rx_times is not None and not _h11_quiet(self, now):
            self._h11(now)
        self._check(now)

    def _part(self, now, p):
        bit = 2 if p == 1 else 4
        if self._due & bit:
            self._due &= ~bit
            if self.charging:
                if self._fresh & bit:
                    self._fresh &= ~bit
                    self._renew(now, p)
                _eval(self, now, p)

    def _h11(self, now):
        """BCL/BCS freshness while current flows, whatever the session
        believes: cut the current, then stop if the output stays on."""
        out = self.out
        if self.h11_on:
            if not out.k12 and not out.pwr_en:
                self.h11_on = 0               # output off: the stop is complete
                self.events.add(now, EV_CLEAR, H11, 2, self.h11_pf)
            elif not self.tripped and ticks_diff(now, self.h11_t) >= self.h11_stop:
                self.events.add(now, EV_RAISE, H11, 3, self.h11_pf)
                self._start_trip(now, H11, now)
            return
        i = self.inp.i_out
        if i < 0:
            i = -i
        if i <= self.h11_flow or self.tripped:
            self._flowing = 0
            return
        t0 = self._flow_t
        if not self._flowing:
            self._flowing = 1
            self._flow_t = t0 = now
        lo = self.rx_times
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
            self.h11_on = 1
            self.h11_t = now
            self.h11_pf = pf
            self.current_limit = 0
            if out.i_set > 0:
                out.i_set = 0                 # the next protection tick writes it
            self.events.add(now, EV_RAISE, H11, 2, pf)

    def _check(self, now):
        if not self.charging:
            self._due = 0
            if self._was_charging:
                self._end_checks(now)
            return
        if not self._was_charging:
            self._begin(now)
        ctx = self.ctx
        ctx.stale = self.stale
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
            if not self.tripped:
                self._start_trip(now, i, now)
        elif level == 2:
            if not self.stop_request:
                self.stop_request = i
                if not self.tripped:
                    c = self.checks[i - 1]
                    self.cst_reason = CST_R_FAULT
                    self.cst_fault = c.CST_FAULT
                    self.cst_error = c.CST_ERROR
        else:
            self.warn_count += 1

    def _take_soc0(self):
        b = self.bms
        if self.soc_start >= 0:
            self.ctx.soc0 = self.soc_start
        elif b.bcp_soc >= 0:
            self.ctx.soc0 = b.bcp_soc
        elif b.soc >= 0:
            self.ctx.soc0 = b.soc * 10

    def _begin(self, now):
        """Charging just started: fresh session state."""
        self._was_charging = True
        self.ctx.reset(now)
        self.ctx.soc0 = NA
        self._take_soc0()
        self.risk.reset()
        self._renew(now, 0)
        self._fresh = 6                 # check_mid, check_tail renew theirs first
        self.stop_request = 0
        self.warn_count = 0
        if not self.tripped:
            self.cst_reason = 0
            self.cst_fault = 0
            self.cst_error = 0
        v = self.vin
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

    # ------------------------------------------------------------ slow tick
    def slow_tick(self, now, wall_s=None):
        """Lockout bookkeeping and persistence (allocates; ~1 s task).
        Returns True if there was any (it allocated), else False."""
        if wall_s is not None:
            self.wall_s = wall_s
        w = self.wall_s
        work = self._npend or self.lock.dirty
        if self._npend:
            vin = bytes(self._vinbuf[:self._vinlen])
            for k in range(self._npend):
                i = self._pend[k]
                cnt = self.lock.note(vin, i, w)
                if cnt:
                    self.events.add(now, EV_LOCKOUT, i, self.risk.level[i], cnt)
                if (i == 12 or i == 13) and not self.lock.confirm:
                    # one flag; the first SOC anomaly is kept until acknowledged
                    self.lock.set_confirm(vin, i, w)
                    self.events.add(now, EV_CONFIRM, i, self.risk.level[i], 0)
            self._npend = 0
        if self.lock.dirty:
            self.save()
        return bool(work)

    # ------------------------------------------------------- operator / app
    def start_allowed(self, vin, now_date):
        """May a session for ``vin`` start?  ``now_date`` = wall-clock
        seconds (RTC).  Returns (bool, reason).  Call it before every start:
        it also arms the lockout current cap (mode "cap") for the session it
        admits."""
        if self.failed:
            return False, "fail-safe latched (%s): reboot" % (self.last_exc,)
        if self.lock.latched & L_STORE:
            return False, "safety record unusable (latches unknown): inspect, clear_store_fault()"
        if self.lock.latched & L_ESTOP or self.inp.estop:
            return False, "E-stop latched: release and reset_estop()"
        if self.lock.latched & L_CONTACTOR:
            return False, "contactor fault (H-7): inspect, clear_contactor_fault()"
        if self.tripped:
            return False, "tripped: %s, rearm()" % self.trip_name
        st, chk, until = self.lock.status(vin, now_date)
        if st == _lockout.CONFIRM:
            return False, "needs confirmation (%s): acknowledge()" % name_of(chk)
        if st == _lockout.LOCKED:
            return False, "VIN locked out (%s) for %d s" % (name_of(chk), until - now_date)
        if not self.charging:
            # A level-II stop request belongs to the session that raised it;
            # left set, it would stop the next admitted session at once.
            self.stop_request = 0
        if st == _lockout.CAPPED:
            self._cap = self.lock.cap_dA
            return True, "VIN capped to %d dA (%s)" % (self.lock.cap_dA, name_of(chk))
        self._cap = self.rated_i
        return True, "ok"

    def rearm(self, now=None):
        """Leave a finished trip so a new session may start.  Refused while
        the trip sequence runs, a protection is active, or a latch is set."""
        if self.failed:
            return False
        if self.lock.latched:
            return False
        if self.tripped and self.trip.state != SAFE:
            return False
        on = self.prot.on
        for h in range(1, len(on)):
            if on[h]:
                return False      # a protection condition is still present
        self.tripped = False
        self.trip.reset()
        self._trip_state = IDLE
        self.trip_cause = 0
        self.trip_name = ""
        self.cst_reason = self.cst_fault = self.cst_error = 0
        self.stop_request = 0
        self.current_limit = self.rated_i
        self.h11_on = 0
        self._flowing = 0
        self.events.add(self.clock.ticks_ms(), EV_RESET, 0, 0, 0)
        return True

    def reset_estop(self):
        """Operator reset of the E-stop latch; refused while still pressed."""
        if self.inp.estop:
            return False
        self.lock.clear_latch(L_ESTOP)
        self.events.add(self.clock.ticks_ms(), EV_RESET, H3, 3, 0)
        return True

    def clear_contactor_fault(self):
        """Operator clears H-7 after inspection; refused while the feedback
        still disagrees with the (open) command."""
        if self.inp.k12_fb and not self._k_applied:
            return False
        self.lock.clear_latch(L_CONTACTOR)
        self.events.add(self.clock.ticks_ms(), EV_RESET, H7, 3, 0)
        return True

    def clear_store_fault(self):
        """Operator accepts the loss of an unusable persisted record (L_STORE):
        the state starts from defaults and is saved at the next slow tick."""
        had = self.lock.latched & L_STORE
        self.lock.clear_latch(L_STORE)
        return bool(had)

    def acknowledge(self):
        """Operator confirms the SOC anomaly (needs-confirmation flag)."""
        had = self.lock.acknowledge()
        self.events.add(self.clock.ticks_ms(), EV_RESET, had, 0, 0)
        return had

    def __getattr__(self, name):
        # ``needs_confirmation``: the lockout's flag.  Not a property: a class
        # with a property makes every attribute store on its instances look
        # the class up first (MicroPython's special accessors: 5x a plain
        # store), and the app stores ``charging``/``stage``/``stale`` and
        # the protection tick ``current_limit`` every tick.
        if name == "needs_confirmation":
            return self.lock.confirm
        raise AttributeError(name)

    def fail_safe(self, exc=None):
        """H-9: output off, contactors open, latched until reboot."""
        try:
            self.board.force_safe()
        except Exception:
            pass
        try:
            self.out.safe()
        except Exception:
            pass
        self.failed = True
        self.last_exc = exc
        self.tripped = True
        self.trip_cause = H9
        self.trip_name = name_of(H9)
        self.cst_reason = CST_R_FAULT
        self.cst_fault = cst_fault_of(H9)
        self.cst_error = 0
        self.current_limit = 0
        try:
            self.events.add(self.clock.ticks_ms(), EV_FAILSAFE, H9, 3, 0)
        except Exception:
            pass

    # ---------------------------------------------------------- diagnostics
    def check_diag(self, i):
        """(state name, why, since ms, value, limit) of check i (1..13)."""
        c = self.checks[i - 1]
        st = self.risk.state[i]
        why = c.why if self.risk.cond[i] == 0 else ""
        return (_risk.STATE_NAMES[st], why, self.risk.since[i], c.value, c.limit)

    def protection_diag(self, h):
        """(condition present, armed, value, limit) of hard protection H-h
        (1..10, ``Protections``), for the console."""
        p = self.prot
        return p.on[h], p.active[h], p.value[h], p.limit[h]

    def report(self):
        """Lines for the console (allocates)."""
        L = []
        L.append("tripped=%s cause=%s stop_request=%s limit=%d dA failed=%s"
                 % (self.tripped, self.trip_name or "-", name_of(self.stop_request)
                    if self.stop_request else "-", self.current_limit, self.failed))
        if self.trip.t_cause != NA:
            t = self.trip
            L.append("trip: state=%s pwr_off=+%d ms k12_open=+%d ms safe_v=+%d ms"
                     % (("IDLE", "POWER_OFF", "BLEED", "SAFE")[t.state], t.latency(t.t_pwr_off),
                        t.latency(t.t_k12_open), t.latency(t.t_safe_v)))
        for i in range(1, 14):
            st, why, since, v, lim = self.check_diag(i)
            L.append("S-%d L%d %-8s since=%d value=%d limit=%d %s"
                     % (i, self.risk.level[i], st, since, v, lim, why))
        p = self.prot
        for h in range(1, 11):
            if h == 9:
                continue
            L.append("H-%d active=%d on=%d value=%d limit=%d"
                     % (h, p.active[h], p.on[h], p.value[h], p.limit[h]))
        L.append("latched=0x%02x confirm=%s lockout entries=%d"
                 % (self.lock.latched, name_of(self.lock.confirm) if self.lock.confirm else "-",
                    len(self.lock.entries)))
        s = self.events.oldest()
        while s < self.events.seq:
            L.append("ev %s" % self.events.text(s))
            s += 1
        return L
