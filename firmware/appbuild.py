"""What ``charger.ChargerApp`` runs once, while it is built: the task
table, the state directory, the records of the store's state at boot, the
console start.

Loaded by the app's ``__init__`` and dropped from ``sys.modules`` when the
app is built: its functions and its module dict are garbage then (on a
board, heap is what the firmware's structure costs; code that never runs
again need not stay).  It holds no state and registers no settings (the
task table's settings: ``appcore.CONFIG_SCHEMA``).

Task table (periods are configuration, see ``appcore.CONFIG_SCHEMA``;
``sched.protect_ms``: ``rt.scheduler``):

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
16 KB (``appcore.HeapPolicy``).
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
from diag import eventlog as _evlog
# the staleness bits appcore.stale sets (machine code, numbers written out)
from safety.checks import STALE_BCL, STALE_BCS, STALE_BSM, STALE_BMV, STALE_BMT
assert (STALE_BCL, STALE_BCS, STALE_BSM, STALE_BMV, STALE_BMT) == (2, 4, 8, 16, 32)


def install(app, s, cfg):
    """Add the app's tasks to the scheduler ``s`` (the console's: ``start_console``)."""
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


def store_records(app, st):
    """Tell what the supervisor found in the persistent store ``st`` at boot
    (text and event log)."""
    sup = app.sup
    if st.present:                    # a fresh board has no record yet: no news
        for w in sup.store_warnings:
            app.event("store", w[7:] if w.startswith("store: ") else w)
    from safety.lockout import L_STORE
    refused = sup.lock.latched & L_STORE
    if refused or (st.present and sup.store_warnings):
        # a = 1: no usable record, charging refused (L_STORE); 0: a
        # generation was skipped (e.g. fell back to .old).  Not on a
        # fresh board (no record at all yet).
        app.log.log(app.rtc_s(), _evlog.EV_STORE, 1 if refused else 0,
                    len(sup.store_warnings), "refused" if refused else "warning")


def start_console(app):
    """The console (``ChargerApp(console=True)``): the board's stream, the
    diagnostic commands, the board's own commands, the C-1 roles."""
    from diag.console import Console
    board = app.board
    cfg = app.cfg
    # Each board knows its REPL port (stdin/stdout of the SIL process,
    # the USB VCP / UART on STM32 and ESP32).
    app.console = Console(board.console_stream(cfg), {"app": app}, cfg)
    from diag import commands
    d = commands.install(app.console, app)
    # Board commands (the SIL board: plug() / unplug() of the bench).
    for name, fn, text in board.console_commands(app):
        d.add_board_command(name, fn, text)
    auth = board.console_auth   # a bench may open it
    if cfg["console.auth"] if auth is None else auth:
        from security.consolegate import install as _roles  # C-1: console roles
        _roles(app.console, app, d)
    app.console.start()
    app.sched.add("console", app._console, cfg["sched.console_ms"], 5)


def mkdir(path):
    """The state directory (exists already, or a read-only FS: the store
    then reports it)."""
    import os
    try:
        os.mkdir(path)
    except OSError:
        pass
