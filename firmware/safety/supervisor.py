"""Safety supervisor: composes checks, risk table, hard protections, trip
path and lockout.  Independent of the charging session.

App wiring: ``protect_tick`` every fast tick (``sched.protect_ms``),
before anything else; ``check_head``/``mid``/``tail`` every
``sched.checks_ms``; ``slow_tick`` every ~1 s (lockout notes, persistence).

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

``check_tick`` runs H-11 (BMS data lost while current flows), then
S-1..S-13 while ``charging`` is set: the component ``run``
(``safety.checkrun.CheckRunner``).  Level III trips, level II sets
``stop_request`` (= check id) for the session to ramp down and send CST
with ``cst_reason/cst_fault/cst_error``; level I only records.  Every
raise/clear is an event in ``events``.

Components (each a class with its own state, made once here):
``prot`` (``safety.protections``), ``trip`` (``safety.trip``), ``lock``
(``safety.lockout``), ``risk``/``events`` (``safety.risk``), ``run`` (the
check tick, ``safety.checkrun``), ``latches`` (persistence, start
admission and the operator's latch commands, ``safety.latches``); the
common protection tick is viper (``safety.interlock._ptick``).

The app sets: ``charging`` (bool), ``vin`` (bytes-like, may be None),
``soc_start`` (0.1 %, -1 = take it from BCP), ``stale`` (``checks.STALE_*``
bits for BMS messages the link reports as timed out), ``stage`` (the
session's stage, every session tick) and once ``rx_times`` (the link's
``last_ok`` list: time of the last valid message per PF, -1 = never).

Both ticks allocate nothing (proved under micropython.heap_lock()).
"""
from micropython import const
import config
from rt.clock import ticks_diff
from rt import guard as _guard
from safety import checks as _checks
from safety import risk as _risk
from safety.risk import (RiskTable, Events, name_of,
                         EV_RAISE, EV_TRIP, EV_K_OPEN, EV_SAFE_V,
                         EV_BLEED_TO, EV_LATCH, EV_RESET, EV_FAILSAFE, H3, H7, H9, H12)
from safety.protections import Protections, cst_fault_of, cst_error_of
from safety.trip import TripPath, IDLE, POWER_OFF, SAFE
from safety.interlock import ALLOW as _ALLOW, _ptick
from safety.lockout import Lockout, L_ESTOP, L_CONTACTOR
from safety.latches import Latches
from safety.checkrun import CheckRunner

NA = const(-1)
CST_R_FAULT = const(0x10)
_A_K12 = const(1)      # safety.interlock bits (local: folded by the compiler)
_A_PWR = const(2)
_A_TIMED = const(4)


_RUN_STATE = ("ctx", "warn_count", "h11_pf")


class Supervisor:
    def __init__(self, cfg, clock, board, inp, out, bms, store=None):
        self.clock = clock
        self.board = board
        self.inp = inp
        self.out = out
        self.bms = bms
        self.checks = _checks.build(cfg)
        self.risk = RiskTable(cfg)
        self.events = Events(config.get(cfg, "risk.events"))
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
        self.h11_on = 0              # H-11 current cut (until K1/K2 and power stage are off)
        # H-12: output interlock
        self.h12_stop = config.get(cfg, "h12.stop_ms")
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
        # internals
        self._k_applied = 0
        self._cap = self.rated_i     # lockout cap for this session
        self._trip_state = IDLE
        # the protection tick inside a generator that catches (rt.guard: no
        # heap frame per call)
        self._g_protect = _guard.start(self._tick, self.fail_safe)
        self.run = CheckRunner(self, cfg, _checks.Ctx(bms, inp), self.checks, self.risk,
                               self.events)
        self.latches = Latches(self, cfg, self.lock, store)
        self._boot_cause = self.latches.load()

    # ---------------------------------------------------------- persistence
    def save(self):
        """Persist lockout/latches now (allocates, does file I/O)."""
        return self.latches.save()

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

    # (A new guard when a BaseException ended the old one, and the call
    # that found it ended.  A separate method: with an argument more, the
    # entry point's frame would no longer fit the C stack.)
    def _rs_protect(self, now):
        self._g_protect = _guard.start(self._tick, self.fail_safe)
        return self._g_protect(now)

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
        return self.run.check_head(now)

    def check_mid(self, now):
        """S-5..S-9, a later pass of the same check tick (after
        ``check_head``: same period, fixed phase); never raises."""
        return self.run.check_mid(now)

    def check_tail(self, now):
        """S-10..S-13, as ``check_mid``; never raises."""
        return self.run.check_tail(now)

    def _stop_for_check(self, i):
        """A level-II check raised: the session stops (the first one counts)."""
        if not self.stop_request:
            self.stop_request = i
            if not self.tripped:
                c = self.checks[i - 1]
                self.cst_reason = CST_R_FAULT
                self.cst_fault = c.CST_FAULT
                self.cst_error = c.CST_ERROR

    def _new_session(self):
        """Charging just started: no stop asked for yet."""
        self.stop_request = 0
        if not self.tripped:
            self.cst_reason = 0
            self.cst_fault = 0
            self.cst_error = 0

    # ------------------------------------------------------------ slow tick
    def slow_tick(self, now, wall_s=None):
        """Lockout bookkeeping and persistence (allocates; ~1 s task).
        Returns True if there was any (it allocated), else False."""
        if wall_s is not None:
            self.wall_s = wall_s
        work = self.run.notes(now, self.lock, self.wall_s)
        if self.lock.dirty:
            self.save()
            work = True
        return work

    # ------------------------------------------------------- operator / app
    def start_allowed(self, vin, now_date):
        """May a session for ``vin`` start?  ``now_date`` = wall-clock
        seconds (RTC).  Returns (bool, reason).  Call it before every start:
        it also arms the lockout current cap (mode "cap") for the session it
        admits."""
        return self.latches.start_allowed(vin, now_date)

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
        self.run.h11_clear()
        self.events.add(self.clock.ticks_ms(), EV_RESET, 0, 0, 0)
        return True

    def reset_estop(self):
        """Operator reset of the E-stop latch; refused while still pressed."""
        return self.latches.reset_estop()

    def clear_contactor_fault(self):
        """Operator clears H-7 after inspection; refused while the feedback
        still disagrees with the (open) command."""
        return self.latches.clear_contactor_fault()

    def clear_store_fault(self):
        """Operator accepts the loss of an unusable persisted record."""
        return self.latches.clear_store_fault()

    def acknowledge(self):
        """Operator confirms the SOC anomaly (needs-confirmation flag)."""
        return self.latches.acknowledge()

    def __getattr__(self, name):
        # ``needs_confirmation``: the lockout's flag.  Not a property: a class
        # with a property makes every attribute store on its instances look
        # the class up first (MicroPython's special accessors: 5x a plain
        # store), and the app stores ``charging``/``stage``/``stale`` and
        # the protection tick ``current_limit`` every tick.
        if name == "needs_confirmation":
            return self.lock.confirm
        # the components' state, read by the console and the tests
        if name in _RUN_STATE:
            return getattr(self.run, name)
        if name == "store_warnings":
            return self.latches.warnings
        if name == "store":
            return self.latches.store
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
