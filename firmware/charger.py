"""The charger application: wires board, protocol, safety and diagnostics.

Data flows one way: CAN frames -> ``BmsLink`` (ids, transport, decode) ->
``ChargerSession`` (GB/T 27930 stages) and ``Supervisor`` (safety) ->
``Outputs`` -> ``board.write_outputs``.  The session never touches a pin;
the supervisor runs first in every protection tick and has the last word
on the outputs, so it can always cut the output without asking the
session.

The parts the app owns: ``appcore`` (the task table's settings, the
staleness of the BMS's messages, the records pass's plumbing
``EventPump``, the heap policy ``HeapPolicy``); what runs once while the
app is built: ``appbuild`` (the task table, the store's state at boot, the
console start; dropped when the app is built).

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
from rt.clock import ticks_diff, ticks_add
from gbt.ids import ID_CST
from gbt.stages import (STAGE_NAMES, WHY_STOP_REQ, IDLE, CONNECTED, STOPPING,
                        REHANDSHAKE, DONE, CHARGING)
# the app's settings (registered by appcore): the task table's, staleness,
# event log, telemetry file, time zone
from appcore import EventPump, HeapPolicy, stale as _stale, pass_guard as _pass_guard

_INJECT_EXCEPTION = const(1)
# Heap bytes the app counts per allocation site (estimates, generous;
# when it collects: appcore.HeapPolicy)
_GC_TEXT = const(192)       # one text event: formatting, the board's copy, log record
_GC_CONSOLE = const(2048)   # one console poll that had input (a command line)
_GC_SLOW = const(1024)      # lockout notes, persistence (pack, file I/O)


class ChargerApp:
    def __init__(self, board, config_path="config.json", console=False,
                 state_dir="state"):
        import appbuild                 # (dropped at the end: see there)
        self.board = board
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
        if errors:
            # Bad configuration never energises the output: run with
            # defaults for diagnostics only, and refuse every session.
            cfg = config.defaults()
            self.halted = "bad configuration: " + "; ".join(errors)
        # the running configuration, compact (the dict is garbage once
        # the app is built: 1.8 KB of heap)
        self.cfg = cfg = config.Settings(cfg)
        # when the app collects garbage
        self.heap = HeapPolicy(self.clock, cfg["sched.gc_max_s"])
        self._utc_off_s = cfg["charger.utc_offset_min"] * 60   # (changes at the next boot)
        self.sched = s = Scheduler(self.clock)
        send = board.can_send
        appbuild.mkdir(state_dir)
        self.log = _evlog.EventLog(state_dir, cfg["log.file_bytes"], cfg["log.files"])
        self.log.log(self.rtc_s(), _evlog.EV_BOOT, 0 if errors else 1, 0)
        for i, e in enumerate(errors):
            self.log.log(self.rtc_s(), _evlog.EV_CONFIG_ERROR, i, 0, e[:8])
        from store import Store
        st = Store(state_dir + "/" + cfg["store.path"], cfg["store.max_bytes"])
        self.sup = Supervisor(cfg, self.clock, board, self.inp, self.out, self.bms, store=st)
        appbuild.store_records(self, st)
        self.pump = EventPump(self)       # events -> text, event log, telemetry
        self.link = BmsLink(send, self.clock, self.bms, cfg)
        # H-11 reads the link's last-valid-message times itself (not the
        # session's timers): BCL/BCS freshness while current flows.
        self.sup.rx_times = self.link.last_ok
        # C-4: the intrusion monitor's once-a-second look (rates, foreign
        # addresses, physics), from the slow task
        self.ixw = IxWatch(self.link, self.bms, cfg)
        self.session = ChargerSession(cfg, send, self.inp, self.out,
                                      self.bms, self.link)
        # (the session registers its message handler on the link itself)
        self.session.stage_entered_ms = self.clock.ticks_ms()   # idle since boot
        self.session.vin_check = self._vin_check
        self.session.start_gate = self._start_gate
        self.session.tx.datetime = self._local_time
        sink = board.record_sink(cfg, state_dir)
        self.tel = _tel.Telemetry(cfg, self.clock, self.bms, self.inp, self.out, sink,
                                  self.rtc_s, _tel.SESSION_STAGES)
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
        from array import array
        self._stale_ms = array("i", (cfg["safety.stale_bcl_ms"], cfg["safety.stale_bcs_ms"],
                                     cfg["safety.stale_bsm_ms"], cfg["safety.stale_bmv_ms"]))
        self.rx_backlog_max = 0
        self._stage = -1
        from gbt.enc import enc_cst, CST_R_FAULT, CST_F_OTHER
        self._fs_cst = bytearray(8)       # CST sent by the app after a fail-safe
        enc_cst(self._fs_cst, CST_R_FAULT, CST_F_OTHER, 0)
        self._fs_cst_t0 = -1
        self._fs_cst_last = 0
        appbuild.install(self, s, cfg)
        self.console = None
        if console:
            appbuild.start_console(self)
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
        self._g_pass = _pass_guard(s, self._task_failed)
        self.event("boot", "%s config=%s" % (board.name, "ok" if not errors else "BAD"))
        if errors:
            for e in errors:
                self.event("config", e)
        # Built: the build-time code goes (its functions and module dict
        # are garbage at the next collection; a second app imports it again)
        del sys.modules["appbuild"]

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
        # taken now, are written by the next records pass (EventPump):
        # an append to the log file costs 150..800 kinstr on the target,
        # more than a whole 1 ms pass, and this runs in the session's pass.
        prev = self._stage
        self._stage = sess.stage
        now_s = self.rtc_s()
        pump = self.pump
        q = pump.logq
        self.event("stage", STAGE_NAMES[sess.stage])
        q.append((now_s, _evlog.EV_STAGE, sess.stage, prev if prev >= 0 else 0, None))
        rec = sess.stoprec
        if rec.why and sess.stage in (STOPPING, REHANDSHAKE, DONE) and \
                rec.why is not pump.logged_why:
            pump.logged_why = rec.why
            self.event("stop", rec.why)
            q.append((now_s, _evlog.EV_STOP, rec.reason, rec.fault, rec.why[:8]))
        if sess.stage == CONNECTED:
            pump.logged_why = None
            self.heap.plug = True         # collect before the session starts (_records)
        if sess.cem != pump.last_cem:
            pump.last_cem = sess.cem
            if sess.cem:
                self.event("cem", "0x%08x" % sess.cem)
                q.append((now_s, _evlog.EV_CEM, sess.cem & 0x3FFFFFFF, 0, None))
        if sess.stage == IDLE and self.sup.tripped:
            # unplugged after a trip: allow the next session if nothing is latched
            if self.sup.rearm():
                self.event("rearm", "trip cleared on unplug")

    def _records(self, now):
        pump = self.pump
        if pump.logq:
            pump.log_pending()
        heap = self.heap
        if heap.plug:
            heap.plug_collect(self.session.stage)
        self._tel_tick(now, self.session.stage)
        ev = self.sup.events
        if ev.seq != pump.ev_seq:
            pump.safety_events(now, ev)
        if self.link.ix.seq != pump.ix_seq:
            pump.intrusion_events(now)

    def _slow(self, now):
        self.ixw.tick(now, self.sup.charging)
        if self.sup.slow_tick(now, self.rtc_s()):
            self.heap.note(_GC_SLOW)
            return                        # (file I/O this pass: collect at the next)
        self.heap.slow(now, self.session.stage)

    def rtc_s(self):
        """Wall-clock seconds (UTC) since the firmware epoch, 2020-01-01
        (``rt.calendar``): the board's ``rtc_s`` (the SIL's simulated date),
        else the port's ``time.time()`` converted.  A small int on every port
        until 2054, so the slow task, the telemetry re-sync and the lockout
        arithmetic allocate nothing on a 32-bit board; negative = the board's
        clock is not set.  (A method call: no bound method made.)"""
        return self.board.rtc_s()

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
        pump = self.pump
        if pump.logq:                     # its commands log and read the log:
            pump.log_pending()            # the queued records come first
        if self.console.poll(now):        # input: the console allocates
            self.heap.note(_GC_CONSOLE)

    # ---- lifecycle --------------------------------------------------------
    def run_due(self, now=None):
        """One scheduler pass (``now``: the time the board loop just read
        or advanced its clock to; default: the scheduler reads the clock)."""
        try:
            return self._g_pass(now)      # the pass, guarded (appcore.pass_guard)
        except StopIteration:             # a re-raised BaseException ended it
            return self._restart_pass(now)

    def _restart_pass(self, now):
        self._g_pass = _pass_guard(self.sched, self._task_failed)
        return self._g_pass(now)

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
            self.pump.log_pending()       # the session's records first, in order
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
            self.board.can_send(ID_CST, self._fs_cst, 4)

    def event(self, kind, text):
        self.heap.note(len(text) + _GC_TEXT)   # the caller formatted text
        self.board.send_text(kind, text)

    def shutdown(self, why):
        self.board.force_safe()
        self.out.safe()
        self.pump.log_pending()
        for t in self.sched.tasks:
            self.event("sched", "%s runs=%d total_us=%d wcet_us=%d overruns=%d alloc=%d" % (
                t.name, t.runs, t.total_us, t.wcet_us, t.overruns, t.alloc_bytes))
        self.board.bye(0, why)


def main(board, config_path="config.json", console=False, state_dir="state"):
    """Build the app and give it to the board's loop (or the default loop)."""
    try:
        app = ChargerApp(board, config_path, console, state_dir)
    except BaseException as e:
        board.force_safe()
        raise
    board.run(app)
    return app
