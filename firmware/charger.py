"""The charger application: wires board, protocol, safety and diagnostics.

Data flows one way: CAN frames -> ``BmsLink`` (ids, transport, decode) ->
``ChargerSession`` (GB/T 27930 stages) and ``Supervisor`` (safety) ->
``Outputs`` -> ``board.write_outputs``.  The session never touches a pin;
the supervisor runs first in every protection tick and has the last word
on the outputs, so it can always cut the output without asking the
session.

Task table (periods are configuration, see ``CONFIG_SCHEMA``):

    task     period  offset  work
    protect   5 ms    0     read inputs, hard protections, trip path, write outputs
    can      10 ms    0     drain the CAN receive queue into the link, TP timers
    session  10 ms    1     GB/T 27930 state machine, control, charger frames
    records  50 ms    5     telemetry, safety events -> event log / bench text
    checks  100 ms    3     staleness, H-11, S-1..S-4 (check_head)
    checks2 100 ms   15     S-5..S-9 (check_mid)
    checks3 100 ms   35     S-10..S-13 (check_tail)
    slow   1000 ms   25     lockout bookkeeping, persistence (file I/O), GC
    console  10 ms    5     mpremote-compatible console (when enabled)

(offsets of records, checks2, checks3 and slow: 1, 3, 7 and 5 x
``sched.protect_ms``)  The scheduler runs this table from a precomputed
cycle (rt/scheduler.py: 310 passes per second, which tasks in which pass
looked up, not tested).  The check tick is in three parts so that no pass
holds all thirteen checks: checks2 and checks3 share a pass with a
protection tick that runs alone, each check still runs every 100 ms at a
fixed phase (persistence and release times unchanged), and the head's
sampling phase (S-2 against the BMS's BCS) stays at 3 ms.  Garbage is
collected only with no session in progress (IDLE, CONNECTED, DONE: every
output off; once at plug-in by the records pass), never from the lock to
the end of a session (a collection is ~680 kinstr on the target with the
app's heap, 9.8 ms of an F405) unless the app's own allocations reach
16 KB.
Each scheduler pass costs interpreter time of its own, so records and
slow share passes the protection tick needs anyway: they sit on the
protection grid (multiples of ``sched.protect_ms``), on different 5 ms
slots and, with the default periods, never in the pass that also runs the
CAN task: 310 passes per second instead of 331 with offsets 2/7
(docs/performance.md).  The checks keep offset 3: their sampling phase
against the BMS's 250 ms BCS is part of how S-2 sees a current ramp, so
moving them is a behaviour change, not an optimisation.  The session
keeps its own pass 1 ms after the CAN task: an output it changes is
written by the next protection tick (4 ms later); in the protection pass
it would wait 5 ms, and the conformance tests' latencies
(tests/conformance/conftest.py) assume offset 1.

H-9: an exception in any task, or a console interrupt, forces every output
safe (``board.force_safe``) and halts charging; the protection tick keeps
holding the outputs safe and the console stays up so a field engineer can
see why.
"""
import gc
import sys
import micropython
from array import array
import config
from micropython import const
from board import Inputs, Outputs, CanFrame
from rt.scheduler import Scheduler
from gbt.bmsdata import BmsData
# Every module that declares settings is imported here, so the whole schema
# is registered (and validated) whichever features a board enables.
from gbt.link import BmsLink
from gbt.session import ChargerSession
from gbt.ixwatch import IxWatch
from safety.supervisor import Supervisor
from diag import telemetry as _tel
from diag import eventlog as _evlog
import diag.settings  # noqa: F401  (console/trace settings; their code loads on demand)
import security.settings  # noqa: F401  (security settings; the crypto loads on demand)
from safety.checks import STALE_BCL, STALE_BCS, STALE_BSM, STALE_BMV, STALE_BMT
assert (STALE_BCL, STALE_BCS, STALE_BSM, STALE_BMV, STALE_BMT) == (2, 4, 8, 16, 32)
from rt.clock import ticks_diff, ticks_add
from gbt.enc import enc_cst, CST_R_FAULT, CST_F_OTHER
from gbt.ids import ID_CST
from gbt.stages import (STAGE_NAMES, WHY_STOP_REQ, IDLE, CONNECTED, STOPPING,
                        REHANDSHAKE, DONE, CHARGING)
