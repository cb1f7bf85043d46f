"""Bench for the conformance suite: the firmware on the SIL (lock-step,
10 ms steps) + plant + BMS simulator + a recorder of every frame on the bus.

    b = Bench(tmp_path, params={"soc": 80}, scenario=[{"type": "drop", ...}],
              config={"session.profile": 1})
    b.run_to_stage("charging")
    ccs = b.tx("CCS")                   # charger frames (python-can messages)
    t = ms(ccs[0])                      # simulated ms on the bus
    b.send("BRO", b"\\x00")              # a raw frame from the BMS address

Time conventions (what the numbers in the assertions mean):

* A frame's time is its bus timestamp in simulated ms (``ms(msg)``).  The
  firmware's session task runs at 10 ms + 1 (its frames are stamped ...1);
  the BMS simulator and raw frames from a test are stamped at the step
  boundary (...0) and reach the firmware's CAN task ``RX_LAT`` later.
  The task periods are read from the firmware's schema (appcore.py), so the
  latencies follow a change of the task table.
* ``TICK`` = 10 ms (one session tick).  A timeout measured from a charger
  frame is exact to the tick; measured from a BMS frame it also carries the
  receive latency (``RX_LAT``).
* ``b.out_at(name, t)`` / ``b.first_change`` read the firmware outputs
  (``k12``, ``k34``, ``lock``, ``bleed``, ``pwr_en``, ``v_set``, ``i_set``);
  an output the session changes at a tick shows up ``OUT_LAT`` later (the
  protection task writes the outputs).
* ``b.meas_at(t)`` = the plant measurements the firmware had at ``t``
  (``v_inside``, ``v_outside``, ``i_out`` in 0.1 V / 0.1 A): what its
  decisions at ``t`` were based on (CCS at ``t`` reports exactly these).
"""
from __future__ import annotations

import json
from pathlib import Path

import can
import pytest

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.scenario import Scenario
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, Simulation
# task periods from the firmware's schema source (appcore.py, rt/scheduler.py)
from host_tools.benchlib.figures import schema_default

ROOT = Path(__file__).resolve().parents[2]


