"""The app's task table and the staleness of the BMS's messages.

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
"""
import micropython
from array import array
from micropython import const
import config

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
    """Add the app's tasks to the scheduler ``s`` (the console's: ``core.console``)."""
    pm = cfg["sched.protect_ms"]
    s.add("protect", app._protect, pm, 0)
    s.add("can", app._can, cfg["sched.can_ms"], 0)
    s.add("session", app._session, cfg["sched.session_ms"], 1)
    s.add("records", app._records, cfg["sched.records_ms"], pm)
    cm = cfg["sched.checks_ms"]
    s.add("checks", app.checks.tick, cm, 3)
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


class CheckHead:
    """The head of the check tick (task "checks"): values the BMS stopped
    refreshing must not feed the checks, so they are marked stale from the
    link's last-valid-frame times (machine code: ``stale``), then the first
    part of the check tick runs (S-1..S-4, ``Supervisor.check_head``)."""

    def __init__(self, sup, last_ok, cfg):
        self.sup = sup
        self.last_ok = last_ok
        self.head = sup.check_head
        self.lim = array("i", (cfg["safety.stale_bcl_ms"], cfg["safety.stale_bcs_ms"],
                               cfg["safety.stale_bsm_ms"], cfg["safety.stale_bmv_ms"]))

    def tick(self, now):
        self.sup.stale = stale(now, self.last_ok, self.lim)
        self.head(now)
