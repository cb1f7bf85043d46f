"""A scripted minimal GB/T 27930 charger for the BMS-simulator tests (simulated time).

It is deliberately simple and fully controllable: every period, value and
reaction is a constructor knob so a test can make it misbehave in exactly one
way and assert that the simulator's checks notice.  The tests at the bottom
only make sure the helper itself works.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional

import can

from host_tools.bms import codec

C, B = codec.CHARGER, codec.BMS
PERIODS = {"CHM": 250, "CRM": 250, "CTS": 500, "CML": 250, "CRO": 250, "CCS": 50, "CST": 10, "CSD": 250, "CEM": 250}
TIMEOUTS = {"BRM": 5000, "BCP": 5000, "BRO": 5000, "BCL": 1000, "BCS": 5000}


def cid(name: str) -> int:
    d = codec.MESSAGES[name]
    return codec.can_id(d.prio, d.pgn, B, C)


class ScriptedCharger:
    def __init__(self, bus: can.BusABC, periods: Optional[Dict[str, int]] = None, cml=(750.0, 150.0, 200.0, 0.0),
                 version: bytes = b"\x01\x01\x00", ccs_dlc: int = 8, crm_aa_early: bool = False,
                 cro_aa_early: bool = False, precharge_ms: int = 300, ramp_a_per_s: float = 2000.0,
                 cst_delay_ms: int = 0, stop_current_delay_ms: int = 0, send_cts: bool = True,
                 cts_delay_ms: int = 0, cts_window: Optional[int] = None, cem_enabled: bool = True,
                 stop_at_ms: Optional[int] = None, cst_reason: int = 0x40, current_offset_a: float = 0.0,
                 ignore_bsm: bool = False, rehandshake_ms: int = 5000, strict_tp: bool = True,
                 insulation_ms: int = 1000, cst_frames: int = 30, honor_pause: bool = True):
        self.bus = bus
        self.periods = dict(PERIODS, **(periods or {}))
        self.cml = cml
        self.version = version
        self.ccs_dlc = ccs_dlc
        self.crm_aa_early = crm_aa_early
        self.cro_aa_early = cro_aa_early
        self.precharge_ms = precharge_ms
        self.ramp = ramp_a_per_s
        self.cst_delay_ms = cst_delay_ms
        self.stop_current_delay_ms = stop_current_delay_ms
        self.send_cts = send_cts
        self.cts_delay_ms = cts_delay_ms
        self.cts_window = cts_window
        self.cem_enabled = cem_enabled
        self.stop_at_ms = stop_at_ms
        self.cst_reason = cst_reason
        self.current_offset_a = current_offset_a
        self.ignore_bsm = ignore_bsm
        self.rehandshake_ms = rehandshake_ms
        self.strict_tp = strict_tp
        self.state = "chm"
        self.honor_pause = honor_pause
        self.insulation_ms = insulation_ms
        self.insulation_at: Optional[int] = None
        self.cst_frames = cst_frames
        self.zero_ccs_sent = False
        self.since = 0
        self.due: Dict[str, int] = {"CHM": 0}
        self.last: Dict[str, int] = {}
        self.msgs: Dict[str, bytes] = {}
        self.i = 0.0
        self.demand = 0.0
        self.permit = True
        self.cem_bits = 0
        self.bst_ms: Optional[int] = None
        self.cst_at: Optional[int] = None
        self.cro_aa_ms: Optional[int] = None
        self.tp: Optional[dict] = None
        self.tp_log: List[tuple] = []
        self.sent: List[tuple] = []
        self._t = 0

    # ------------------------------------------------------------ tx helpers
    def _send(self, name: str, data: bytes) -> None:
        self.bus.send(can.Message(arbitration_id=cid(name), data=data, is_extended_id=True))
        self.sent.append((self._t, name, bytes(data)))

    def _tpcm(self, data: bytes) -> None:
        self.bus.send(can.Message(arbitration_id=codec.can_id(7, codec.PGN_TPCM, B, C), data=data,
                                  is_extended_id=True))
        self.tp_log.append((self._t, "tx", bytes(data)))

    def _enter(self, state: str, now: int, *msgs: str) -> None:
        self.state = state
        self.since = now
        self.due = {m: now for m in msgs}

    # ------------------------------------------------------------ rx
    def _on_tp(self, now: int, pgn: int, data: bytes) -> None:
        if pgn == codec.PGN_TPCM:
            self.tp_log.append((now, "rx", data))
            ctl = data[0]
            if ctl in (0x10, 0x20):
                size = data[1] | data[2] << 8
                if self.strict_tp and (size + 6) // 7 != data[3]:
                    if ctl == 0x10:
                        self._tpcm(bytes([0xFF, 255, 0xFF, 0xFF, 0xFF]) + bytes(data[5:8]))
                    self.tp = None
                    return
                self.tp = {"pgn": int.from_bytes(data[5:8], "little"), "size": size, "n": data[3],
                           "got": {}, "bam": ctl == 0x20, "cts_at": now + self.cts_delay_ms, "next": 1}
            elif ctl == 0xFF:
                self.tp = None
        elif pgn == codec.PGN_TPDT and self.tp is not None:
            seq = data[0]
            t = self.tp
            if self.strict_tp and (seq == 0 or seq > t["n"] or seq in t["got"]):
                if not t["bam"]:
                    self._tpcm(bytes([0xFF, 7 if seq in t["got"] else 6, 0xFF, 0xFF, 0xFF])
                               + t["pgn"].to_bytes(3, "little"))
                self.tp = None
                return
            t["got"][seq] = data[1:8]
            if len(t["got"]) == t["n"]:
                payload = b"".join(t["got"][k] for k in sorted(t["got"]))[:t["size"]]
                if not t["bam"]:
                    self._tpcm(bytes([0x13, t["size"] & 0xFF, t["size"] >> 8, t["n"], 0xFF])
                               + t["pgn"].to_bytes(3, "little"))
                self.tp = None
                d = codec.BY_PGN.get(t["pgn"])
                if d:
                    self._on_bms(now, d.name, payload)
            elif not t["bam"] and seq == t.get("last_req"):
                missing = [k for k in range(1, t["n"] + 1) if k not in t["got"]]
                t["cts_at"] = now
                t["next"] = missing[0]

    def _on_bms(self, now: int, name: str, data: bytes) -> None:
        self.last[name] = now
        self.msgs[name] = data
        st = self.state
        if name == "BHM" and st == "chm" and self.insulation_at is None:
            self.insulation_at = now + self.insulation_ms   # CHM goes on during the insulation test
        elif name == "BRM" and st == "crm":
            self.crm = 0xAA
            self.state = "crm_aa"
        elif name == "BCP" and st == "crm_aa":
            msgs = ("CML",) + (("CTS",) if self.send_cts else ()) + (("CRO",) if self.cro_aa_early else ())
            self._enter("param", now, *msgs)
            self.cro = 0xAA if self.cro_aa_early else 0x00
        elif name == "BRO" and st == "param" and data[:1] == b"\xaa":
            self._enter("cro", now, "CRO")
            self.cro = 0xAA if self.cro_aa_early else 0x00
        elif name == "BCL" and len(data) >= 5:
            self.demand = 400.0 - struct.unpack_from("<H", data, 2)[0] / 10.0
            if st == "cro" and self.cro == 0xAA:
                self._enter("charging", now, "CCS")
        elif name == "BSM" and len(data) >= 7:
            self.permit = (data[6] >> 4) & 3 == 1
            abnormal = data[5] & 0x55 or data[6] & 0x05
            if abnormal and st == "charging" and not self.ignore_bsm:
                self._stop(now, 0x10)
        elif name == "BST" and st == "charging":
            self.bst_ms = now
            self._stop(now, self.cst_reason)
        elif name == "BSD" and st == "stop":
            keep = {k: v for k, v in self.due.items() if k in ("CST", "CCS")}
            self._enter("end", now, "CSD")
            self.due.update(keep)

    def _stop(self, now: int, reason: int) -> None:
        self.cst_at = now + self.cst_delay_ms
        self.cst_payload = bytes([reason, 0x00, 0xF0, 0xF0])
        self.stop_ms = now
        self.state = "stop"
        self.due = {"CCS": self.due.get("CCS", now)}

    def _cem(self, now: int, name: str) -> None:
        self.cem_bits = codec.CEM_BITS[name]
        self._enter("cem", now, "CEM")

    # ------------------------------------------------------------ main
    def poll(self, now: int) -> None:
        self._t = now
        dt = (now - getattr(self, "_prev", now)) / 1000.0
        self._prev = now
        while True:
            m = self.bus.recv(timeout=0)
            if m is None:
                break
            _, pgn, da, sa = codec.split_id(m.arbitration_id)
            if sa != B:
                continue
            data = bytes(m.data)
            if pgn in (codec.PGN_TPCM, codec.PGN_TPDT):
                self._on_tp(now, pgn, data)
            elif pgn in codec.BY_PGN:
                self._on_bms(now, codec.BY_PGN[pgn].name, data)
        if self.state == "chm" and self.insulation_at is not None and now >= self.insulation_at:
            self._enter("crm", now, "CRM")
            self.crm = 0xAA if self.crm_aa_early else 0x00
        st = self.state
        # TP: CTS for the next window
        t = self.tp
        if t and not t["bam"] and self.send_cts and t.get("cts_at") is not None and now >= t["cts_at"]:
            cnt = t["n"] - t["next"] + 1 if self.cts_window is None else min(self.cts_window, t["n"] - t["next"] + 1)
            self._tpcm(bytes([0x11, cnt, t["next"], 0xFF, 0xFF]) + t["pgn"].to_bytes(3, "little"))
            t["last_req"] = t["next"] + cnt - 1
            t["cts_at"] = None
        # timeouts -> CEM
        if self.cem_enabled:
            if st == "crm" and now - self.since >= TIMEOUTS["BRM"] and "BRM" not in self.last:
                self._cem(now, "BRM")
            elif st == "charging":
                for n in ("BCL", "BCS"):
                    if now - max(self.last.get(n, self.since), self.since) >= TIMEOUTS[n]:
                        self._cem(now, n)
                        self.i = 0.0
                        break
        if self.state == "cem" and now - self.since >= self.rehandshake_ms:
            self.last = {}
            self._enter("crm", now, "CRM")
            self.crm = 0x00
        if self.stop_at_ms is not None and now >= self.stop_at_ms and self.state == "charging":
            self._stop(now, 0x04)
        # current
        target = 0.0
        if self.state == "charging" and (self.permit or not self.honor_pause):
            target = min(self.demand, self.cml[2])
        if self.state in ("stop", "end") and now - self.stop_ms < self.stop_current_delay_ms:
            target = self.i
        step = self.ramp * dt
        self.i = min(target, self.i + step) if target > self.i else max(target, self.i - step)
        if self.state == "stop" and self.cst_at is not None and now >= self.cst_at and "CST" not in self.due:
            self.due["CST"] = now
        if self.state in ("stop", "end") and self.zero_ccs_sent and "CCS" in self.due:
            del self.due["CCS"]
        if "CST" in self.due and sum(1 for x in self.sent if x[1] == "CST") >= self.cst_frames:
            del self.due["CST"]
        for name in list(self.due):
            if now >= self.due[name]:
                self.due[name] += self.periods[name]
                self._send(name, self._payload(name))

    def _payload(self, name: str) -> bytes:
        if name == "CHM":
            return self.version
        if name == "CRM":
            return bytes([self.crm]) + struct.pack("<I", 1234) + b"\xff\xff\xff"
        if name == "CTS":
            return bytes([0x00, 0x30, 0x12, 0x01, 0x06, 0x24, 0x20])
        if name == "CML":
            mx, mn, imx, imn = self.cml
            return struct.pack("<HHHH", int(mx * 10), int(mn * 10), int((400 - imx) * 10), int((400 - imn) * 10))
        if name == "CRO":
            if self.cro == 0x00 and self.state == "cro" and self._t - self.since >= self.precharge_ms:
                self.cro = 0xAA
            return bytes([self.cro])
        if name == "CCS":
            bcs, bcp = self.msgs.get("BCS"), self.msgs.get("BCP")
            v = struct.unpack_from("<H", bcs)[0] if bcs else struct.unpack_from("<H", bcp, 11)[0] if bcp else 0
            i = max(0.0, self.i + self.current_offset_a)
            if self.state in ("stop", "end") and i <= 5.0:
                self.zero_ccs_sent = True
            data = struct.pack("<HHH", v, int(round((400 - i) * 10)), 1) + bytes([0xFD if self.permit else 0xFC, 0xFF])
            return data[:self.ccs_dlc]
        if name == "CST":
            return self.cst_payload
        if name == "CSD":
            return struct.pack("<HHI", 1, 10, 1234)
        if name == "CEM":
            b = self.cem_bits.to_bytes(4, "little")
            return bytes([b[0] | 0xFC, b[1] | 0xF0, b[2] | 0xC0, b[3] | 0xFC])
        raise KeyError(name)


def make_buses(channel: str):
    bms_bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    chg_bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    return bms_bus, chg_bus


def run(sim, charger, until_ms: int, step_ms: int = 5, stop_when_done: bool = True, extra_ms: int = 600):
    """Lock-step simulated time: charger first, then the BMS, every ``step_ms``."""
    end = None
    now = 0
    while now <= until_ms:
        charger.poll(now)
        sim.poll(now)
        if stop_when_done and sim.done and end is None:
            end = now + extra_ms          # let the charger's last frames arrive
        if end is not None and now >= end:
            break
        now += step_ms
    return now


# A small, stiff pack: CC at 60 A, 1 % SOC per 12 s, so whole sessions take seconds of CPU.
FAST = dict(capacity_ah=20.0, cells=20, max_current_a=60.0, resistance_ohm=0.02, soc=50.0, target_soc=51.0,
            vin="LTESTVIN123456789")


class TapBus:
    """Wraps the BMS's bus and logs every frame it sends with the simulated time."""

    def __init__(self, bus, clock):
        self.bus, self.clock, self.log = bus, clock, []

    def send(self, msg, timeout=None):
        self.log.append((self.clock[0], msg.arbitration_id, bytes(msg.data)))
        self.bus.send(msg, timeout)

    def recv(self, timeout=None):
        return self.bus.recv(timeout)

    def shutdown(self):
        self.bus.shutdown()