from safety.risk import EV_RAISE as _EV_RAISE, EV_CLEAR as _EV_CLEAR, \
    EV_LOCKOUT as _EV_LOCKOUT, EV_FAILSAFE as _EV_FAILSAFE

CONFIG_SCHEMA = (
    ("sched.can_ms", 10, 1, 10, "ms", "CAN receive tick (the 64-frame RX FIFO holds 33 ms of a saturated bus)"),
    ("sched.session_ms", 10, 5, 10, "ms", "Session tick (must be <= 10 ms: CST is sent every 10 ms)"),
    ("sched.checks_ms", 100, 10, 1000, "ms", "Safety check tick (S-1..S-13)"),
    ("sched.console_ms", 10, 5, 200, "ms", "Console poll period (mpremote fs cp throughput scales with it)"),
    ("sched.records_ms", 50, 10, 1000, "ms", "Telemetry/event-log tick (Table-1 items use multiples)"),
    ("sched.slow_ms", 1000, 100, 10000, "ms", "Slow housekeeping tick (lockout store, file I/O)"),
    ("can.rx_burst", 32, 1, 256, "frames", "Max frames processed per CAN tick (bounds a pass under a flood)"),
    ("can.rx_cost", 40, 8, 1000, "units", "Max receive work per CAN tick, in ~1,000 target instructions per unit (a repeated or plain TP.DT frame 1, a repeat handled 3, a decode 6 + 3 per 64 bytes): bounds a pass under a flood of frames that are not repeats; normal traffic stays below it"),
    ("sched.alloc_stats", 0, 0, 1, "-", "Count heap bytes allocated per task (diagnostics/benchmarks)"),
    ("sched.gc_max_s", 30, 0, 3600, "s", "Slow task, with no session in progress (idle, connected, done): collect garbage after the app allocated (texts, events, console), else at least this often (the board may allocate); 0 = every slow tick. From the lock to the end of a session only once the app's own allocations since the last collection reach 16 KB (the heap is collected at plug-in): the control tasks allocate nothing, and a collection costs ~10 ms of an F405"),
    ("safety.stale_bcl_ms", 1000, 100, 10000, "ms", "BCL older than this: checks that need it go INACTIVE"),
    ("safety.stale_bcs_ms", 5000, 250, 30000, "ms", "BCS older than this: checks that need it go INACTIVE"),
    ("safety.stale_bsm_ms", 5000, 250, 30000, "ms", "BSM older than this: checks that need it go INACTIVE"),
    ("safety.stale_bmv_ms", 30000, 1000, 120000, "ms", "BMV/BMT older than this: checks that need them go INACTIVE"),
    ("charger.utc_offset_min", 480, -720, 840, "min", "Local time zone for CTS and records (Beijing = +480)"),
    ("log.file_bytes", 4096, 512, 65536, "bytes", "Event/fault log: size of one file before rotation"),
    ("log.files", 4, 2, 16, "files", "Event/fault log: number of rotated files kept"),
    ("telemetry.file_bytes", 65536, 1024, 1048576, "bytes", "Telemetry file sink size (boards without a telemetry UART)"),
)
config.register(CONFIG_SCHEMA)


def _cross(cfg):
    # store.path: a file name in the state directory (next to the event log
    # "events.N" and the telemetry file, which it must not overwrite)
    p = cfg["store.path"]
    if not (0 < len(p) <= 32 and p[0] != "." and
            all(ch.isalpha() or ch.isdigit() or ch in "._-" for ch in p) and
            all(ord(ch) < 0x80 for ch in p)) or \
            p.startswith("events.") or p.startswith("telemetry"):
        return ("store.path must be a plain file name in the state directory "
                "(1..32 of A-Z a-z 0-9 . _ -, not starting with '.', 'events.' "
                "or 'telemetry'), got %r" % (p,))
    return None


config.CROSS_CHECKS.append(_cross)

_INJECT_EXCEPTION = const(1)
_TMASK = const(0x3FFFFFFF)    # ticks ms differences modulo 2**30 (exact below 2**29 ms)
_HALF = const(0x20000000)


