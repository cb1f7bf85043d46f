"""The application core's parts: plain objects ``charger.ChargerApp`` owns
(not mixins), in one module (a module costs heap of its own on a board):

- the task table's settings (``CONFIG_SCHEMA``; the table itself is built
  once by ``appbuild.install``) and the staleness of the BMS's messages
  (``stale``, machine code for the check tick);
- the records pass's plumbing (``EventPump``): the event-log records the
  session pass queued, the supervisor's safety events and the link's
  intrusion events -> bench text, event log and telemetry;
- the heap collection policy (``HeapPolicy``).
"""
import micropython
from micropython import const
import config
from rt.clock import ticks_diff
# (the event-path code imports what it needs where it runs: a name in this
# module's dict is heap on a board for as long as the app runs)

# The app's settings: the task table's (sched.protect_ms, which the trip
# path also reads, is declared by rt.scheduler; the table: appbuild.py),
# the staleness limits, the time zone, the event log and telemetry file.
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


def pass_guard(sched, fail):
    """One scheduler pass, guarded: ``g(now)`` runs it (``now`` None: the
    scheduler reads the clock); an exception in a task goes to ``fail``
    (H-9).  (The try/except is in a generator made once, rt.guard: in
    ``ChargerApp.run_due`` it would give that function a heap frame at
    every pass.)  A re-raised BaseException ends the generator: the app
    makes a new one."""
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
class EventPump:
    """The records pass's plumbing.  The session pass queues its event-log
    records (``logq``, written in order before anything else is logged: an
    append costs 150..800 kinstr on the target, more than a whole 1 ms
    pass); the stage-change bookkeeping (``logged_why``, ``last_cem``)
    is the app's ``_stage_changed``.  Events are rare; their text is for
    people, so this may allocate."""

    def __init__(self, app):
        self.app = app
        self.logq = []                    # event-log records queued by _stage_changed
        self.logged_why = None            # the stop cause already told (_stage_changed)
        self.last_cem = 0                 # the CEM already told (_stage_changed)
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
        # Rare by construction (each is a protocol violation): text allowed.
        app = self.app
        ix = app.link.ix
        s = max(self.ix_seq, ix.oldest())
        e = self.ix
        now_s = app.rtc_s()
        from gbt.intrusion import name as ix_name
        from diag.eventlog import EV_INTRUSION
        while s < ix.seq:
            if ix.read(s, e):
                app.event("intrusion", "%s 0x%x" % (ix_name(e[1]), e[2]))
                app.log.log(now_s, EV_INTRUSION, e[1], e[2])
                app.tel.event(now, EV_INTRUSION, e[1], e[2])
            s += 1
        self.ix_seq = ix.seq

    def safety_events(self, now, ev):
        app = self.app
        log = app.log
        s = max(self.ev_seq, ev.oldest())
        e = self.ev
        now_s = app.rtc_s()
        from diag import eventlog as _evlog
        from safety.risk import EV_RAISE as _EV_RAISE, EV_CLEAR as _EV_CLEAR, \
            EV_LOCKOUT as _EV_LOCKOUT, EV_FAILSAFE as _EV_FAILSAFE
        while s < ev.seq:
            ev.read(s, e)
            app.event("safety", ev.text(s))
            kind, ident, level, value = e[1], e[2], e[3], e[4]
            if kind == _EV_RAISE:
                if ident > 100 and level >= 3:
                    log.log(now_s, _evlog.EV_TRIP, ident, value, None, False)
                else:
                    log.log(now_s, _evlog.EV_RISK_RAISED, ident, level, None, False)
                app.tel.event(now, _evlog.EV_RISK_RAISED, ident, level)
            elif kind == _EV_CLEAR:
                log.log(now_s, _evlog.EV_RISK_CLEARED, ident, level, None, False)
                app.tel.event(now, _evlog.EV_RISK_CLEARED, ident, level)
            elif kind == _EV_LOCKOUT:
                log.log(now_s, _evlog.EV_LOCKOUT, ident, value, None, False)
            elif kind == _EV_FAILSAFE:
                log.log(now_s, _evlog.EV_FAILSAFE, 0, 0, None, False)
            s += 1
        self.ev_seq = ev.seq
        log.commit()                      # the pass's records in one commit


# ---- heap -----------------------------------------------------------
# What the app lets accumulate while charging before the slow task
# collects: a third of the ~50 KB a PYBv1.1 has free at charging
# (docs/performance.md); the app's per-site estimates: charger.py
_GC_CHARGING = const(16384)
# Stages in which the slow task collects as it needs (no session: outputs
# off); in every other stage only past _GC_CHARGING (see HeapPolicy.slow).
# (gbt.stages numbers, private constants: no heap; tests/mp/test_app_gc.py
# sees a collection only in these stages and one at plug-in)
_GC_STAGES = const(0x2003)  # 1 << IDLE | 1 << CONNECTED | 1 << DONE
_CONNECTED = const(1)       # CONNECTED


class HeapPolicy:
    """When the app collects garbage (issue 9, docs/performance.md): only
    with no session in progress (IDLE, CONNECTED, DONE: every output off;
    once at plug-in by the records pass), never from the lock to the end
    of a session (a collection is ~680 kinstr on the target with the app's
    heap, 9.8 ms of an F405) unless the app's own allocations reach 16 KB.
    The app counts what it allocates where it allocates (``note``)."""

    def __init__(self, clock, gc_max_s):
        self.clock = clock
        self.due = True                 # the app allocated since the last collection
        self.plug = False               # plugged in: collect before the session (records)
        self.bytes = 0                  # ... about this much (see slow)
        self.max_ms = gc_max_s * 1000   # sched.gc_max_s
        self.runs = 0                   # collections so far
        self.t = clock.ticks_ms()

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
        if stage == _CONNECTED:
            self._collect(self.clock.ticks_ms())

    def _collect(self, now):
        self.due = False
        self.bytes = 0
        self.t = now
        import gc
        gc.collect()
        self.runs += 1
