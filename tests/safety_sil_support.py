"""Shared helpers for the SIL-level safety tests (tests/test_safety_sil_*.py).

Everything here drives the real firmware process through the lock-step SIL
(``host_tools.sil.Simulation``) with the CAN BMS simulator
(``host_tools.bms.BmsSimulator``) as the vehicle: deviations come from BMS
scenario actions (field overrides of BCL/BCS/BSM/BMV...), from plant
measurement overrides (``sim.override``) and from the plant's attributes,
never from calls into the safety units.

What the tests read back, all in simulated milliseconds:

* ``Bench.safety()``: the supervisor's events as the firmware reports them
  ("safety <t> ms <kind> <name> L<level> value=<v>"; ``t`` is the
  firmware's clock at the event, not the time the text was sent);
* ``sim.output_log``: every output change with its firmware time;
* ``Bench.vphys``: the plant's *physical* gun voltage per step (overrides
  only change what the firmware measures, not this);
* ``Bench.eoma``: when the charger acknowledged (EndOfMsgAck) each
  multi-packet BMS message, i.e. when a TP message's content reached the
  decoder;
* ``Console``: the firmware's own console (raw REPL over a pty, polled by
  the firmware's scheduler in lock-step) to read ``check_diag`` and
  ``start_allowed`` exactly as a field engineer would.
"""
from __future__ import annotations

import json
import os
import re
import select
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.scenario import Scenario
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, Simulation
from host_tools.sil.plant import PlantParams

EPOCH = 1767225600            # boards/unix/main.py default: 2026-01-01 00:00 UTC
VIN_A = "LSIMBMS0000000001"   # BmsParams default
VIN_B = "LSIMBMS0000000002"

# A pack that charges at a steady CC current for minutes: 150 Ah LFP, 96
# cells (~325 V), BCP max 100 A, CC demand 98 A (98 % of BCP: S-1 quiet).
BASE_PARAMS = dict(chemistry="LFP", capacity_ah=150, cells=96, soc=50, target_soc=90,
                   max_current_a=100.0, request_current_a=98.0)

CHECK_TICK_MS = 100           # sched.checks_ms default
PERSIST_MS = 5000             # risk.persist_ms default
RELEASE_MS = 10000            # risk.release_ms default

_EV = re.compile(r"^safety (-?\d+) ms (\S+) (.+?) L(\d+) value=(-?\d+)$")
_TPCM = 0xEC00


def params(**kw) -> BmsParams:
    d = dict(BASE_PARAMS)
    d.update(kw)
    return BmsParams(**d).resolved()


def scenario(*actions: Dict[str, Any], name: str = "sil-safety") -> Scenario:
    """A scenario from action dicts (same keys as a scenario TOML file)."""
    return Scenario.from_dict({"name": name, "action": list(actions)})


def write_config(path: Path, cfg: Optional[Dict[str, Any]]) -> Optional[str]:
    if isinstance(cfg, Path):
        return str(cfg)             # a file to use as it is
    if not cfg:
        return None
    path.write_text(json.dumps(cfg))
    return str(path)


def all_levels(level: int) -> Dict[str, int]:
    return {"risk.level.s%d" % i: level for i in range(1, 14)}