@micropython.viper
def _stale(now, lo, lim: ptr32) -> int:
    """``checks.STALE_*`` bits of the BMS messages whose last valid frame
    (``lo`` = link.last_ok, by PF; < 0: never) is older than its limit
    (``lim``: BCL, BCS, BSM, BMV/BMT ms), as ``ticks_diff(now, t) > lim``."""
    n = int(now)
    st = 0
    t = int(lo[0x10])
    if t < 0 or ((n - t + _HALF) & _TMASK) - _HALF > lim[0]:
        st |= 0x02                      # STALE_BCL
    t = int(lo[0x11])
    if t < 0 or ((n - t + _HALF) & _TMASK) - _HALF > lim[1]:
        st |= 0x04                      # STALE_BCS
    t = int(lo[0x13])
    if t < 0 or ((n - t + _HALF) & _TMASK) - _HALF > lim[2]:
        st |= 0x08                      # STALE_BSM
    t = int(lo[0x15])
    if t < 0 or ((n - t + _HALF) & _TMASK) - _HALF > lim[3]:
        st |= 0x10                      # STALE_BMV
    t = int(lo[0x16])
    if t < 0 or ((n - t + _HALF) & _TMASK) - _HALF > lim[3]:
        st |= 0x20                      # STALE_BMT
    return st

# Heap bytes the app counts per allocation site (estimates, generous), and
# what it lets accumulate while charging before the slow task collects:
# a third of the ~50 KB a PYBv1.1 has free at charging (docs/performance.md)
_GC_TEXT = const(192)       # one text event: formatting, the board's copy, log record
_GC_CONSOLE = const(2048)   # one console poll that had input (a command line)
_GC_SLOW = const(1024)      # lockout notes, persistence (pack, file I/O)
_GC_CHARGING = const(16384)
# Stages in which the slow task collects as it needs (no session: outputs
# off); in every other stage only past _GC_CHARGING (see _slow)
_GC_STAGES = const(0x2003)  # 1 << IDLE | 1 << CONNECTED | 1 << DONE
assert _GC_STAGES == (1 << IDLE) | (1 << CONNECTED) | (1 << DONE)


