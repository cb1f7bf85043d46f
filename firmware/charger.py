"""The charger application: wires board, protocol, safety and diagnostics.

Data flows one way: CAN frames -> ``BmsLink`` (ids, transport, decode) ->
``ChargerSession`` (GB/T 27930 stages) and ``Supervisor`` (safety) ->
``Outputs`` -> ``board.write_outputs``.  The session never touches a pin;
the supervisor runs first in every protection tick and has the last word
on the outputs, so it can always cut the output without asking the
session.

Task table (periods are configuration, see ``CONFIG_SCHEMA``):

    protect   2 ms   read inputs, hard protections, trip path, write outputs
    can       2 ms   drain the CAN receive queue into the link, TP timers
    session  10 ms   GB/T 27930 state machine, control, charger frames
    records  50 ms   telemetry, safety events -> event log / bench text
    checks  100 ms   S-1..S-13 persistence checks
    slow   1000 ms   lockout bookkeeping and persistence (file I/O)
    console  20 ms   mpremote-compatible console (when enabled)

H-9: an exception in any task, or a console interrupt, forces every output
safe (``board.force_safe``) and halts charging; the protection tick keeps
holding the outputs safe and the console stays up so a field engineer can
see why.
"""
import sys
import config
from micropython import const
from board import Inputs, Outputs, CanFrame
from rt.scheduler import Scheduler
from gbt.bmsdata import BmsData
from gbt.stages import STAGE_NAMES, WHY_STOP_REQ, IDLE, STOPPING, REHANDSHAKE, DONE

CONFIG_SCHEMA = (
    ("sched.protect_ms", 2, 1, 10, "ms", "Protection tick (hard protections, trip path, output write)"),
    ("sched.can_ms", 2, 1, 10, "ms", "CAN receive tick"),
    ("sched.session_ms", 10, 5, 10, "ms", "Session tick (must be <= 10 ms: CST is sent every 10 ms)"),
    ("sched.checks_ms", 100, 10, 1000, "ms", "Safety check tick (S-1..S-13)"),
    ("sched.console_ms", 20, 5, 200, "ms", "Console poll period"),
    ("sched.records_ms", 50, 10, 1000, "ms", "Telemetry/event-log tick (Table-1 items use multiples)"),
    ("sched.slow_ms", 1000, 100, 10000, "ms", "Slow housekeeping tick (lockout store, file I/O)"),
    ("can.rx_burst", 32, 1, 256, "frames", "Max frames processed per CAN tick (bounds a pass under a flood)"),
)
config.register(CONFIG_SCHEMA)

_INJECT_EXCEPTION = const(1)