class Console:
    """The firmware's console on a pseudo-terminal, driven in lock-step.

    ``exec(code)`` enters raw REPL once, sends the code, steps the
    simulation until the answer is complete and returns (stdout, stderr)."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        self.sim: Optional[Simulation] = None
        self.buf = b""
        self.raw = False

    def _read(self):
        while True:
            r, _, _ = select.select([self.master], [], [], 0)
            if not r:
                return
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.buf += chunk

    def _until(self, pred: Callable[[], bool], max_steps: int) -> None:
        for _ in range(max_steps):
            self._read()
            if pred():
                return
            self.sim.step()
        self._read()
        if not pred():
            raise AssertionError("console: no answer; got %r" % self.buf[-300:])

    def enter_raw(self):
        self.buf = b""
        os.write(self.master, b"\r\x03\x03\x01")
        self._until(lambda: b"raw REPL; CTRL-B to exit\r\n>" in self.buf, 300)
        self.buf = b""
        self.raw = True

    def exec(self, code: str, max_steps: int = 300):
        if not self.raw:
            self.enter_raw()
        self.buf = b""
        os.write(self.master, code.encode() + b"\x04")
        self._until(lambda: self.buf.startswith(b"OK") and self.buf.count(b"\x04") >= 2
                    and self.buf.endswith(b"\x04>"), max_steps)
        body = self.buf[2:]
        out, err = body.split(b"\x04")[:2]
        self.buf = b""
        return out.decode(errors="replace").strip(), err.decode(errors="replace").strip()

    def eval(self, expr: str):
        out, err = self.exec("print(repr(%s))" % expr)
        if err:
            raise AssertionError("console error: %s" % err)
        import ast
        return ast.literal_eval(out)

    def close(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Bench:
    """One firmware process + plant + BMS simulator (one vehicle session).

    ``state_dir`` holds safety.rec: reuse it for a reboot.  ``config`` is a
    dict of firmware configuration overrides (written to a JSON file)."""

    def __init__(self, state_dir: Path, p: Optional[BmsParams] = None, scen: Optional[Scenario] = None,
                 config: Optional[Dict[str, Any]] = None, step_ms: int = 10, epoch_s: Optional[int] = None,
                 console: bool = False, plant_params: Optional[PlantParams] = None, tag: str = "cfg",
                 firmware_dir: Optional[Path] = None, target: Optional[str] = None):
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.p = p or params()
        self.pack = self._pack(self.p)
        self.plant = Plant(self.pack, plant_params)
        if console and isinstance(config, dict):
            # a loaded machine must not make the console drop output (20 ms default)
            config = dict(config)
            config.setdefault("console.tx_timeout_ms", 1000)
        cfg_path = write_config(state_dir.parent / ("%s-%s.json" % (state_dir.name, tag)), config)
        self.console = Console() if console else None
        self.sim = Simulation(step_ms=step_ms, plant=self.plant, config=cfg_path, state_dir=str(state_dir),
                              console_fd=self.console.slave if console else None, epoch_s=epoch_s,
                              firmware_dir=firmware_dir, target=target)
        if self.console:
            self.console.sim = self.sim
        self.vphys: List[tuple] = []          # (t_ms, plant v_out V, v_in V, i A, K1/K2 closed)
        self.eoma: Dict[int, List[int]] = {}  # PGN -> times the charger acknowledged it
        self.frames: List[tuple] = []         # (t_ms, can id, data) of every frame
        self.sim.hub.listeners.append(self._on_frame)
        self.sim.step_hooks.append(self._record)
        self.bms: Optional[BmsSimulator] = None
        self.new_bms(self.p, scen)

    @staticmethod
    def _pack(p: BmsParams) -> BatteryPack:
        return BatteryPack(p.chemistry, p.capacity_ah, p.cells, p.soc, p.resistance_ohm, p.soc_spread_pct,
                           p.capacity_spread_pct, p.seed, p.ambient_c, p.temp_c, p.probes)

    def new_bms(self, p: Optional[BmsParams] = None, scen: Optional[Scenario] = None) -> BmsSimulator:
        """A fresh BMS (a new vehicle session) on the same bus and pack."""
        if self.bms is not None and self.bms.poll in self.sim.step_hooks:
            self.sim.step_hooks.remove(self.bms.poll)
        self.bms = BmsSimulator(self.sim.bus(), p or self.p, pack=self.pack, scenario=scen, drive_pack=False)
        self.sim.step_hooks.append(self.bms.poll)
        return self.bms

    def replug(self, p: Optional[BmsParams] = None, scen: Optional[Scenario] = None, out_ms: int = 1500):
        """Unplug for ``out_ms``, plug a new vehicle session in."""
        self.plant.plugged = False
        self.run(out_ms)
        self.plant.reset_vehicle()
        self.plant.plugged = True
        return self.new_bms(p, scen)

    # -- recording --------------------------------------------------------
    def _on_frame(self, msg) -> None:
        t = int(round(msg.timestamp * 1000))
        cid = msg.arbitration_id
        d = bytes(msg.data)
        self.frames.append((t, cid, d))
        # EndOfMsgAck from the charger (0x56) to the BMS: control byte 0x13
        if cid & 0xFF == 0x56 and (cid >> 8) & 0xFF00 == _TPCM and len(d) == 8 and d[0] == 0x13:
            pgn = d[5] | (d[6] << 8) | (d[7] << 16)
            self.eoma.setdefault(pgn, []).append(t)

    def _record(self, now: int) -> None:
        pl = self.plant
        self.vphys.append((now, pl.v_out, pl.v_in, pl.i, pl.k12))

    # -- driving ----------------------------------------------------------
    @property
    def now(self) -> int:
        return self.sim.now_ms

    def run(self, ms: int) -> None:
        self.sim.run_for(ms)

    def run_until(self, pred: Callable[[], bool], timeout_ms: int) -> bool:
        return self.sim.run_until(pred, timeout_ms)

    def stage_time(self, stage: str, after: int = 0) -> Optional[int]:
        for t, s in self.sim.texts:
            if t >= after and s == "stage " + stage:
                return t
        return None

    def wait_stage(self, stage: str, timeout_ms: int = 15000, after: int = 0) -> int:
        ok = self.run_until(lambda: self.stage_time(stage, after) is not None, timeout_ms)
        assert ok, "stage %s not reached; texts: %s" % (stage, self.sim.texts[-15:])
        return self.stage_time(stage, after)

    def wait_charging(self, timeout_ms: int = 15000) -> int:
        """Both ends in the charging stage; returns the BMS's entry time
        (the anchor of scenario windows with ``stage = "charging"``)."""
        self.wait_stage("charging", timeout_ms, after=self.now)
        ok = self.run_until(lambda: "charging" in self.bms.stage_entry, 1000)
        assert ok, "BMS did not enter charging"
        return self.bms.stage_entry["charging"]

    def texts(self, prefix: str) -> List[tuple]:
        return [(t, s) for t, s in self.sim.texts if s.startswith(prefix)]

    def safety(self, kind: Optional[str] = None, ident: Optional[str] = None) -> List[tuple]:
        """[(t_ms, kind, name, level, value)] of the firmware's safety events;
        ``ident`` like "S-1" or "H-3" matches the start of the name."""
        out = []
        for _, s in self.sim.texts:
            m = _EV.match(s)
            if not m:
                continue
            t, k, name, lv, v = int(m.group(1)), m.group(2), m.group(3), int(m.group(4)), int(m.group(5))
            if kind is not None and k != kind:
                continue
            if ident is not None and not (name == ident or name.startswith(ident + " ")):
                continue
            out.append((t, k, name, lv, v))
        return out

    def first_event(self, kind: str, ident: str, after: int = 0) -> Optional[int]:
        for e in self.safety(kind, ident):
            if e[0] >= after:
                return e[0]
        return None

    def sent(self, name: str, after: int = 0) -> List[int]:
        """Times the BMS simulator sent single-frame message ``name``."""
        from host_tools.bms import codec
        pgn = codec.MESSAGES[name].pgn
        return [t for t, cid, _ in self.frames
                if t >= after and cid & 0xFF == 0xF4 and (cid >> 8) & 0x3FF00 == pgn]

    def acked(self, name: str, after: int = 0) -> List[int]:
        """Times the charger completed (EndOfMsgAck) TP message ``name``."""
        from host_tools.bms import codec
        return [t for t in self.eoma.get(codec.MESSAGES[name].pgn, []) if t >= after]

    def out_change(self, name: str, value: int, after: int = 0) -> Optional[int]:
        return self.sim.first_change(name, value, after)

    def v_below(self, volts: float, after: int) -> Optional[int]:
        """First step time >= after when the physical gun voltage < volts."""
        for t, v, _, _, _ in self.vphys:
            if t >= after and v < volts:
                return t
        return None

    def stuck_estop(self):
        """E-stop mid-charge while the measured current stays at 200 A (the
        power stage not responding).  Returns (t0, the time K1/K2 were
        commanded open, the time the plant's contacts were apart)."""
        self.wait_charging()
        assert self.run_until(lambda: self.plant.i > 95, 10000)
        t0 = self.fine_steps(1)
        self.sim.override("i_out", 2000)
        self.sim.override("estop", 1)
        self.run(150)
        return t0, self.out_change("k12", 0, t0), self.plant_k12_open(t0)

    def plant_k12_open(self, after: int) -> Optional[int]:
        """First time >= after when the plant's K1/K2 contacts are physically
        open (the plant's own log of contact changes; if they were open
        already, the first recorded step)."""
        for t, closed in self.plant.k12_log:
            if t >= after and not closed:
                return t
        for t, _, _, _, k in self.vphys:
            if t >= after and not k:
                return t
        return None

    def fine_steps(self, step_ms: int = 1) -> int:
        """Switch the lock-step to ``step_ms`` and stop at an odd ms (between
        two 2 ms protection ticks); returns the time."""
        self.sim.step_ms = step_ms
        while self.now % 2 == 0:
            self.sim.step()
        return self.now

    def close(self) -> None:
        try:
            self.sim.close()
        finally:
            if self.console:
                self.console.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def action_of(bms: BmsSimulator, index: int):
    """The live Action object (its ``opts["fields"]`` may be edited while
    the session runs, to make a ramp)."""
    return bms.scenario.actions[index]