class ChargerApp:
    def __init__(self, board, config_path="config.json", console=False,
                 state_dir="state"):
        self.board = board
        self._gc_due = True             # the app allocated since the last collection
        self._gc_plug = False           # plugged in: collect before the session (_records)
        self._gc_bytes = 0              # ... about this much (see _slow)
        self._rtc = None            # bound RTC method, cached (no allocation per call)
        self.config_path = config_path
        self.clock = board.clock
        self.inp = Inputs()
        self.out = Outputs()
        self.out.safe()
        self.frame = CanFrame()
        self.bms = BmsData()
        self.halted = None          # text of the fault that halted charging
        self.fail_count = 0         # H-9 exceptions (the first one is logged)
        self.inject_fault = 0       # test hook: SIL INJECT packet / console
        cfg, errors = config.load(config_path)
        self.config_errors = errors
        if errors:
            # Bad configuration never energises the output: run with
            # defaults for diagnostics only, and refuse every session.
            cfg = config.defaults()
            self.halted = "bad configuration: " + "; ".join(errors)
        # the running configuration, compact (the dict is garbage once
        # the app is built: 1.8 KB of heap)
        self.cfg = cfg = config.Settings(cfg)
        self._utc_off_s = cfg["charger.utc_offset_min"] * 60   # (changes at the next boot)
        self.sched = s = Scheduler(self.clock)
        self._send = board.can_send
        self.state_dir = state_dir
        _mkdir(state_dir)
        self.log = _evlog.EventLog(state_dir, cfg["log.file_bytes"], cfg["log.files"])
        self.log.log(self.rtc_s(), _evlog.EV_BOOT, 0 if errors else 1, 0)
        for i, e in enumerate(errors):
            self.log.log(self.rtc_s(), _evlog.EV_CONFIG_ERROR, i, 0, e[:8])
        from store import Store
        st = Store(state_dir + "/" + cfg["store.path"], cfg["store.max_bytes"])
        self.sup = Supervisor(cfg, self.clock, board, self.inp, self.out, self.bms, store=st)
        if st.present:                    # a fresh board has no record yet: no news
            for w in self.sup.store_warnings:
                self.event("store", w[7:] if w.startswith("store: ") else w)
        from safety.lockout import L_STORE
        refused = self.sup.lock.latched & L_STORE
        if refused or (st.present and self.sup.store_warnings):
            # a = 1: no usable record, charging refused (L_STORE); 0: a
            # generation was skipped (e.g. fell back to .old).  Not on a
            # fresh board (no record at all yet).
            self.log.log(self.rtc_s(), _evlog.EV_STORE, 1 if refused else 0,
                         len(self.sup.store_warnings), "refused" if refused else "warning")
        self._ev_seq = self.sup.events.seq
        self.link = BmsLink(self._send, self.clock, self.bms, cfg)
        # H-11 reads the link's last-valid-message times itself (not the
        # session's timers): BCL/BCS freshness while current flows.
        self.sup.rx_times = self.link.last_ok
        # C-4: the intrusion monitor's once-a-second look (rates, foreign
        # addresses, physics), from the slow task
        self.ixw = IxWatch(self.link, self.bms, cfg)
        self.session = ChargerSession(cfg, self._send, self.inp, self.out,
                                      self.bms, self.link)
        # (the session registers its message handler on the link itself)
        self.session.stage_entered_ms = self.clock.ticks_ms()   # idle since boot
        self.session.vin_check = self._vin_check
        self.session.start_gate = self._start_gate
        self.session.tx.datetime = self._local_time
        sink = board.record_sink(cfg, state_dir)
        self.tel = _tel.Telemetry(cfg, self.clock, self.bms, self.inp, self.out, sink,
                                  self.rtc_s, _tel.SESSION_STAGES)
        self._last_cem = 0
        self.rx_burst = cfg["can.rx_burst"]
        self.rx_cost = cfg["can.rx_cost"]
        self._can_recv = board.can_recv
        self._drain = self.link.drain
        # Bound methods of the per-tick calls, made once (a lookup chain
        # like ``self.board.read_inputs`` costs a few dict lookups per call
        # at 200 calls per second).
        self._read_inputs = board.read_inputs
        self._write_outputs = board.write_outputs
        self._protect_tick = self.sup.protect_tick
        self._link_poll = self.link.poll
        self._tel_tick = self.tel.tick
        self._check_head = self.sup.check_head
        # staleness limits of _checks (read once, not per tick)
        self._stale_ms = array("i", (cfg["safety.stale_bcl_ms"], cfg["safety.stale_bcs_ms"],
                                     cfg["safety.stale_bsm_ms"], cfg["safety.stale_bmv_ms"]))
        self.gc_max_ms = cfg["sched.gc_max_s"] * 1000
        self.gc_runs = 0
        self._gc_t = self.clock.ticks_ms()
        self.rx_backlog_max = 0
        self._stage = -1
        self._fs_cst = bytearray(8)       # CST sent by the app after a fail-safe
        enc_cst(self._fs_cst, CST_R_FAULT, CST_F_OTHER, 0)
        self._fs_cst_t0 = -1
        self._fs_cst_last = 0
        self._logged_why = None
        self._logq = []                   # event-log records queued by _stage_changed
        self._ev = [0, 0, 0, 0, 0]
        self._ix_seq = 0
        self._ix = [0, 0, 0]
        pm = cfg["sched.protect_ms"]
        s.add("protect", self._protect, pm, 0)
        s.add("can", self._can, cfg["sched.can_ms"], 0)
        s.add("session", self._session, cfg["sched.session_ms"], 1)
        s.add("records", self._records, cfg["sched.records_ms"], pm)
        cm = cfg["sched.checks_ms"]
        s.add("checks", self._checks, cm, 3)
        # the other two parts of the check tick, 3 and 7 protection ticks
        # later (15 and 35 ms, passes where a protection tick runs alone):
        # the same period, so every check still runs every check tick, at
        # a fixed phase; never before the head of the same tick
        off2 = (3 * pm) % cm
        off3 = (7 * pm) % cm
        if not 3 < off2 < off3:
            off2 = off3 = 3
        s.add("checks2", self.sup.check_mid, cm, off2)
        s.add("checks3", self.sup.check_tail, cm, off3)
        s.add("slow", self._slow, cfg["sched.slow_ms"], 5 * pm)
        self.console = None
        if console:
            self._start_console()
        import bootseq                    # C-3: update steps logged, refused mid-session
        bootseq.attach(self)
        # C-2: the authenticated platform link, when the site has one
        # (security/platlink.py: telemetry sealed in batches, the handshake
        # in its own low-priority task, the TCU's console commands)
        self.platlink = None
        if security.settings.link_configured(cfg, getattr(board, "keys_path", None) or "keys.json"):
            from security.platlink import install as _platlink
            self.platlink = _platlink(self)
        s.alloc_stats = bool(cfg["sched.alloc_stats"])
        s.start()
        self._run_at = s.run_at         # the pass, bound once (board loops pass ``now``)
        self._g_pass = self._pass_guard()
        self.event("boot", "%s config=%s" % (board.name, "ok" if not errors else "BAD"))
        if errors:
            for e in errors:
                self.event("config", e)

    # ---- tasks ----------------------------------------------------------
    def _protect(self, now):
        if self.halted is not None:
            self._protect_halted(now)
            return
        self._read_inputs(self.inp)
        self._protect_tick(now)
        self._write_outputs(self.out)

    def _protect_halted(self, now):
        # H-9 latched (or a bad configuration): hold every output safe.  The
        # fault may be in this very task (a broken input driver raises in
        # read_inputs every tick), so nothing here raises: the board is
        # forced safe again instead, every tick, without another fail-safe.
        out = self.out
        out.safe()
        try:
            if self._fs_cst_t0 >= 0:
                self._fail_safe_cst(now)  # (needs no inputs: before the read)
            self._read_inputs(self.inp)
            self._protect_tick(now)
            self._write_outputs(out)
        except Exception:
            self.board.force_safe()

    def _can(self, now):
        # The receive loop is the link's (viper: ~1,000 target instructions
        # per repeated frame instead of ~31,000, docs/performance.md),
        # bounded by frames and by cost.  ``_can_recv`` is read per tick:
        # diag.trace swaps it.  Bound methods cached in __init__ (taking
        # ``self.link.drain`` here would allocate every tick).
        n = self._drain(now, self._can_recv, self.frame, self.rx_burst, self.rx_cost)
        if n > self.rx_backlog_max:
            self.rx_backlog_max = n
        self._link_poll(now)

    def _session(self, now):
        if self.inject_fault == _INJECT_EXCEPTION:
            self.inject_fault = 0
            raise RuntimeError("injected fault (test hook)")
        if self.halted is not None:
            return
        sess = self.session
        sup = self.sup
        sess.i_cap = sup.current_limit
        if sup.tripped or sup.stop_request:
            self._sup_stop(now, sess, sup)
        sess.tick(now)
        if sess.stage != self._stage:
            # The supervisor follows the stage (only written when it
            # changes: an attribute store on the Supervisor, whose class
            # has a property, costs ~1 kinstr on the target).
            st = sess.stage
            sup.charging = st == CHARGING     # = sess.charging
            sup.stage = st                    # H-12: outputs this stage may have on
            self._stage_changed(sess)

    def _sup_stop(self, now, sess, sup):
        # (apart from _session: its calls would take that frame past the
        # 11 words a bytecode call keeps on the C stack, docs/performance.md)
        if sup.tripped:
            sess.on_trip(now, sup.cst_fault, sup.cst_error, sup.trip_cause)
        else:
            sess.request_stop(now, sup.cst_reason, sup.cst_fault, sup.cst_error,
                              WHY_STOP_REQ)

    def _stage_changed(self, sess):
        # Rare (a handful per session): formatting text here is acceptable.
        # The texts go out now (their time stamps mark the stage change for
        # the bench and the tests); the event-log records, with the time
        # taken now, are written by the next records pass (_log_pending):
        # an append to the log file costs 150..800 kinstr on the target,
        # more than a whole 1 ms pass, and this runs in the session's pass.
        prev = self._stage
        self._stage = sess.stage
        now_s = self.rtc_s()
        q = self._logq
        self.event("stage", STAGE_NAMES[sess.stage])
        q.append((now_s, _evlog.EV_STAGE, sess.stage, prev if prev >= 0 else 0, None))
        if sess.stop_why and sess.stage in (STOPPING, REHANDSHAKE, DONE) and \
                sess.stop_why is not self._logged_why:
            self._logged_why = sess.stop_why
            self.event("stop", sess.stop_why)
            tx = sess.tx
            q.append((now_s, _evlog.EV_STOP, tx.cst_reason, tx.cst_fault, sess.stop_why[:8]))
        if sess.stage == CONNECTED:
            self._logged_why = None
            self._gc_plug = True          # collect before the session starts (_records)
        if sess.cem != self._last_cem:
            self._last_cem = sess.cem
            if sess.cem:
                self.event("cem", "0x%08x" % sess.cem)
                q.append((now_s, _evlog.EV_CEM, sess.cem & 0x3FFFFFFF, 0, None))
        if sess.stage == IDLE and self.sup.tripped:
            # unplugged after a trip: allow the next session if nothing is latched
            if self.sup.rearm():
                self.event("rearm", "trip cleared on unplug")

    def _log_pending(self):
        """Write the event-log records the session pass queued (in order,
        before anything the records pass logs itself)."""
        q = self._logq
        log = self.log
        while q:
            t, code, a, b, text = q.pop(0)
            log.log(t, code, a, b, text, False)
        log.commit()                      # one littlefs commit for the batch

    def _records(self, now):
        if self._logq:
            self._log_pending()
        if self._gc_plug:
            self._plug_collect()
        self._tel_tick(now, self.session.stage)
        ev = self.sup.events
        if ev.seq != self._ev_seq:
            self._safety_events(now, ev)
        if self.link.ix.seq != self._ix_seq:
            self._intrusion_events(now)

    def _intrusion_events(self, now):
        # Rare by construction (each is a protocol violation): text allowed.
        ix = self.link.ix
        s = max(self._ix_seq, ix.oldest())
        e = self._ix
        now_s = self.rtc_s()
        from gbt.intrusion import name as ix_name
        while s < ix.seq:
            if ix.read(s, e):
                self.event("intrusion", "%s 0x%x" % (ix_name(e[1]), e[2]))
                self.log.log(now_s, _evlog.EV_INTRUSION, e[1], e[2])
                self.tel.event(now, _evlog.EV_INTRUSION, e[1], e[2])
            s += 1
        self._ix_seq = ix.seq

    def _safety_events(self, now, ev):
        # Events are rare; their text is for people, so it may allocate.
        s = max(self._ev_seq, ev.oldest())
        e = self._ev
        now_s = self.rtc_s()
        while s < ev.seq:
            ev.read(s, e)
            self.event("safety", ev.text(s))
            kind, ident, level, value = e[1], e[2], e[3], e[4]
            if kind == _EV_RAISE:
                if ident > 100 and level >= 3:
                    self.log.log(now_s, _evlog.EV_TRIP, ident, value, None, False)
                else:
                    self.log.log(now_s, _evlog.EV_RISK_RAISED, ident, level, None, False)
                self.tel.event(now, _evlog.EV_RISK_RAISED, ident, level)
            elif kind == _EV_CLEAR:
                self.log.log(now_s, _evlog.EV_RISK_CLEARED, ident, level, None, False)
                self.tel.event(now, _evlog.EV_RISK_CLEARED, ident, level)
            elif kind == _EV_LOCKOUT:
                self.log.log(now_s, _evlog.EV_LOCKOUT, ident, value, None, False)
            elif kind == _EV_FAILSAFE:
                self.log.log(now_s, _evlog.EV_FAILSAFE, 0, 0, None, False)
            s += 1
        self._ev_seq = ev.seq
        self.log.commit()                 # the pass's records in one commit

    def _slow(self, now):
        self.ixw.tick(now, self.sup.charging)
        if self.sup.slow_tick(now, self.rtc_s()):
            self._gc_note(_GC_SLOW)
            return                        # (file I/O this pass: collect at the next)
        # Collect here, between control passes, so that a collection never
        # lands inside the protection or session tick; and not while a
        # session is in progress (LOCKING .. FINISH: the lock, the
        # auxiliary supply, the power stage or K1/K2 may be on): a
        # collection costs ~680 kinstr on the target with the app's heap
        # (9.8 ms of an F405; docs/performance.md, "worst pass"), ten 1 ms
        # passes, and would delay the protection tick by that much.  With
        # no session (IDLE, CONNECTED, DONE: every output the protection
        # tick guards is off) a late tick cuts nothing.  There: when the
        # app allocated (``_gc_due``: text events, the console, the
        # slow tick's persistence) or every ``sched.gc_max_s`` (the board
        # may allocate).  In a session: only once the app's allocations
        # since the last collection (``_gc_bytes``, counted where it
        # allocates: text length + formatting, console input, persistence)
        # reach ``_GC_CHARGING`` -- the heap running low.  (Asking the heap
        # itself, gc.mem_free(), scans the allocation table: 230 kinstr,
        # about a collection.)
        if not (_GC_STAGES >> self.session.stage) & 1:
            if self._gc_bytes < _GC_CHARGING:
                return
        elif not (self._gc_due or ticks_diff(now, self._gc_t) >= self.gc_max_ms):
            return
        self._gc_due = False
        self._gc_bytes = 0
        self._gc_t = now
        gc.collect()
        self.gc_runs += 1

    def _plug_collect(self):
        # Plugged in, not started yet (CONNECTED: every output off, so a
        # pass made long by the collection delays no protection that could
        # cut anything): start the session with the heap collected, as
        # the slow task will not collect again until it ends (_slow).
        self._gc_plug = False
        if self.session.stage == CONNECTED:
            self._gc_due = False
            self._gc_bytes = 0
            self._gc_t = self.clock.ticks_ms()
            gc.collect()
            self.gc_runs += 1

    def _gc_note(self, n):
        self._gc_due = True
        self._gc_bytes += n

    def rtc_s(self):
        """Wall-clock seconds (UTC) since the firmware epoch, 2020-01-01
        (``rt.calendar``): the board's ``rtc_s`` (the SIL's simulated date),
        else the port's ``time.time()`` converted.  A small int on every port
        until 2054, so the slow task, the telemetry re-sync and the lockout
        arithmetic allocate nothing on a 32-bit board; negative = the board's
        clock is not set."""
        rtc = self._rtc
        if rtc is None:
            rtc = self._rtc = self.board.rtc_s
        return rtc()

    def _local_time(self):
        """CTS date-time: the RTC in local time (the SIL's simulated date)."""
        from rt.calendar import civil
        return civil(self.rtc_s() + self._utc_off_s)

    def _vin_check(self, vin):
        b = vin.encode()
        self.sup.vin = b
        ok, why = self.sup.start_allowed(b, self.rtc_s())
        if not ok:
            self.event("refused", "VIN %s: %s" % (vin, why))
        return ok, why

    def _start_gate(self):
        ok, why = self.sup.start_allowed(None, self.rtc_s())
        if not ok:
            self.event("refused", why)
        return ok, why

    def _checks(self, now):
        # Values the BMS stopped refreshing must not feed the checks: mark
        # them stale from the link's last-valid-frame times (machine code:
        # ``_stale``), then the first half of the check tick.
        self.sup.stale = _stale(now, self.link.last_ok, self._stale_ms)
        self._check_head(now)

    def _console(self, now):
        if self._logq:                    # its commands log and read the log:
            self._log_pending()           # the queued records come first
        if self.console.poll(now):        # input: the console allocates
            self._gc_note(_GC_CONSOLE)

    # ---- lifecycle --------------------------------------------------------
    def run_due(self, now=None):
        """One scheduler pass (``now``: the time the board loop just read
        or advanced its clock to; default: the scheduler reads the clock)."""
        # (The try/except is in a generator made once, rt.guard: here it
        # would give this function a heap frame at every pass.)
        try:
            return self._g_pass(now)      # the pass, guarded (_passes)
        except StopIteration:             # a re-raised BaseException ended it
            return self._restart_pass(now)

    def _restart_pass(self, now):
        self._g_pass = self._pass_guard()
        return self._g_pass(now)

    def _pass_guard(self):
        g = self._passes()
        next(g)
        return g.send

    def _passes(self):
        # rt.guard's generator, for the pass: its frame is made once
        run_at = self._run_at
        fail = self._task_failed
        now = yield
        while True:
            try:
                r = run_at(now) if now is not None else self.sched.run_due()
            except BaseException as e:
                fail(e)                   # (re-raises a BaseException: ends this)
                r = 0
            now = yield r

    def _task_failed(self, e):
        self.fail_safe(e)
        if not isinstance(e, Exception):
            raise e                       # KeyboardInterrupt, SystemExit: after H-9

    def fail_safe(self, exc):
        """H-9: never fail live.  Outputs first, bookkeeping after (once:
        a task that keeps raising is counted in ``fail_count``, not logged
        again every run)."""
        self.board.force_safe()
        self.out.safe()
        self.fail_count += 1
        if self.fail_count > 1:
            return
        try:
            self.sup.fail_safe(exc)
        except Exception:
            pass
        now = self.clock.ticks_ms()
        self._fs_cst_t0 = now
        self._fs_cst_last = ticks_add(now, -10)
        try:
            self.halted = "exception: %s %s" % (type(exc).__name__, exc)
        except Exception:               # out of memory (MemoryError is an H-9 cause too)
            self.halted = "exception"
        try:
            self.event("fail-safe", self.halted)
            self._log_pending()           # the session's records first, in order
            self.log.log(self.rtc_s(), _evlog.EV_FAILSAFE, 0, 0, type(exc).__name__[:8])
            # stderr, not stdout: stdout may be the console an engineer uses
            sys.print_exception(exc, sys.stderr)
        except Exception:
            pass

    def _fail_safe_cst(self, now):
        # After H-9 the session object may be broken, so the app itself tells
        # the vehicle: CST "fault / other" every 10 ms for 10 s (as DN4002).
        el = ticks_diff(now, self._fs_cst_t0)
        if el > 10000:
            self._fs_cst_t0 = -1
        elif ticks_diff(now, self._fs_cst_last) >= 10:
            self._fs_cst_last = now
            self._send(ID_CST, self._fs_cst, 4)

    def event(self, kind, text):
        self._gc_note(len(text) + _GC_TEXT)   # the caller formatted text
        self.board.send_text(kind, text)

    def shutdown(self, why):
        self.board.force_safe()
        self.out.safe()
        self._log_pending()
        for t in self.sched.tasks:
            self.event("sched", "%s runs=%d total_us=%d wcet_us=%d overruns=%d alloc=%d" % (
                t.name, t.runs, t.total_us, t.wcet_us, t.overruns, t.alloc_bytes))
        self.board.bye(0, why)

    def _start_console(self):
        from diag.console import Console
        ns = {"app": self}
        # Each board knows its REPL port (stdin/stdout of the SIL process,
        # the USB VCP / UART on STM32 and ESP32).
        self.console = Console(self.board.console_stream(self.cfg), ns, self.cfg)
        from diag import commands
        d = commands.install(self.console, self)
        # Board commands (the SIL board: plug() / unplug() of the bench).
        for name, fn, text in self.board.console_commands(self):
            d.add_board_command(name, fn, text)
        auth = self.board.console_auth   # a bench may open it
        if self.cfg["console.auth"] if auth is None else auth:
            from security.consolegate import install as _roles  # C-1: console roles
            _roles(self.console, self, d)
        self.console.start()
        self.sched.add("console", self._console, self.cfg["sched.console_ms"], 5)


def _mkdir(path):
    import os
    try:
        os.mkdir(path)
    except OSError:
        pass       # exists (or a read-only FS: the store then reports it)


def main(board, config_path="config.json", console=False, state_dir="state"):
    """Build the app and give it to the board's loop (or the default loop)."""
    try:
        app = ChargerApp(board, config_path, console, state_dir)
    except BaseException as e:
        board.force_safe()
        raise
    board.run(app)
    return app