def session(channel, params=None, until=60000, scenario=None, step_ms=10, stop_when_done=True, **charger_kw):
    """Run BmsSimulator (FAST pack + ``params``) against a ScriptedCharger(**charger_kw).
    -> (sim, charger, log of BMS frames [(ms, id, data)])."""
    from host_tools.bms import BmsParams, BmsSimulator, Scenario
    b, c = make_buses(channel)
    clock = [0]
    tap = TapBus(b, clock)
    if isinstance(scenario, list):
        scenario = Scenario.from_dict({"action": scenario})
    sim = BmsSimulator(tap, BmsParams().update(dict(FAST, **(params or {}))), scenario=scenario)
    ch = ScriptedCharger(c, **charger_kw)

    class Clocked:
        def poll(self, now):
            clock[0] = now
            ch.poll(now)

    try:
        run(sim, Clocked(), until, step_ms=step_ms, stop_when_done=stop_when_done)
    finally:
        b.shutdown()
        c.shutdown()
    return sim, ch, tap.log


def frames(log, cid):
    return [(t, d) for t, i, d in log if i == cid]


def verdicts(sim):
    return {r.name: r for r in sim.report()}


def test_scripted_charger_sends_chm_at_its_period():
    bms_bus, chg_bus = make_buses("support_chm")
    try:
        ch = ScriptedCharger(chg_bus)
        for now in range(0, 1001, 5):
            ch.poll(now)
        times = [t for t, n, _ in ch.sent if n == "CHM"]     # nobody answers: CHM goes on
        assert times == [0, 250, 500, 750, 1000]
        frames = []
        while (m := bms_bus.recv(timeout=0)) is not None:
            frames.append(m)
        assert all(m.arbitration_id == 0x1826F456 and bytes(m.data) == b"\x01\x01\x00" for m in frames)
    finally:
        bms_bus.shutdown()
        chg_bus.shutdown()
