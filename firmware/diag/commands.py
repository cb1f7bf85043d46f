"""The field engineer's commands at the diagnostics console (requirement D-1).

``install(console, app)`` (called by ``charger.ChargerApp._start_console``)
puts these names into the console namespace; ``help()`` lists them::

    status() risks() faults(n=20) can() sched(reset=False) why()
    cfg(key=None) cfg_set(key, value) trace(on=None, pgn=None)
    start() stop() ack() reset_estop() rearm() clear_contactor_fault()
    clear_store_fault()

Every command prints plain text lines of at most 80 columns (longer text is
wrapped) and returns None.  They run synchronously inside the console task,
so each only reads state that is already in RAM (``faults`` reads the event
log files: a few KB) and none loops or waits.  Output is built as a list of
lines and written once.  Allocation is fine here: this is not the hot path.

Settings (``cfg_set``): the value is checked with ``config.validate`` (the
very rules the firmware applies at boot) against the configuration file;
an invalid value is refused with the validator's message and nothing is
written.  A valid value is written to the configuration file (atomic rename
where the filesystem allows it) and takes effect at the next boot, except
the few settings in ``LIVE`` that are safe to change at any time (they
only affect diagnostics): those apply at once as well.  Nothing that the
protocol or the safety code read is ever changed under a running session.
Docs: docs/field-guide.md.
"""
from rt.clock import ticks_diff
from gbt import ids
from gbt.stages import STAGE_NAMES, IDLE, CONNECTED, DONE
from gbt.chargertx import MSG_NAMES
from board import CAN_STATE_NAMES
from safety.risk import STATE_NAMES, name_of, H3
from safety.lockout import L_ESTOP, L_CONTACTOR, L_STORE
from diag import eventlog as ev
from diag.trace import Trace
from diag.cfgcmds import ConfigCommands, LIVE  # noqa: F401  (LIVE: re-exported)
from diag.eventtext import detail, cem_names

WIDTH = 80

# BMS messages in the order of a session, for can()'s last-seen table.
_BMS_PGNS = (ids.PGN_BHM, ids.PGN_BRM, ids.PGN_BCP, ids.PGN_BRO, ids.PGN_BCL,
             ids.PGN_BCS, ids.PGN_BSM, ids.PGN_BMV, ids.PGN_BMT, ids.PGN_BSP,
             ids.PGN_BST, ids.PGN_BSD, ids.PGN_BEM)
_LEVELS = ("off", "I", "II", "III")
# S-checks: unit of value/limit (firmware scaled integers), index 1..13
_S_UNITS = ("", "0.1A", "0.1A", "0.1A", "0.1V", "0.1V", "0.1V", "0.01V", "0.01V",
            "0.1Ah/V", "C", "0.1C/min", "0.1%", "0.1%")
# hard protections: (code index, unit of value/limit)
_H = ((1, "0.1V"), (2, "0.1A"), (3, ""), (4, "kOhm"), (5, "mV"), (6, "0.1C"),
      (7, ""), (8, "mA"), (9, ""), (10, ""), (11, "stale PF"), (12, "stage"))
# What a refusal means, by the start of the supervisor's / app's reason.
HINTS = (
    ("bad configuration", "config file invalid: see cfg(), fix it "
     "(host_tools.config_check), reboot"),
    ("exception", "the firmware stopped on an exception (H-9): faults(), reboot"),
    ("fail-safe", "the firmware stopped on an exception (H-9): faults(), reboot"),
    ("E-stop", "release the E-stop button, then reset_estop()"),
    ("safety record unusable", "the persisted safety state (latches, lockouts) "
     "could not be read at boot (see the store warnings): inspect, then "
     "clear_store_fault()"),
    ("contactor fault", "K1/K2 feedback disagreed with the command (welded or "
     "not closing): inspect, then clear_contactor_fault()"),
    ("tripped", "a protection tripped: risks() shows the cause; rearm() once "
     "it is gone (or unplug)"),
    ("needs confirmation", "an SOC anomaly (S-12/S-13) was recorded for this "
     "vehicle: check it, then ack()"),
    ("VIN locked out", "this vehicle raised the same risk repeatedly: "
     "locked out until the time shown (lockout.*)"),
    ("VIN capped", "this vehicle raised risks before: current capped (lockout.*)"),
)


