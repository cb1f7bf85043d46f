"""The field engineer's commands at the diagnostics console (requirement D-1).

``install(console, app)`` (called by ``appbuild.start_console``)
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
from gbt.stages import STAGE_NAMES, IDLE, CONNECTED, DONE
from safety.risk import name_of
from safety.lockout import L_ESTOP, L_CONTACTOR, L_STORE
from safety.trip import STATE_NAMES as TRIP_STATES
from diag import eventlog as ev
from diag.trace import Trace
from diag.cfgcmds import ConfigCommands, LIVE  # noqa: F401  (LIVE: re-exported)
from diag.opcmds import OperatorCommands
from diag.cancmds import CanCommands
from diag.eventtext import detail, cem_names  # noqa: F401 (detail: faults)
from diag.cmdtext import d1, num, secs, latency, onoff, wrap, date, hint  # noqa: F401
from diag.cmdtext import WIDTH, HINTS  # noqa: F401 (re-exported)

_LEVELS = ("off", "I", "II", "III")
# S-checks: unit of value/limit (firmware scaled integers), index 1..13
_S_UNITS = ("", "0.1A", "0.1A", "0.1A", "0.1V", "0.1V", "0.1V", "0.01V", "0.01V",
            "0.1Ah/V", "C", "0.1C/min", "0.1%", "0.1%")
# hard protections: (code index, unit of value/limit)
_H = ((1, "0.1V"), (2, "0.1A"), (3, ""), (4, "kOhm"), (5, "mV"), (6, "0.1C"),
      (7, ""), (8, "mA"), (9, ""), (10, ""), (11, "stale PF"), (12, "stage"))


class Diag(ConfigCommands, OperatorCommands, CanCommands):
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
                                    secs(ticks_diff(now, s.stage_entered_ms)),
                                    "   HALTED" if app.halted else "")]
        L.append("output  power %s  set %s V %s A  limit %s A" % (
            onoff(out.pwr_en), d1(out.v_set), d1(out.i_set), d1(app.sup.current_limit)))
        L.append("relays  K1/K2 %s (fb %s)  K3/K4 %s  lock %s (fb %s)  bleed %s" % (
            "closed" if out.k12 else "open", "closed" if inp.k12_fb else "open",
            onoff(out.k34), onoff(out.lock), onoff(inp.lock_fb), onoff(out.bleed)))
        L.append("meas    inside %s V  outside %s V  I %s A  CC1 %d mV" % (
            d1(inp.v_inside, False), d1(inp.v_outside, False), d1(inp.i_out, False),
            inp.cc1_mv))
        L.append("        insulation %s kOhm  gun %s/%s C  leak %d mA  mains %s  "
                 "E-stop %s" % (num(inp.insulation_kohm), d1(inp.t_gun_pos, False),
                                d1(inp.t_gun_neg, False), inp.leakage_ma,
                                "ok" if inp.mains_ok else "LOST",
                                "PRESSED" if inp.estop else "off"))
        L.append("BMS     demand %s V %s A %s  measured %s V %s A  SOC %s %%" % (
            d1(b.req_v), d1(b.req_i), {1: "CV", 2: "CC"}.get(b.req_mode, "-"),
            d1(b.meas_v), d1(b.meas_i), num(b.soc)))
        cell = "-" if b.cell_max_v < 0 else "%d.%02d" % (b.cell_max_v // 100, b.cell_max_v % 100)
        L.append("        cell max %s V  temp max %s C  permit %s  remaining %s min" % (
            cell, num(b.temp_max), "yes" if b.permit else "PAUSE", num(b.remain_min)))
        L.append("energy  %d Wh  %d min  VIN %s" % (s.energy_wh, s.charge_min,
                                                  b.vin_str() or "-"))
        L.append("stop    %s" % (s.stoprec.why or "-"))
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
        L = []
        if sup.tripped:
            t = sup.trip
            L.append("TRIPPED: %s  (trip %s: power off %s, K1/K2 open %s)" % (
                sup.trip_name, TRIP_STATES[t.state].lower().replace("_", "-"),
                latency(t.latency(t.t_pwr_off)), latency(t.latency(t.t_k12_open))))
        else:
            L.append("trip: none")
        L.append("stop request: %s  current limit %s A  warnings %d" % (
            name_of(sup.stop_request) if sup.stop_request else "-",
            d1(sup.current_limit), sup.warn_count))
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
                name_of(i)[:32], _LEVELS[sup.risk.level[i]], st, num(v), num(lim),
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
                pending, active, value, limit = sup.protection_diag(h)
                if sup.tripped and sup.trip_cause == code:
                    st = "RAISED"
                elif pending:
                    st = "PENDING"
                elif not active:
                    st = "INACTIVE"
                else:
                    st = "OK"
                v = str(value)
                lim = str(limit) if limit else "-"
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
            s.passes, s.pass_wcet_us, onoff(s.alloc_stats)))
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
        r = s.stoprec
        if r.why:
            L.append("stopped: %s  (CST reason 0x%02x fault 0x%03x error 0x%02x)" % (
                r.why, r.reason, r.fault, r.error))
        for label, w in (("detail", r.detail), ("trip", r.trip),
                         ("timeout", r.timeout), ("fault", r.bleed),
                         ("VIN", s.vin_why)):
            if isinstance(w, int):
                w = name_of(w) if w else ""      # the supervisor's cause code
            if w and w != "ok":
                L.append("  %s: %s" % (label, w))
        if s.cem:
            L.append("  timeouts reported (CEM): %s" % cem_names(s.cem))
        e = app.bms.end
        if e.bst_reason not in (-1, 0):
            L.append("  BMS BST reason 0x%02x fault 0x%04x error 0x%02x" % (
                e.bst_reason, e.bst_fault, e.bst_error))
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
