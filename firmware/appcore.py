"""The application core's parts, plain objects ``charger.ChargerApp`` owns
(not mixins), in one module (a module costs heap of its own on a board):

- the task table, its settings and the pass guard (``install``,
  ``pass_guard``), the staleness of the BMS's messages (``stale``);
- the records pass's plumbing (``EventPump``);
- the heap collection policy (``HeapPolicy``).

The console start is ``appconsole`` (loaded only with a console).
"""
import micropython
from micropython import const
import config
from rt.clock import ticks_diff
from diag import eventlog as _evlog
from safety.risk import EV_RAISE as _EV_RAISE, EV_CLEAR as _EV_CLEAR, \
    EV_LOCKOUT as _EV_LOCKOUT, EV_FAILSAFE as _EV_FAILSAFE
import gc
from gbt.stages import IDLE, CONNECTED, DONE

# ---- tasks ----------------------------------------------------------
# The app's task table and the staleness of the BMS's messages.
# 
# Task table (periods are configuration, see ``CONFIG_SCHEMA``):
# 
#     task     period  offset  work
#     protect   5 ms    0     read inputs, hard protections, trip path, write outputs
#     can      10 ms    0     drain the CAN receive queue into the link, TP timers
#     session  10 ms    1     GB/T 27930 state machine, control, charger frames
#     records  50 ms    5     telemetry, safety events -> event log / bench text
#     checks  100 ms    3     staleness, H-11, S-1..S-4 (check_head)
#     checks2 100 ms   15     S-5..S-9 (check_mid)
#     checks3 100 ms   35     S-10..S-13 (check_tail)
#     slow   1000 ms   25     lockout bookkeeping, persistence (file I/O), GC
#     console  10 ms    5     mpremote-compatible console (when enabled)
# 
# (offsets of records, checks2, checks3 and slow: 1, 3, 7 and 5 x
# ``sched.protect_ms``)  The scheduler runs this table from a precomputed
# cycle (rt/scheduler.py: 310 passes per second, which tasks in which pass
# looked up, not tested).  The check tick is in three parts so that no pass
# holds all thirteen checks: checks2 and checks3 share a pass with a
# protection tick that runs alone, each check still runs every 100 ms at a
# fixed phase (persistence and release times unchanged), and the head's
# sampling phase (S-2 against the BMS's BCS) stays at 3 ms.  Garbage is
# collected only with no session in progress (IDLE, CONNECTED, DONE: every
# output off; once at plug-in by the records pass), never from the lock to
# the end of a session (a collection is ~680 kinstr on the target with the
# app's heap, 9.8 ms of an F405) unless the app's own allocations reach
# 16 KB.
# Each scheduler pass costs interpreter time of its own, so records and
# slow share passes the protection tick needs anyway: they sit on the
# protection grid (multiples of ``sched.protect_ms``), on different 5 ms
# slots and, with the default periods, never in the pass that also runs the
# CAN task: 310 passes per second instead of 331 with offsets 2/7
# (docs/performance.md).  The checks keep offset 3: their sampling phase
# against the BMS's 250 ms BCS is part of how S-2 sees a current ramp, so
# moving them is a behaviour change, not an optimisation.  The session
# keeps its own pass 1 ms after the CAN task: an output it changes is
# written by the next protection tick (4 ms later); in the protection pass
# it would wait 5 ms, and the conformance tests' latencies
# (tests/conformance/conftest.py) assume offset 1.
CONFIG_SCHEMA = (
    ("sched.protect_ms", 5, 1, 10, "ms", "Protection tick (hard protections, trip path, output write); H-1 needs <= 10 ms. Boards also trip H-1/H-2/H-3 from a 1 ms timer interrupt"),
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
)
config.register(CONFIG_SCHEMA)

_TMASK = const(0x3FFFFFFF)    # ticks ms differences modulo 2**30 (exact below 2**29 ms)
_HALF = const(0x20000000)


@micropython.viper
def stale(now, lo, lim: ptr32) -> int:
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