def _d1(v, na=True):
    """0.1-unit integer as text ("400.1"); NA (-1) as "-"."""
    if na and v == -1:
        return "-"
    s = "-" if v < 0 else ""
    v = -v if v < 0 else v
    return "%s%d.%d" % (s, v // 10, v % 10)


def _i(v):
    return "-" if v == -1 else str(v)


def _ms(v):
    return "%d.%d s" % (v // 1000, (v % 1000) // 100)


def _lat(v):
    return "-" if v < 0 else "+%d ms" % v


def _onoff(v):
    return "on" if v else "off"


def wrap(line, width=WIDTH):
    """Split a long line at spaces; continuation lines indented 4."""
    out = []
    while len(line) > width:
        k = line.rfind(" ", 0, width)
        if k <= 4:
            k = width
        out.append(line[:k].rstrip())
        line = "    " + line[k:].lstrip()
    out.append(line)
    return out


def date(s):
    """Firmware seconds (since 2020-01-01 UTC, ``rt.calendar``) ->
    "YYYY-MM-DD hh:mm:ss" (UTC); negative (the clock was not set): "clock unset"."""
    if s < 0:
        return "clock unset"
    from rt.calendar import civil
    return "%04d-%02d-%02d %02d:%02d:%02d" % civil(s)


def hint(reason):
    for k, h in HINTS:
        if reason and reason.startswith(k):
            return h
    return None


class Diag(ConfigCommands):
    """The commands, bound to one app and console (see the module doc)."""

    def __init__(self, console, app):
        self.con = console
        self.app = app
        self.tracer = Trace(app, console)
        self.cmds = {}          # name -> the bound method in the namespace
        self.board_help = []    # (name, signature, text) of the board's commands

    # -- plumbing --------------------------------------------------------
    def emit(self, lines):
        out = []
        for l in lines:
            out.extend(wrap(l.rstrip()))
        self.con.out.write("\n".join(out) + "\n")

    def now(self):
        return self.app.clock.ticks_ms()

    def _op(self, action, arg=0, text=None):
        app = self.app
        app.log.log(app.rtc_s(), ev.EV_OPERATOR, action, arg, text)

    def config_path(self):
        """The file the app loaded at boot (``app.config_path``; else the SIL's
        ``--config`` argument; else the boards' "config.json")."""
        p = getattr(self.app, "config_path", None)
        if p:
            return p
        try:
            import sys
            a = sys.argv
            for i in range(len(a) - 1):
                if a[i] == "--config":
                    return a[i + 1]
        except Exception:
            pass
        return "config.json"

    # -- status ------------------------------------------------------------
    def status_lines(self):
        app = self.app
        s = app.session
        inp, out, b = app.inp, app.out, app.bms
        now = self.now()
        L = ["stage %s for %s%s" % (STAGE_NAMES[s.stage],
                                    _ms(ticks_diff(now, s.stage_entered_ms)),
                                    "   HALTED" if app.halted else "")]
        L.append("output  power %s  set %s V %s A  limit %s A" % (
            _onoff(out.pwr_en), _d1(out.v_set), _d1(out.i_set), _d1(app.sup.current_limit)))
        L.append("relays  K1/K2 %s (fb %s)  K3/K4 %s  lock %s (fb %s)  bleed %s" % (
            "closed" if out.k12 else "open", "closed" if inp.k12_fb else "open",
            _onoff(out.k34), _onoff(out.lock), _onoff(inp.lock_fb), _onoff(out.bleed)))
        L.append("meas    inside %s V  outside %s V  I %s A  CC1 %d mV" % (
            _d1(inp.v_inside, False), _d1(inp.v_outside, False), _d1(inp.i_out, False),
            inp.cc1_mv))
        L.append("        insulation %s kOhm  gun %s/%s C  leak %d mA  mains %s  "
                 "E-stop %s" % (_i(inp.insulation_kohm), _d1(inp.t_gun_pos, False),
                                _d1(inp.t_gun_neg, False), inp.leakage_ma,
                                "ok" if inp.mains_ok else "LOST",
                                "PRESSED" if inp.estop else "off"))
        L.append("BMS     demand %s V %s A %s  measured %s V %s A  SOC %s %%" % (
            _d1(b.req_v), _d1(b.req_i), {1: "CV", 2: "CC"}.get(b.req_mode, "-"),
            _d1(b.meas_v), _d1(b.meas_i), _i(b.soc)))
        cell = "-" if b.cell_max_v < 0 else "%d.%02d" % (b.cell_max_v // 100, b.cell_max_v % 100)
        L.append("        cell max %s V  temp max %s C  permit %s  remaining %s min" % (
            cell, _i(b.temp_max), "yes" if b.permit else "PAUSE", _i(b.remain_min)))
        L.append("energy  %d Wh  %d min  VIN %s" % (s.energy_wh, s.charge_min,
                                                  b.vin_str() or "-"))
        L.append("stop    %s" % (s.stop_why or "-"))
        if s.refused:
            L.append("refused %s" % s.refused)
        if app.halted:
            L.append("halted  %s" % app.halted)
        return L

    def status(self):
        """Stage, time in stage, set-points, measurements, relays, BMS demand,
        SOC, energy, stop reason."""
        self.emit(self.status_lines())

    # -- risks ---------------------------------------------------------------
    def risks_lines(self):
        sup = self.app.sup
        p = sup.prot
        L = []
        if sup.tripped:
            t = sup.trip
            L.append("TRIPPED: %s  (trip %s: power off %s, K1/K2 open %s)" % (
                sup.trip_name, ("idle", "power-off", "bleed", "safe")[t.state],
                _lat(t.latency(t.t_pwr_off)), _lat(t.latency(t.t_k12_open))))
        else:
            L.append("trip: none")
        L.append("stop request: %s  current limit %s A  warnings %d" % (
            name_of(sup.stop_request) if sup.stop_request else "-",
            _d1(sup.current_limit), sup.warn_count))
        lk = sup.lock
        L.append("latched: %s  needs confirmation: %s  lockout entries %d" % (
            " ".join(n for bit, n in ((L_ESTOP, "E-stop"), (L_CONTACTOR, "contactor"),
                                      (L_STORE, "store"))
                     if lk.latched & bit) or "-",
            name_of(lk.confirm) if lk.confirm else "-", len(lk.entries)))
        L.append("%-32s %-3s %-8s %7s %7s  %s" % ("check", "lvl", "state", "value",
                                                 "limit", "why / unit"))
        for i in range(1, 14):
            st, why, _since, v, lim = sup.check_diag(i)
            L.append("%-32s %-3s %-8s %7s %7s  %s" % (
                name_of(i)[:32], _LEVELS[sup.risk.level[i]], st, _i(v), _i(lim),
                why or _S_UNITS[i]))
        for h, unit in _H:
            code = 100 + h
            if h == 9:
                st = "RAISED" if sup.failed else "OK"
                v = lim = "-"
            elif h >= 11:                  # supervisor rules (not in Protections)
                if sup.tripped and sup.trip_cause == code:
                    st = "RAISED"
                elif h == 11 and sup.h11_on:
                    st = "PENDING"         # current cut, output not yet off
                else:
                    st = "OK"
                v = ("0x%x" % sup.h11_pf) if h == 11 else str(sup.stage)
                lim = "-"
            else:
                if sup.tripped and sup.trip_cause == code:
                    st = "RAISED"
                elif p.on[h]:
                    st = "PENDING"
                elif not p.active[h]:
                    st = "INACTIVE"
                else:
                    st = "OK"
                v = str(p.value[h])
                lim = str(p.limit[h]) if p.limit[h] else "-"
            why = unit
            if st == "INACTIVE":
                why = "not armed" if h in (4, 5, 10) else "disabled"
            L.append("%-32s %-3s %-8s %7s %7s  %s" % (name_of(code)[:32], "III", st, v, lim, why))
        return L

    def risks(self):
        """Each S-check and hard protection: state, value, threshold; active trip."""
        self.emit(self.risks_lines())

    # -- faults --------------------------------------------------------------
    def faults_lines(self, n=20):
        recs = self.app.log.recent(n)
        L = ["%5s %-4s %-19s %-12s %s" % ("seq", "boot", "time (UTC)", "event", "detail")]
        for r in recs:
            L.append("%5d %-4d %-19s %-12s %s" % (r[0], r[1], date(r[2]), r[4], detail(r)))
        if not recs:
            L.append("(event log empty)")
        return L

    def faults(self, n=20):
        """The last n events of the persistent event log, decoded."""
        self.emit(self.faults_lines(n))

    # -- CAN -----------------------------------------------------------------
    def can_lines(self):
        app = self.app
        brd = app.board
        c = [0, 0, 0, 0, 0]
        brd.can_counters(c)
        st = brd.can_state()
        lk = app.link
        tp = lk.tp
        now = self.now()
        L = ["bus %s  rx %d  tx %d  errors tx %d rx %d  overruns %d  burst max %d/%d" % (
            CAN_STATE_NAMES[st] if 0 <= st < len(CAN_STATE_NAMES) else st,
            c[3], c[2], c[0], c[1], c[4], app.rx_backlog_max, app.rx_burst)]
        L.append("link rx %d  ok %d  ignored %d  bad length %d  bad range %d  unknown %d" % (
            lk.rx, lk.msgs, lk.ignored, lk.bad_len, lk.bad_range, lk.unknown))
        L.append("TP done %d  aborts sent %d rcvd %d  errors %d (last %d)  dups %d  "
                 "retransmits %d" % (tp.completed, tp.aborts_sent, tp.aborts_rcvd,
                                     tp.errors, tp.last_error, tp.dups, tp.retransmits))
        seen = []
        for pgn in _BMS_PGNS:
            t = lk.last_ok[pgn >> 8]
            seen.append("%s %s" % (ids.name_of(pgn), "-" if t < 0 else ticks_diff(now, t)))
        L.append("last seen (ms ago): " + "  ".join(seen))
        tx = app.session.tx
        L.append("sent: " + "  ".join("%s %d" % (MSG_NAMES[i], tx.sent[i])
                                      for i in range(len(MSG_NAMES)))
                 + "  refused %d" % sum(tx.fail))
        s = app.session
        L.append("session: CEM sent %s  invalid msgs %d  stale 0x%02x" % (
            cem_names(s.cem), s.rx_bad, app.sup.stale))
        L.append(self.tracer.status())
        return L

    def can(self):
        """CAN frames rx/tx, errors, bus state, per-message age, transport."""
        self.emit(self.can_lines())

    # -- scheduler -----------------------------------------------------------
    def sched_lines(self):
        s = self.app.sched
        L = ["%-8s %7s %8s %7s %8s %7s %8s %8s" % ("task", "period", "runs", "last_us",
                                                   "worst_us", "avg_us", "overruns",
                                                   "late_max")]
        for t in s.tasks:
            L.append("%-8s %4d ms %8d %7d %8d %7d %8d %5d ms" % (
                t.name[:8], t.period, t.runs, t.last_us, t.wcet_us,
                t.total_us // t.runs if t.runs else 0, t.overruns, t.late_max_ms))
        L.append("passes %d  worst pass %d us  alloc stats %s" % (
            s.passes, s.pass_wcet_us, _onoff(s.alloc_stats)))
        if s.alloc_stats:
            L.append("alloc bytes: " + "  ".join("%s %d/%d" % (t.name, t.alloc_bytes, t.alloc_max)
                                                 for t in s.tasks))
        return L

    def sched(self, reset=False):
        """Per task: runs, last and worst execution time, overruns, lateness.
        sched(True) prints, then resets the statistics."""
        self.emit(self.sched_lines())
        if reset:
            self.app.sched.reset_stats()

    # -- why -----------------------------------------------------------------
    def why_lines(self):
        app = self.app
        s = app.session
        sup = app.sup
        st = s.stage
        L = []

        def reason(kind, text):
            L.append("%s: %s" % (kind, text))
            h = hint(text)
            if h:
                L.append("  -> " + h)

        if app.halted:
            reason("HALTED (no session will start)", app.halted)
        if st == IDLE:
            c = s.c
            mv = app.inp.cc1_mv
            if c.cc1_lo_mv <= mv <= c.cc1_hi_mv:
                L.append("vehicle plugged (CC1 %d mV), no session%s" % (
                    mv, " while halted" if app.halted else " yet"))
            else:
                L.append("no vehicle plugged (CC1 %d mV)" % mv)
        elif st == CONNECTED:
            L.append("plugged, not started" if s.c.auto_start or s.refused
                     else "plugged, waiting for start()")
        elif st == DONE:
            L.append("session over" + ("; unplug for a new session" if s.need_replug
                                       else "; start() for a new one"))
        else:
            L.append("session running: stage %s" % STAGE_NAMES[st])
        if s.refused:
            reason("start refused", s.refused)
        if s.stop_why:
            L.append("stopped: %s  (CST reason 0x%02x fault 0x%03x error 0x%02x)" % (
                s.stop_why, s.tx.cst_reason, s.tx.cst_fault, s.tx.cst_error))
        for label, w in (("detail", s.stop_detail), ("trip", s.trip_why),
                         ("timeout", s.timeout_why), ("fault", s.fault_why),
                         ("VIN", s.vin_why)):
            if isinstance(w, int):
                w = name_of(w) if w else ""      # the supervisor's cause code
            if w and w != "ok":
                L.append("  %s: %s" % (label, w))
        if s.cem:
            L.append("  timeouts reported (CEM): %s" % cem_names(s.cem))
        if app.bms.bst_reason not in (-1, 0):
            L.append("  BMS BST reason 0x%02x fault 0x%04x error 0x%02x" % (
                app.bms.bst_reason, app.bms.bst_fault, app.bms.bst_error))
        if sup.tripped:
            reason("protection", "tripped: %s" % sup.trip_name)
        if not app.halted and (st == IDLE or st == CONNECTED or st == DONE):
            # Safe here: no session runs, and the next start asks the gate again.
            ok, why = sup.start_allowed(None, app.rtc_s())
            if ok:
                L.append("a start now would be allowed (%s)" % why)
            else:
                reason("a start now would be refused", why)
        return L

    def why(self):
        """Why the session stopped, or why it refuses to start (with what to do)."""
        self.emit(self.why_lines())

    # -- operator actions ----------------------------------------------------
    def start(self):
        """Operator start (when plugged and no session runs)."""
        app = self.app
        st = app.session.stage
        if app.halted:
            msg = "refused: halted: %s" % app.halted
        elif st == IDLE:
            msg = "no vehicle plugged: nothing to start"
        elif st == CONNECTED or st == DONE:
            app.session.operator_start()
            self._op(ev.OP_START)
            msg = "start requested (stage %s); why() tells if it is refused" % STAGE_NAMES[st]
        else:
            msg = "a session is already running (stage %s)" % STAGE_NAMES[st]
        self.emit([msg])

    def stop(self):
        """Operator stop: ramp down, CST (manual), end the session normally."""
        st = self.app.session.stage
        self.app.session.operator_stop()
        self._op(ev.OP_STOP)
        if st == IDLE or st == CONNECTED or st == DONE:
            self.emit(["no session running (a pending start is cancelled)"])
        else:
            self.emit(["stop requested in stage %s: current down, CST, end" % STAGE_NAMES[st]])

    def ack(self):
        """Acknowledge the "needs confirmation" flag (SOC anomaly S-12/S-13)."""
        had = self.app.sup.acknowledge()
        if had:
            self._op(ev.OP_ACK, had)
            self.emit(["acknowledged: %s" % name_of(had)])
        else:
            self.emit(["nothing to acknowledge"])

    def reset_estop(self):
        """Clear the E-stop latch (refused while pressed), then rearm."""
        sup = self.app.sup
        if not sup.reset_estop():
            self.emit(["refused: the E-stop is still pressed"])
            return
        self._op(ev.OP_RESET, H3)
        msg = "E-stop latch cleared"
        if sup.tripped and sup.trip_cause == H3:
            msg += "; trip rearmed" if sup.rearm() else "; trip not rearmed yet: rearm()"
        self.emit([msg])

    def rearm(self):
        """Leave a finished trip (refused while the cause or a latch remains)."""
        sup = self.app.sup
        if not sup.tripped:
            self.emit(["not tripped"])
        elif sup.rearm():
            self._op(ev.OP_RESET)
            self.emit(["rearmed: a new session may start"])
        else:
            self.emit(["refused: trip sequence running, cause still present or "
                       "latched (risks())"])

    def clear_contactor_fault(self):
        """Clear the H-7 latch after inspection (refused while K1/K2 read closed)."""
        if self.app.sup.clear_contactor_fault():
            self._op(ev.OP_RESET, 107)
            self.emit(["contactor fault latch cleared"])
        else:
            self.emit(["refused: K1/K2 feedback still reads closed"])

    def clear_store_fault(self):
        """Clear the unusable-safety-record latch: the persisted state starts
        again from defaults (no latches, no lockouts)."""
        if self.app.sup.clear_store_fault():
            self._op(ev.OP_RESET, 0, "store")
            self.emit(["safety record latch cleared: state reset to defaults"])
        else:
            self.emit(["nothing to clear: the safety record was usable"])

    # -- intrusion monitor (C-4) ----------------------------------------------
    def intrusion(self):
        """CAN intrusion monitor: events per kind since boot, the frames
        behind the counts (foreign source, not for us), the recent events."""
        from gbt import intrusion as X
        from gbt.link import IXC_FOREIGN, IXC_NOTUS
        link = self.app.link
        ix = link.ix
        L = ["intrusion events %d: " % ix.total() + "  ".join(
            "%s %d" % (X.name(k), ix.count[k]) for k in range(1, X.N_KINDS) if ix.count[k])]
        c = link.ixc
        L.append("frames: foreign source %d (last id 0x%08x)  not for us %d (last id 0x%08x)"
                 "  unknown PGN %d  BRM/BCP refused %d" % (
                     c[IXC_FOREIGN], c[IXC_FOREIGN + 1] & 0x1FFFFFFF, c[IXC_NOTUS],
                     c[IXC_NOTUS + 1] & 0x1FFFFFFF, link.unknown, link.gated))
        e = [0, 0, 0]
        for q in range(ix.oldest(), ix.seq):
            if ix.read(q, e):
                L.append("  t=%d ms  %s 0x%x" % (e[0], X.name(e[1]), e[2]))
        self.emit(L)

    # -- trace ---------------------------------------------------------------
    def trace(self, on=None, pgn=None):
        """trace(True) prints every CAN frame as "t id dlc data" (bounded);
        trace(True, "BCL") only one message; trace(False) stops; trace() status."""
        t = self.tracer
        if on is None:
            self.emit([t.status()])
            return
        if not on:
            t.stop()
            self.emit([t.status()])
            return
        p = 0
        if isinstance(pgn, str):
            for q in _BMS_PGNS + (ids.PGN_CHM, ids.PGN_CRM, ids.PGN_CTS, ids.PGN_CML,
                                  ids.PGN_CRO, ids.PGN_CCS, ids.PGN_CST, ids.PGN_CSD,
                                  ids.PGN_CEM, ids.PGN_TPCM, ids.PGN_TPDT):
                if ids.name_of(q) == pgn.upper():
                    p = q
            if not p:
                self.emit(["unknown message name %r" % pgn])
                return
        elif pgn:
            p = int(pgn)
        t.start(p)
        self.emit(["trace on%s (at most %d lines per poll; trace(False) stops)"
                   % ((" " + ids.name_of(p)) if p else "", t.lines)])

    def add_board_command(self, name, fn, text):
        """A command the board provides (e.g. the SIL bench's plug())."""
        self.board_help.append((name, name + "()", text))
        self.cmds[name] = fn
        self.con.add(name, fn)

    # -- help ----------------------------------------------------------------
    def help(self, obj=None):
        """help() lists the commands; help(cmd) shows one."""
        if obj is None:
            L = ["Charger diagnostics. Commands (e.g. status()):"]
            for name, sig, text in HELP:
                L.append("  %-24s %s" % (sig, text))
            for name, sig, text in self.board_help:
                L.append("  %-24s %s" % (sig, text))
            L.append("Ctrl-D resets this namespace only; the charger keeps running.")
            L.append("Commands run inside the control loop: keep your own code short.")
            self.emit(L)
            return
        for name, sig, text in HELP + tuple(self.board_help):
            if self.cmds.get(name) is obj or obj == name:
                self.emit(["%s  %s" % (sig, text)])
                return
        self.con._help(obj)


HELP = (
    ("status", "status()", "stage, set-points, measurements, relays, BMS, energy"),
    ("risks", "risks()", "S-checks and protections: state, value, limit; trip"),
    ("faults", "faults(n=20)", "last n events from the persistent event log"),
    ("can", "can()", "CAN counters, bus state, last-seen per message, TP"),
    ("sched", "sched(reset=False)", "task run times, worst case, overruns"),
    ("why", "why()", "why it stopped / why it refuses to start, what to do"),
    ("cfg", "cfg(key=None)", "settings (all, by prefix, or one in detail)"),
    ("cfg_set", "cfg_set(key, value)", "validate + store a setting (next boot/live)"),
    ("trace", "trace(on=None, pgn=None)", "print CAN frames (candump format)"),
    ("intrusion", "intrusion()", "CAN intrusion monitor: counters, recent events"),
    ("start", "start()", "operator start"),
    ("stop", "stop()", "operator stop"),
    ("ack", "ack()", "acknowledge needs-confirmation (SOC anomaly)"),
    ("reset_estop", "reset_estop()", "clear the E-stop latch and rearm"),
    ("rearm", "rearm()", "leave a finished trip"),
    ("clear_contactor_fault", "clear_contactor_fault()", "clear the H-7 latch"),
    ("clear_store_fault", "clear_store_fault()", "clear the unusable-record latch"),
)


def install(console, app):
    """Add the commands (and ``app``, ``diag``) to the console namespace."""
    d = Diag(console, app)
    console.add("app", app)
    console.add("diag", d)
    for name, _sig, _text in HELP:
        f = getattr(d, name)
        d.cmds[name] = f
        console.add(name, f)
    console.add("acknowledge", d.ack)      # the name the supervisor's reason uses
    console.add("help", d.help)
    return d
