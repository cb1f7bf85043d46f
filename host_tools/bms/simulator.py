"""The BMS side of a GB/T 27930 charging session on any python-can bus.

    sim = BmsSimulator(can.Bus(interface="virtual", channel="gbt"), BmsParams(soc=30))
    while not sim.done:
        sim.poll(now_ms)          # caller owns the clock: simulated or wall-clock ms
    print(sim.summary()); results = sim.report()

``poll(now_ms)`` drains ``bus.recv(timeout=0)``, advances the state machine,
integrates the pack (``drive_pack=True``: from the current the charger reports
in CCS) and sends what is due.  Poll at least every 10 ms (BST's period) in
simulated time; the CLI polls every millisecond.

Stages (``stage``): wait_chm -> handshake (BHM) -> recognition (BRM) -> config
(BCP, BRO 00 -> AA) -> charging (BCL, BCS, BSM, BMV, BMT) -> stopping (BST)
-> statistics (BSD) -> done; "error" (BEM after a BMS-side timeout, waiting
for a re-handshake) and "wait_crm" (CEM received, waiting for CRM 00).
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Dict, List, Optional

import can

from . import codec
from .battery import BatteryPack, cc_cv_demand
from .checks import CheckResult, Recorder, evaluate, overall
from .params import BmsParams
from .scenario import Action, Scenario
from .tp import TpSender, TpTimers
from .transmit import Transmitter, _STAGE_MESSAGES

class BmsSimulator(Transmitter):
    def __init__(self, bus: can.BusABC, params: Optional[BmsParams] = None, pack: Optional[BatteryPack] = None,
                 scenario: Optional[Scenario] = None, drive_pack: bool = True, apply_scenario_params: bool = True,
                 sa: int = codec.BMS, da: int = codec.CHARGER):
        p = dataclasses.replace(params or BmsParams())
        p.timeouts = dataclasses.replace(p.timeouts)
        p.checks = dataclasses.replace(p.checks)
        self.scenario = scenario or Scenario()
        if apply_scenario_params:
            p.update(self.scenario.params)
            p.update({"checks": self.scenario.checks})
        self.p = p.resolved()
        self.bus = bus
        self.sa, self.da = sa, da
        self.drive_pack = drive_pack
        self.pack = pack or BatteryPack(self.p.chemistry, self.p.capacity_ah, self.p.cells, self.p.soc,
                                        self.p.resistance_ohm, self.p.soc_spread_pct, self.p.capacity_spread_pct,
                                        self.p.seed, self.p.ambient_c, self.p.temp_c, self.p.probes)
        self.rec = Recorder()
        self.tp = TpSender(self._send_raw, sa, da, TpTimers(), self.p.tp_dt_gap_ms, on_done=self._tp_done)
        self.rec.transfers = self.tp.history
        self._rng = random.Random(self.p.seed)
        self.t0: Optional[int] = None
        self.now = 0
        self._last_poll: Optional[int] = None
        self.stage = "wait_chm"
        self.stage_entry: Dict[str, int] = {}
        self._stage_since = 0
        self.stop_reason = ""
        self.done = False
        self._due: Dict[str, int] = {}
        self._tp_pending: Dict[str, bytes] = {}
        self._delayed: List[tuple] = []
        self._last_rx: Dict[str, int] = {}
        self._first_rx: Dict[str, int] = {}
        self.ccs: Dict[str, Any] = {}
        self.cml: Dict[str, Any] = {}
        self._ccs_ms: Optional[int] = None
        self._bro_aa_ms: Optional[int] = None
        self._cml_ms: Optional[int] = None
        self._bst: Dict[str, int] = {"reason": 0, "fault": 0, "error": 0}
        self._bst_ms: Optional[int] = None
        self._bem_bits = 0
        self._bem_ms: Optional[int] = None
        self._bem_final = False
        self._in_cv = False
        self._demand = 0.0
        self._first_brm_ms: Optional[int] = None
        self._paused = False
        self._bsm_abnormal = False
        self._pause_action: Optional[Action] = None
        self.reconnects = 0
        self.tx_frames = 0
        self.rx_frames = 0
        self._ts_off: Optional[float] = None

    # ================================================================ public API
    def poll(self, now_ms: int) -> None:
        now = int(now_ms)
        if self.t0 is None:
            self.t0 = now
            self._last_poll = now
            self._enter("wait_chm", now)
        self.now = now
        if self.drive_pack:
            self.pack.step((now - self._last_poll) / 1000.0, self._charger_current(now))
        self._last_poll = now
        while True:
            msg = self.bus.recv(timeout=0)
            if msg is None:
                break
            self._on_msg(self._stamp(now, msg), msg)
        if self.done:
            return
        self._scenario_events(now)
        self._timeouts(now)
        self._charging_logic(now)
        self._send_due(now)
        self._inject(now)
        self.tp.poll(now)
        self._start_pending_tp(now)
        self._flush_delayed(now)

    def report(self) -> List[CheckResult]:
        return evaluate(self.rec, self.p)

    def summary(self) -> Dict[str, Any]:
        res = self.report()
        counts = {v: sum(1 for r in res if r.verdict == v) for v in ("PASS", "FAIL", "NOT RUN")}
        cells = self.pack.cell_voltages()
        return {
            "scenario": self.scenario.name, "stage": self.stage, "stop_reason": self.stop_reason,
            "done": self.done, "time_s": (self.now - (self.t0 or 0)) / 1000.0,
            "soc": round(self.pack.soc, 2), "voltage_v": round(self.pack.terminal_voltage(), 1),
            "current_a": round(self.pack.current_a, 1), "demand_a": round(self._demand, 1),
            "cell_max_v": round(max(cells), 3), "cell_min_v": round(min(cells), 3),
            "temp_max_c": round(max(self.pack.temperatures()), 1), "charged_ah": round(self.pack.charged_ah, 2),
            "reconnects": self.reconnects, "tx_frames": self.tx_frames, "rx_frames": self.rx_frames,
            "checks": counts, "verdict": overall(res),
        }

    def status_line(self) -> str:
        return ("t=%7.1fs %-11s SOC %5.1f%% V %6.1f I %6.1f A (dem %6.1f %s) Tmax %4.1f C%s" % (
            (self.now - (self.t0 or 0)) / 1000.0, self.stage, self.pack.soc, self.pack.terminal_voltage(),
            self.pack.current_a, self._demand, "CV" if self._in_cv else "CC", max(self.pack.temperatures()),
            (" | " + self.stop_reason) if self.stop_reason else ""))

    # ================================================================ receive
    def _stamp(self, now: int, msg: can.Message) -> float:
        if self.p.checks.timestamps != "frame" or not msg.timestamp:
            return float(now)
        ts = msg.timestamp * 1000.0
        off = now - ts
        # Frames are stamped before we see them: the smallest offset seen is the best estimate.
        if self._ts_off is None or off < self._ts_off:
            self._ts_off = off
        return ts + self._ts_off

    def _on_msg(self, t: float, msg: can.Message) -> None:
        if not msg.is_extended_id or msg.is_error_frame or msg.is_remote_frame:
            return
        cid = msg.arbitration_id
        _, pgn, da, sa = codec.split_id(cid)
        if sa != self.da or da not in (self.sa, codec.GLOBAL):
            return
        data = bytes(msg.data[:msg.dlc])
        self.rx_frames += 1
        now = self.now
        if pgn == codec.PGN_TPCM:
            self.tp.on_frame(now, cid, data)
            return
        d = codec.BY_PGN.get(pgn)
        if d is None or d.sender != "C":
            self.rec.unknown_rx += 1
            return
        self.rec.on_rx(t, d.name, data, cid)
        if self._ignored(d.name, now):
            return
        self._first_rx.setdefault(d.name, now)
        self._last_rx[d.name] = now
        self._on_charger(now, d.name, codec.decode(d.name, data))

    def _on_charger(self, now: int, name: str, v: Dict[str, Any]) -> None:
        st = self.stage
        if st == "done":
            return
        if name == "CHM":
            if st == "wait_chm":
                self._enter("handshake", now)
        elif name == "CRM":
            res = v.get("result")
            if res == 0x00:
                if st in ("wait_chm", "handshake"):
                    self._enter("recognition", now)
                elif st in ("error", "wait_crm") and not self._bem_final:
                    self.reconnects += 1
                    self._reset_session()
                    self._enter("recognition", now)
                elif st in ("config", "charging"):
                    # The charger restarted the handshake without telling us why.
                    self.reconnects += 1
                    self._reset_session()
                    self._enter("recognition", now)
            elif res == 0xAA and st == "recognition":
                self._enter("config", now)
        elif name == "CML":
            self.cml = v
            if st == "config" and self._cml_ms is None:
                self._cml_ms = now
                self._due["BRO"] = now          # BRO starts with the first CML
        elif name == "CRO":
            if v.get("value") == 0xAA and st == "config" and self._bro_aa_ms is not None:
                self._enter("charging", now)
        elif name == "CCS":
            if "current_a" in v:
                self.ccs = v
                self._ccs_ms = now
        elif name == "CST":
            if st in ("config", "charging"):
                why = "/".join(codec.bits_set(v.get("reason", 0), codec.CST_REASON)) or "?"
                self._begin_stop(now, {"reason": codec.BST_REASON["charger"]}, "charger stopped (CST %s)" % why,
                                 initiator="reply")
            elif st == "stopping":
                self._enter("statistics", now)
        elif name == "CSD":
            if st == "statistics" and self.rec.tx.get("BSD"):
                self._finish(now, self.stop_reason or "statistics exchanged")
        elif name == "CEM":
            if st not in ("error", "wait_crm", "statistics", "stopping"):
                bits = v.get("bits", 0)
                names = [n for n, m in codec.CEM_BITS.items() if bits & (m * 3) == m]
                self.stop_reason = "CEM received (%s)" % ("/".join(names) or "other")
                self.rec.event(now, "cem_rx", bits=bits)
                self._enter("wait_crm", now)

    def _reset_session(self) -> None:
        self._bro_aa_ms = None
        self._cml_ms = None
        self._ccs_ms = None
        self._bem_bits = 0
        self._bem_ms = None
        self._first_brm_ms = None
        self._in_cv = False
        self._bst = {"reason": 0, "fault": 0, "error": 0}
        self._bst_ms = None
        self.stop_reason = ""
        self.ccs = {}

    # ================================================================ stage machine
    def _enter(self, stage: str, now: int) -> None:
        self.stage = stage
        self.stage_entry.setdefault(stage, now)
        self._stage_since = now
        self.rec.event(now, "stage", stage=stage)
        for name in _STAGE_MESSAGES.get(stage, ()):
            self._due[name] = now
        if stage == "charging":
            # Optional BMV/BMT start 1 s in, then every 10 s.
            self._due["BMV"] = now + 1000
            self._due["BMT"] = now + 1000
            self._ccs_ms = None
        if stage not in ("charging", "stopping"):
            self._demand = 0.0

    def _finish(self, now: int, reason: str) -> None:
        self.stop_reason = reason
        self._enter("done", now)
        self.done = True
        if self.tp.busy:
            self.tp.cancel(now)

    def _begin_stop(self, now: int, bits: Dict[str, int], reason: str, initiator: str = "bms") -> None:
        self._bst = {"reason": bits.get("reason", 0), "fault": bits.get("fault", 0), "error": bits.get("error", 0)}
        self._bst_ms = now
        self.stop_reason = reason
        self.rec.event(now, "bst", initiator=initiator, **self._bst)
        self._enter("stopping", now)

    def _bem(self, now: int, bit: str, what: str, final: bool = False) -> None:
        self._bem_bits |= codec.BEM_BITS[bit]
        self._bem_ms = now
        self._bem_final = final
        self.stop_reason = "timeout waiting for %s (BEM)" % what
        induced = any(a.type == "ignore" and a.fired_ms is not None for a in self.scenario.actions)
        self.rec.event(now, "bem", what=what, bits=self._bem_bits, induced=induced)
        self._enter("error", now)

    def _timeouts(self, now: int) -> None:
        to = self.p.timeouts
        st = self.stage
        since = now - self._stage_since
        if st == "wait_chm" and now - self.t0 >= to.crm_no_chm_ms:
            self._bem(now, "crm00", "CRM (no CHM)")
        elif st == "handshake" and now - self._first_rx.get("CHM", now) >= to.crm_ms:
            self._bem(now, "crm00", "CRM")
        elif st == "recognition" and self._first_brm_ms is not None and now - self._first_brm_ms >= to.crm_aa_ms:
            self._bem(now, "crmaa", "CRM 0xAA")
        elif st == "config":
            if self._cml_ms is None and since >= to.cml_ms:
                self._bem(now, "cml", "CML")
            elif self._bro_aa_ms is not None:
                any_cro = self._last_rx.get("CRO", -1) >= self._bro_aa_ms
                if not any_cro and now - self._bro_aa_ms >= to.cro_ms:
                    self._bem(now, "cro", "CRO")
                elif now - self._bro_aa_ms >= to.cro_aa_ms:
                    self._bem(now, "cro", "CRO 0xAA")
        elif st == "charging":
            ref = self._ccs_ms if self._ccs_ms is not None else self._stage_since
            if now - ref >= to.ccs_ms:
                self._bem(now, "ccs", "CCS")
        elif st == "stopping" and self._bst_ms is not None and now - self._bst_ms >= to.cst_ms:
            self._bem(now, "cst", "CST", final=True)
        elif st == "statistics" and self._bst_ms is not None and now - self._bst_ms >= to.csd_ms:
            self._bem(now, "csd", "CSD", final=True)
        elif st == "error":
            hold = to.bem_hold_ms if self._bem_final else to.rehandshake_ms
            if since >= hold:
                self._finish(now, self.stop_reason)
        elif st == "wait_crm" and since >= to.rehandshake_ms:
            self._finish(now, self.stop_reason + ", no re-handshake")

    def _charger_current(self, now: int) -> float:
        if self.stage not in ("charging", "stopping") or self._ccs_ms is None or now - self._ccs_ms > 1000:
            return 0.0
        return max(0.0, float(self.ccs.get("current_a", 0.0)))

    def _charging_logic(self, now: int) -> None:
        # Re-evaluated once per BCL period (the BMS's control rate), not every poll.
        if self.stage != "charging" or now < self._due.get("BCL", now):
            return
        p = self.p
        cell_lim = p.max_cell_voltage_v - p.cv_margin_v
        pack_lim = min(p.max_voltage_v, p.cells * cell_lim)
        dem, cv = cc_cv_demand(self.pack, p.request_current_a, cell_lim, pack_lim)
        self._in_cv = self._in_cv or cv
        self._demand = min(dem, p.max_current_a)
        temps = self.pack.temperatures()
        if self.pack.soc >= p.target_soc:
            self._begin_stop(now, {"reason": codec.BST_REASON["soc"]}, "SOC target reached (%.1f %%)" % self.pack.soc)
        elif self._in_cv and self._demand <= p.cutoff_current_a:
            self._begin_stop(now, {"reason": codec.BST_REASON["cell_voltage"]},
                             "cell voltage setpoint reached (taper below %.1f A)" % p.cutoff_current_a)
        elif max(temps) > p.max_temp_c:
            self._begin_stop(now, {"fault": codec.BST_FAULT["battery_overtemp"]},
                             "battery over-temperature (%.1f C)" % max(temps))

    # ================================================================ scenario
    def _ignored(self, name: str, now: int) -> bool:
        for a in self.scenario.of("ignore", name):
            if a.window(now, self.t0, self.stage_entry):
                if a.fired_ms is None:
                    a.fired_ms = now
                return True
        return False

    def _scenario_events(self, now: int) -> None:
        for a in self.scenario.actions:
            if a.type == "bst" and a.fired_ms is None and a.window(now, self.t0, self.stage_entry):
                a.fired_ms = now
                a.used += 1
                if self.stage in ("config", "charging", "handshake", "recognition"):
                    o = a.opts
                    bits = {"reason": codec.mask_of(o.get("reason"), codec.BST_REASON),
                            "fault": codec.mask_of(o.get("fault"), codec.BST_FAULT),
                            "error": codec.mask_of(o.get("error"), codec.BST_ERROR)}
                    self._begin_stop(now, bits, "scenario BST (%s)" % a.describe())
            elif a.type == "pack" and a.fired_ms is None and a.window(now, self.t0, self.stage_entry):
                a.fired_ms = now
                if "temp_c" in a.opts:
                    self.pack.temp_c = float(a.opts["temp_c"])
                if "soc" in a.opts:
                    self.pack.soc = float(a.opts["soc"])
            elif a.type == "pause":
                on = a.window(now, self.t0, self.stage_entry)
                if on and a.fired_ms is None:
                    a.fired_ms = now
                    self._pause_action = a
                    end = a.start_ms(self.t0, self.stage_entry)
                    end = None if a.duration_ms is None else end + int(a.duration_ms)
                    self.rec.event(now, "pause", end=end)
                elif not on and a.fired_ms is not None and self._pause_action is a:
                    self._pause_action = None
                    self.rec.event(now, "resume")
            elif a.type == "drop" and a.fired_ms is None and a.window(now, self.t0, self.stage_entry):
                a.fired_ms = now
                s = a.start_ms(self.t0, self.stage_entry)
                end = None if a.duration_ms is None else s + int(a.duration_ms)
                self.rec.event(now, "drop_start", message=a.message, end=end)
        self._paused = self._pause_action is not None

    def _active(self, kind: str, name: str, now: int) -> List[Action]:
        return [a for a in self.scenario.of(kind, name) if a.window(now, self.t0, self.stage_entry)]

    def _inject(self, now: int) -> None:
        for a in self.scenario.of("inject"):
            if not a.window(now, self.t0, self.stage_entry):
                continue
            last = a.opts.get("_last")
            period = int(a.opts.get("period_ms", codec.MESSAGES[a.message].period_ms))
            if last is None or now - last >= period:
                a.opts["_last"] = now
                a.used += 1
                a.fired_ms = a.fired_ms if a.fired_ms is not None else now
                payload = codec.encode(a.message, {**self._fields(a.message, now), **a.opts.get("fields", {})})
                payload = codec.apply_bytes(payload, a.opts.get("raw"), a.opts.get("set_bytes"))
                self._transmit(now, a.message, payload)