def install(app, s, cfg):
    """Add the app's tasks to the scheduler ``s`` (the console's: ``appconsole``)."""
    pm = cfg["sched.protect_ms"]
    s.add("protect", app._protect, pm, 0)
    s.add("can", app._can, cfg["sched.can_ms"], 0)
    s.add("session", app._session, cfg["sched.session_ms"], 1)
    s.add("records", app._records, cfg["sched.records_ms"], pm)
    cm = cfg["sched.checks_ms"]
    s.add("checks", app._checks, cm, 3)
    # the other two parts of the check tick, 3 and 7 protection ticks
    # later (15 and 35 ms, passes where a protection tick runs alone):
    # the same period, so every check still runs every check tick, at
    # a fixed phase; never before the head of the same tick
    off2 = (3 * pm) % cm
    off3 = (7 * pm) % cm
    if not 3 < off2 < off3:
        off2 = off3 = 3
    s.add("checks2", app.sup.check_mid, cm, off2)
    s.add("checks3", app.sup.check_tail, cm, off3)
    s.add("slow", app._slow, cfg["sched.slow_ms"], 5 * pm)


def pass_guard(sched, fail):
    """One scheduler pass, guarded: ``g(now)`` runs it (``now`` None: the
    scheduler reads the clock); an exception in a task goes to ``fail``
    (H-9).  (The try/except is in a generator made once, rt.guard: in
    ``run_due`` it would give that function a heap frame at every pass.)
    A re-raised BaseException ends the generator: the app makes a new one."""
    g = _passes(sched, fail)
    next(g)
    return g.send


def _passes(sched, fail):
    # rt.guard's generator, for the pass: its frame is made once
    run_at = sched.run_at             # the pass, bound once (board loops pass ``now``)
    now = yield
    while True:
        try:
            r = run_at(now) if now is not None else sched.run_due()
        except BaseException as e:
            fail(e)                   # (re-raises a BaseException: ends this)
            r = 0
        now = yield r


# ---- records --------------------------------------------------------
# The records pass's plumbing: the event-log records the session pass
# queued (``logq``, written in order before anything else is logged), the
# supervisor's safety events and the link's intrusion events -> bench text
# (``app.event``), event log and telemetry event records.  Events are rare;
# their text is for people, so this may allocate.
class EventPump:
    def __init__(self, app):
        self.app = app
        self.logq = []                    # event-log records queued by _stage_changed
        self.ev_seq = app.sup.events.seq  # next safety event to read
        self.ev = [0, 0, 0, 0, 0]
        self.ix_seq = 0                   # next intrusion event to read
        self.ix = [0, 0, 0]

    def log_pending(self):
        """Write the event-log records the session pass queued (in order,
        before anything the records pass logs itself)."""
        q = self.logq
        log = self.app.log
        while q:
            t, code, a, b, text = q.pop(0)
            log.log(t, code, a, b, text, False)
        log.commit()                      # one littlefs commit for the batch

    def intrusion_events(self, now):
        app = self.app
        # Rare by construction (each is a protocol violation): text allowed.
        ix = app.link.ix
        s = max(self.ix_seq, ix.oldest())
        e = self.ix
        now_s = app.rtc_s()
        from gbt.intrusion import name as ix_name
        while s < ix.seq:
            if ix.read(s, e):
                app.event("intrusion", "%s 0x%x" % (ix_name(e[1]), e[2]))
                app.log.log(now_s, _evlog.EV_INTRUSION, e[1], e[2])
                app.tel.event(now, _evlog.EV_INTRUSION, e[1], e[2])
            s += 1
        self.ix_seq = ix.seq

    def safety_events(self, now, ev):
        app = self.app
        # Events are rare; their text is for people, so it may allocate.
        s = max(self.ev_seq, ev.oldest())
        e = self.ev
        now_s = app.rtc_s()
        while s < ev.seq:
            ev.read(s, e)
            app.event("safety", ev.text(s))
            kind, ident, level, value = e[1], e[2], e[3], e[4]
            if kind == _EV_RAISE:
                if ident > 100 and level >= 3:
                    app.log.log(now_s, _evlog.EV_TRIP, ident, value, None, False)
                else:
                    app.log.log(now_s, _evlog.EV_RISK_RAISED, ident, level, None, False)
                app.tel.event(now, _evlog.EV_RISK_RAISED, ident, level)
            elif kind == _EV_CLEAR:
                app.log.log(now_s, _evlog.EV_RISK_CLEARED, ident, level, None, False)
                app.tel.event(now, _evlog.EV_RISK_CLEARED, ident, level)
            elif kind == _EV_LOCKOUT:
                app.log.log(now_s, _evlog.EV_LOCKOUT, ident, value, None, False)
            elif kind == _EV_FAILSAFE:
                app.log.log(now_s, _evlog.EV_FAILSAFE, 0, 0, None, False)
            s += 1
        self.ev_seq = ev.seq
        app.log.commit()                 # the pass's records in one commit