class ChargerApp:
    def __init__(self, board, config_path="config.json", console=False,
                 state_dir="state"):
        # Import every module that declares settings before loading config.
        from gbt.link import BmsLink
        from gbt.session import ChargerSession
        from safety.supervisor import Supervisor
        self.board = board
        self.clock = board.clock
        self.inp = Inputs()
        self.out = Outputs()
        self.out.safe()
        self.frame = CanFrame()
        self.bms = BmsData()
        self.halted = None          # text of the fault that halted charging
        self.inject_fault = 0       # test hook: SIL INJECT packet / console
        cfg, errors = config.load(config_path)
        self.cfg = cfg
        self.config_errors = errors
        if errors:
            # Bad configuration never energises the output: run with
            # defaults for diagnostics only, and refuse every session.
            cfg = config.defaults()
            self.cfg = cfg
            self.halted = "bad configuration: " + "; ".join(errors)
        self.sched = s = Scheduler(self.clock)
        self._send = board.can_send
        self.state_dir = state_dir
        _mkdir(state_dir)
        from store import Store
        self.sup = Supervisor(cfg, self.clock, board, self.inp, self.out, self.bms,
                              store=Store(state_dir + "/safety.rec",
                                          cfg["store.max_bytes"]))
        for w in self.sup.store_warnings:
            self.event("store", w)
        self._ev_seq = self.sup.events.seq
        self.link = BmsLink(self._send, self.clock, self.bms, cfg)
        self.session = ChargerSession(cfg, self._send, self.inp, self.out,
                                      self.bms, self.link)
        self.link.handler = self.session.on_message
        self.session.vin_check = self._vin_check
        self.session.start_gate = self._start_gate
        self.rx_burst = cfg["can.rx_burst"]
        self.rx_backlog_max = 0
        self._stage = -1
        s.add("protect", self._protect, cfg["sched.protect_ms"], 0)
        s.add("can", self._can, cfg["sched.can_ms"], 0)
        s.add("session", self._session, cfg["sched.session_ms"], 1)
        s.add("records", self._records, cfg["sched.records_ms"], 2)
        s.add("checks", self._checks, cfg["sched.checks_ms"], 3)
        s.add("slow", self._slow, cfg["sched.slow_ms"], 7)
        self.console = None
        if console:
            self._start_console()
        s.start()
        self.event("boot", "%s config=%s" % (board.name, "ok" if not errors else "BAD"))
        if errors:
            for e in errors:
                self.event("config", e)

    # ---- tasks ----------------------------------------------------------
    def _protect(self, now):
        self.board.read_inputs(self.inp)
        if self.halted is not None:
            self.out.safe()
        self.sup.protect_tick(now)
        self.board.write_outputs(self.out)

    def _can(self, now):
        board = self.board
        frame = self.frame
        on_frame = self.link.on_frame
        n = 0
        while n < self.rx_burst and board.can_recv(frame):
            on_frame(now, frame)
            n += 1
        self.link.poll(now)

    def _session(self, now):
        if self.inject_fault == _INJECT_EXCEPTION:
            self.inject_fault = 0
            raise RuntimeError("injected fault (test hook)")
        if self.halted is not None:
            return
        sess = self.session
        sup = self.sup
        sess.i_cap = sup.current_limit
        if sup.tripped:
            sess.on_trip(now, sup.cst_fault, sup.cst_error, sup.trip_cause)
        elif sup.stop_request:
            sess.request_stop(now, sup.cst_reason, sup.cst_fault, sup.cst_error,
                              WHY_STOP_REQ)
        sess.tick(now)
        sup.charging = sess.charging
        if sess.stage != self._stage:
            self._stage_changed(sess)

    def _stage_changed(self, sess):
        # Rare (a handful per session): formatting text here is acceptable.
        self._stage = sess.stage
        self.event("stage", STAGE_NAMES[sess.stage])
        if sess.stop_why and sess.stage in (STOPPING, REHANDSHAKE, DONE):
            self.event("stop", sess.stop_why)
        if sess.stage == IDLE and self.sup.tripped:
            # unplugged after a trip: allow the next session if nothing is latched
            if self.sup.rearm():
                self.event("rearm", "trip cleared on unplug")

    def _records(self, now):
        ev = self.sup.events
        if ev.seq != self._ev_seq:
            # Events are rare; their text is for people, so it may allocate.
            s = max(self._ev_seq, ev.oldest())
            while s < ev.seq:
                self.event("safety", ev.text(s))
                s += 1
            self._ev_seq = ev.seq

    def _slow(self, now):
        self.sup.slow_tick(now, self.rtc_s())

    def rtc_s(self):
        """Wall-clock seconds (UTC): the board's RTC, or the SIL's simulated date."""
        rtc = getattr(self.board, "rtc_s", None)
        if rtc:
            return rtc()
        import time
        return int(time.time())

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
        self.sup.check_tick(now)

    def _console(self, now):
        self.console.poll(now)

    # ---- lifecycle --------------------------------------------------------
    def run_due(self):
        try:
            return self.sched.run_due()
        except Exception as e:
            self.fail_safe(e)
        except BaseException as e:       # KeyboardInterrupt, SystemExit
            self.fail_safe(e)
            raise
        return 0

    def fail_safe(self, exc):
        """H-9: never fail live.  Outputs first, bookkeeping after."""
        self.board.force_safe()
        self.out.safe()
        try:
            self.sup.fail_safe(exc)
        except Exception:
            pass
        self.halted = "exception: %s %s" % (type(exc).__name__, exc)
        try:
            self.event("fail-safe", self.halted)
            sys.print_exception(exc)
        except Exception:
            pass

    def event(self, kind, text):
        send = getattr(self.board, "send_text", None)
        if send:
            send(kind, text)

    def shutdown(self, why):
        self.board.force_safe()
        self.out.safe()
        bye = getattr(self.board, "bye", None)
        if bye:
            bye(0, why)

    def _start_console(self):
        from diag.console import Console
        import console_io
        ns = {"app": self}
        self.console = Console(console_io.stream(), ns)
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
    run = getattr(board, "run", None)
    if run:
        run(app)
    else:
        idle = board.idle
        while True:
            app.run_due()
            idle(app.sched.next_due())
    return app