CHARGER = 0x56
BMS = 0xF4
STEP = 10                                   # SIL lock-step, ms
TICK = schema_default("sched.session_ms")   # session tick (offset 1 ms), ms
PROTECT_MS = schema_default("sched.protect_ms")   # input read + output write (offset 0)
CAN_MS = schema_default("sched.can_ms")     # CAN receive task (offset 0)
# A frame stamped at a step boundary reaches the firmware in the next step; the
# CAN task that runs exactly at the boundary belonged to the previous step, so
# the first CAN task to see it runs CAN_MS later.
RX_LAT = CAN_MS
# An output the session changes at its tick (t = 10 k + 1) is written by the
# next protection task.
OUT_LAT = -(-1 // PROTECT_MS) * PROTECT_MS - 1

PGN = {
    "CHM": 0x2600, "BHM": 0x2700, "CRM": 0x0100, "BRM": 0x0200, "BCP": 0x0600,
    "CTS": 0x0700, "CML": 0x0800, "BRO": 0x0900, "CRO": 0x0A00, "BCL": 0x1000,
    "BCS": 0x1100, "CCS": 0x1200, "BSM": 0x1300, "BMV": 0x1500, "BMT": 0x1600,
    "BSP": 0x1700, "BST": 0x1900, "CST": 0x1A00, "BSD": 0x1C00, "CSD": 0x1D00,
    "BEM": 0x1E00, "CEM": 0x1F00, "TPCM": 0xEC00, "TPDT": 0xEB00,
}
PRIO = {"CHM": 6, "BHM": 6, "CRM": 6, "BRM": 7, "BCP": 7, "CTS": 6, "CML": 6, "BRO": 4,
        "CRO": 4, "BCL": 6, "BCS": 7, "CCS": 6, "BSM": 6, "BMV": 7, "BMT": 7, "BSP": 7,
        "BST": 4, "CST": 4, "BSD": 6, "CSD": 6, "BEM": 2, "CEM": 2, "TPCM": 7, "TPDT": 7}

# CEM images (spec 3, CEM; fills 0xFC 0xF0 0xC0 0xFC)
CEM = {
    "BRM": bytes.fromhex("fdf0c0fc"), "BCP": bytes.fromhex("fcf1c0fc"),
    "BRO": bytes.fromhex("fcf4c0fc"), "BCS": bytes.fromhex("fcf0c1fc"),
    "BCL": bytes.fromhex("fcf0c4fc"), "BST": bytes.fromhex("fcf0d0fc"),
    "BSD": bytes.fromhex("fcf0c0fd"),
}
# CST images for the stop causes the suite provokes (spec 3, CST)
CST_BMS = bytes.fromhex("4000f0f0")
CST_CONDITION = bytes.fromhex("0100f0f0")
CST_FAULT_OTHER = bytes.fromhex("1000f4f0")
CST_FAULT_OTHER_I = bytes.fromhex("1000f4f1")
CST_FAULT_OTHER_V = bytes.fromhex("1000f4f4")
CST_CONNECTOR = bytes.fromhex("1004f0f0")

# The charger's rating (firmware defaults, config.py) and its CML image.
RATING = {"max_v": 7500, "min_v": 2000, "max_i": 2000, "min_i": 0}

# A small pack: charging is reached in ~3 s of simulated time and, from 50 %,
# runs in constant current for about a minute (then the pack heats up enough
# for the supervisor's S-11 rise-rate check).  The normal session starts near
# its target instead (80 -> 81 %, ~14 s of charging).
SMALL_PACK = {"capacity_ah": 20, "cells": 96, "soc": 50, "target_soc": 90}


def ms(msg: can.Message) -> int:
    return int(round(msg.timestamp * 1000))


def pgn_of(cid: int) -> int:
    pf = (cid >> 16) & 0xFF
    return pf << 8 if pf < 240 else (cid >> 8) & 0xFFFF


def data(msg: can.Message) -> bytes:
    return bytes(msg.data[:msg.dlc])


def gaps(frames) -> list[int]:
    t = [ms(f) for f in frames]
    return [b - a for a, b in zip(t, t[1:])]


def can_id(name: str, sa: int = BMS, da: int = CHARGER) -> int:
    return (PRIO[name] << 26) | (PGN[name] << 8) | (da << 8) | sa      # PDU1 (every GB/T PGN)


class Bench:
    """One charger (firmware on the SIL) + plant + optional BMS simulator."""

    def __init__(self, tmp: Path, params: dict | None = None, scenario=None,
                 config: dict | None = None, bms: bool = True, state: str = "state"):
        pp = dict(SMALL_PACK)
        pp.update(params or {})
        self.params = p = BmsParams(**{k: v for k, v in pp.items() if k != "timeouts"}).resolved()
        self.pack = BatteryPack(p.chemistry, p.capacity_ah, p.cells, p.soc, p.resistance_ohm,
                                p.soc_spread_pct, p.capacity_spread_pct, p.seed, p.ambient_c,
                                p.temp_c, p.probes)
        self.plant = Plant(self.pack)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        cfg_path = None
        self.config = dict(config or {})
        if config:
            cfg_path = str(Path(tmp) / "charger_config.json")
            Path(cfg_path).write_text(json.dumps(config))
        self.sim = Simulation(step_ms=10, plant=self.plant, config=cfg_path,
                              state_dir=str(Path(tmp) / state))
        self.frames: list[can.Message] = []
        self.meas: dict[int, tuple] = {}
        self.sim.hub.listeners.append(self.frames.append)
        self.sim.step_hooks.append(self._record)
        self._raw = None
        self.bms = None
        if bms:
            if isinstance(scenario, (list, tuple)):
                scenario = {"name": "conformance", "action": list(scenario)}
            scn = Scenario.from_dict(scenario) if isinstance(scenario, dict) else scenario
            self.bms = BmsSimulator(self.sim.bus(), p, pack=self.pack, scenario=scn,
                                    drive_pack=False)
            self.sim.step_hooks.append(self.bms.poll)

    # -- running -------------------------------------------------------------
    def _record(self, now: int) -> None:
        s = self.sim.sent_inputs
        self.meas[now - self.sim.step_ms] = (s.get("v_inside", 0), s.get("v_outside", 0),
                                             s.get("i_out", 0))

    @property
    def now(self) -> int:
        return self.sim.now_ms

    def run_for(self, t_ms: int) -> None:
        self.sim.run_for(t_ms)

    def run_until(self, pred, timeout_ms: int, what: str = "condition") -> None:
        if not self.sim.run_until(pred, timeout_ms):
            raise AssertionError("timeout after %d ms waiting for %s; stages %s" % (
                timeout_ms, what, self.stages()))

    def run_to_stage(self, name: str, timeout_ms: int = 30000, after: int = -1) -> int:
        """Run until the firmware reports stage ``name`` (entered after ``after``);
        returns the entry time."""
        self.run_until(lambda: self.stage_t(name, after) is not None, timeout_ms,
                       "stage %s" % name)
        return self.stage_t(name, after)

    def run_until_tx(self, name: str, timeout_ms: int, pred=None, after: int = -1) -> can.Message:
        self.run_until(lambda: self.first(name, after=after, pred=pred) is not None,
                       timeout_ms, "charger %s" % name)
        return self.first(name, after=after, pred=pred)

    def close(self) -> None:
        self.sim.close()

    # -- raw frames from the BMS address -----------------------------------
    @property
    def raw(self) -> can.BusABC:
        if self._raw is None:
            self._raw = self.sim.bus()
        return self._raw

    def send(self, name: str, payload: bytes, cid: int | None = None) -> None:
        """Put one frame on the bus from the BMS (0xF4) to the charger."""
        self.raw.send(can.Message(arbitration_id=cid if cid is not None else can_id(name),
                                  data=bytes(payload), is_extended_id=True))
        # the raw bus would otherwise queue every frame of the session
        while self.raw.recv(timeout=0) is not None:
            pass

    # -- the recorded bus ------------------------------------------------------
    def tx(self, name: str, after: int = -1, before: int | None = None) -> list[can.Message]:
        """Charger -> BMS frames of message ``name`` (PGN), time-ordered."""
        return self._sel(CHARGER, BMS, name, after, before)

    def rx(self, name: str, after: int = -1, before: int | None = None) -> list[can.Message]:
        """BMS -> charger frames of message ``name``."""
        return self._sel(BMS, CHARGER, name, after, before)

    def _sel(self, sa, da, name, after, before):
        pgn = PGN[name]
        out = []
        for f in self.frames:
            cid = f.arbitration_id
            if (cid & 0xFF) != sa or pgn_of(cid) != pgn:
                continue
            if pgn >> 8 < 240 and ((cid >> 8) & 0xFF) not in (da, 0xFF):
                continue
            t = ms(f)
            if t > after and (before is None or t < before):
                out.append(f)
        return out

    def first(self, name: str, after: int = -1, pred=None, sender: str = "C"):
        frames = self.tx(name, after) if sender == "C" else self.rx(name, after)
        for f in frames:
            if pred is None or pred(data(f)):
                return f
        return None

    def first_t(self, name: str, after: int = -1, pred=None, sender: str = "C") -> int | None:
        f = self.first(name, after, pred, sender)
        return None if f is None else ms(f)

    def tp_cm(self, after: int = -1, before: int | None = None) -> list[bytes]:
        """The charger's TP.CM frames (CTS / EndOfMsgAck / Abort) as bytes."""
        return [data(f) for f in self.tx("TPCM", after, before)]

    # -- firmware reports and outputs -----------------------------------------
    def stages(self) -> list[tuple[int, str]]:
        return [(t, s.split(" ", 1)[1]) for t, s in self.sim.texts if s.startswith("stage ")]

    def stage_t(self, name: str, after: int = -1) -> int | None:
        for t, s in self.stages():
            if s == name and t > after:
                return t
        return None

    def texts(self, kind: str) -> list[tuple[int, str]]:
        return [(t, s.split(" ", 1)[1]) for t, s in self.sim.texts if s.startswith(kind + " ")]

    def out_at(self, name: str, t: int) -> int:
        return self.sim.output_at(name, t)

    def first_change(self, name: str, value: int, after: int = 0) -> int | None:
        return self.sim.first_change(name, value, after)

    def changes(self, name: str) -> list[tuple[int, int]]:
        return [(c.t_ms, c.value) for c in self.sim.output_log if c.name == name]

    def meas_at(self, t: int) -> dict:
        """The plant measurements the firmware had at time ``t``: its
        protection task reads the inputs every PROTECT_MS; a read at a step
        boundary belongs to the step that ends there.  For an output change
        at ``t`` the session decided at ``t - OUT_LAT``."""
        p = t - (t % PROTECT_MS)                  # the last input read at or before t
        k = (p - 1) // self.sim.step_ms * self.sim.step_ms
        vi, vo, i = self.meas[k]
        return {"v_inside": vi, "v_outside": vo, "i_out": i}

    def plant_i(self, t: int) -> int:
        """The real output current (0.1 A) on the cable at ``t`` (plant state
        of the step containing ``t``), not the firmware's view of it."""
        return self.meas[t // self.sim.step_ms * self.sim.step_ms][2]

    def i_at(self, t: int) -> int:
        """Measured output current (0.1 A) the firmware had at ``t``."""
        return self.meas_at(t)["i_out"]


@pytest.fixture
def bench(tmp_path):
    """Factory: ``b = bench(params=..., scenario=..., config=...)``; closed after the test."""
    made = []

    def make(**kw):
        b = Bench(tmp_path / ("b%d" % len(made)), **kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.close()


def full_session(tmp: Path, **kw) -> Bench:
    """A complete session (to the BMS simulator's ``done``, then 2 s more)."""
    b = Bench(tmp, **kw)
    b.run_until(lambda: b.bms.done, 120000, "BMS simulator done")
    b.run_for(2000)
    return b


# The normal session every DP case of stages 1-4 reads (run once per test run).
NORMAL_CONFIG = {"charger.id": 0x12345678, "charger.region": "ABC"}
CHARGER_NO = bytes.fromhex("78563412")


@pytest.fixture(scope="session")
def normal(tmp_path_factory):
    """A complete, undisturbed session: small pack 80 -> 81 % SOC, the BMS
    stops with BST (SOC reached), statistics, aux off, unlock."""
    b = full_session(tmp_path_factory.mktemp("normal"), params={"soc": 80, "target_soc": 81},
                     config=NORMAL_CONFIG)
    yield b
    b.close()


@pytest.fixture(scope="session")
def one_minute(tmp_path_factory):
    """A charger-initiated stop: ``session.target_wh`` = 1200 ends the charge
    after ~75 s of charging at the 60 kW rating (CST "condition reached"); the
    BMS answers with BST, statistics follow.  Covers minute 0 -> 1 in CCS."""
    b = full_session(tmp_path_factory.mktemp("one_minute"),
                     params={"capacity_ah": 100, "soc": 50, "target_soc": 90},
                     config=dict(NORMAL_CONFIG, **{"session.target_wh": 1200}))
    yield b
    b.close()