# ---- heap -----------------------------------------------------------
# When the app collects garbage (issue 9, docs/performance.md).
# 
# Collected only with no session in progress (IDLE, CONNECTED, DONE: every
# output off; once at plug-in by the records pass), never from the lock to
# the end of a session (a collection is ~680 kinstr on the target with the
# app's heap, 9.8 ms of an F405) unless the app's own allocations reach
# 16 KB.  The app counts what it allocates where it allocates (``note``).
# Heap bytes the app counts per allocation site (estimates, generous), and
# what it lets accumulate while charging before the slow task collects:
# a third of the ~50 KB a PYBv1.1 has free at charging (docs/performance.md)
GC_TEXT = const(192)       # one text event: formatting, the board's copy, log record
GC_CONSOLE = const(2048)   # one console poll that had input (a command line)
GC_SLOW = const(1024)      # lockout notes, persistence (pack, file I/O)
_GC_CHARGING = const(16384)
# Stages in which the slow task collects as it needs (no session: outputs
# off); in every other stage only past _GC_CHARGING (see HeapPolicy.slow)
_GC_STAGES = const(0x2003)  # 1 << IDLE | 1 << CONNECTED | 1 << DONE
assert _GC_STAGES == (1 << IDLE) | (1 << CONNECTED) | (1 << DONE)


class HeapPolicy:
    def __init__(self, clock):
        self.clock = clock
        self.due = True                 # the app allocated since the last collection
        self.plug = False               # plugged in: collect before the session (records)
        self.bytes = 0                  # ... about this much (see slow)
        self.max_ms = 0                 # sched.gc_max_s (configure)
        self.runs = 0                   # collections so far
        self.t = clock.ticks_ms()

    def configure(self, cfg):
        self.max_ms = config.get(cfg, "sched.gc_max_s") * 1000
        self.t = self.clock.ticks_ms()

    def note(self, n):
        """The app allocated about ``n`` bytes (text, console, persistence)."""
        self.due = True
        self.bytes += n

    def slow(self, now, stage):
        # Collect here, between control passes, so that a collection never
        # lands inside the protection or session tick; and not while a
        # session is in progress (LOCKING .. FINISH: the lock, the
        # auxiliary supply, the power stage or K1/K2 may be on): a
        # collection costs ~680 kinstr on the target with the app's heap
        # (9.8 ms of an F405; docs/performance.md, "worst pass"), ten 1 ms
        # passes, and would delay the protection tick by that much.  With
        # no session (IDLE, CONNECTED, DONE: every output the protection
        # tick guards is off) a late tick cuts nothing.  There: when the
        # app allocated (``due``: text events, the console, the slow
        # tick's persistence) or every ``sched.gc_max_s`` (the board may
        # allocate).  In a session: only once the app's allocations since
        # the last collection (``bytes``, counted where it allocates: text
        # length + formatting, console input, persistence) reach
        # ``_GC_CHARGING`` -- the heap running low.  (Asking the heap
        # itself, gc.mem_free(), scans the allocation table: 230 kinstr,
        # about a collection.)
        if not (_GC_STAGES >> stage) & 1:
            if self.bytes < _GC_CHARGING:
                return
        elif not (self.due or ticks_diff(now, self.t) >= self.max_ms):
            return
        self._collect(now)

    def plug_collect(self, stage):
        # Plugged in, not started yet (CONNECTED: every output off, so a
        # pass made long by the collection delays no protection that could
        # cut anything): start the session with the heap collected, as
        # the slow task will not collect again until it ends (slow).
        self.plug = False
        if stage == CONNECTED:
            self._collect(self.clock.ticks_ms())

    def _collect(self, now):
        self.due = False
        self.bytes = 0
        self.t = now
        gc.collect()
        self.runs += 1
