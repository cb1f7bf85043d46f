"""One simulated charging session with firmware statistics per stage.

Every figure is measured *inside* the firmware process: the scheduler's
per-task ``total_us``/``wcet_us`` and the SIL board's ``loop_us`` (real
microseconds from ``time.ticks_us`` around ``sched.next_due`` +
``run_due``), read through the SIL link's STATS packet
(docs/sil-link.md).  The harness only decides *when* to read them: at each
stage change (``stage ...`` TEXT event), with reset, so each snapshot
covers exactly one stage group.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, Simulation

# Stage groups of the figures.  "handshake" = plug to CRO 0xAA (connected ..
# precharge), "charging" = the charging stage, "end" = stopping .. unlock.
GROUP_OF = {"idle": "handshake", "connected": "handshake", "locking": "handshake",
            "handshake": "handshake", "insulation": "handshake",
            "recognition": "handshake", "parameter": "handshake",
            "precharge": "handshake", "charging": "charging",
            "rehandshake": "end", "stopping": "end", "statistics": "end",
            "finish": "end", "done": "done"}
GROUPS = ("handshake", "charging", "end")


def small_params(**kw) -> BmsParams:
    """A short session (about 20-40 s simulated): 20 Ah, 96 cells, 80 -> 81 %."""
    a = dict(capacity_ah=20, cells=96, soc=80, target_soc=81)
    a.update(kw)
    return BmsParams(**a).resolved()


def write_config(d: Path, cfg: dict | None) -> Optional[str]:
    if not cfg:
        return None
    p = Path(d) / "bench_config.json"
    p.write_text(json.dumps(cfg))
    return str(p)


@dataclass
class StageStats:
    sim_ms: int = 0            # simulated time covered
    cpu_us: int = 0            # board loop_us: next_due + run_due
    task_us: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    alloc: dict = field(default_factory=dict)
    wcet_us: dict = field(default_factory=dict)
    pass_wcet_us: int = 0
    passes: int = 0
    rx_frames: int = 0
    rx_overruns: int = 0
    overruns: int = 0

    def add(self, st: dict, sim_ms: int) -> None:
        self.sim_ms += sim_ms
        self.cpu_us += st["loop_us"]
        self.pass_wcet_us = max(self.pass_wcet_us, st["pass_wcet_us"])
        self.passes += st["passes"]
        self.rx_frames += st["rx_frames"]
        self.rx_overruns += st["rx_overruns"]
        for name, t in st["tasks"].items():
            self.task_us[name] = self.task_us.get(name, 0) + t["total_us"]
            self.runs[name] = self.runs.get(name, 0) + t["runs"]
            self.alloc[name] = self.alloc.get(name, 0) + t["alloc_bytes"]
            self.wcet_us[name] = max(self.wcet_us.get(name, 0), t["wcet_us"])
            self.overruns += t["overruns"]


@dataclass
class SessionResult:
    ok: bool
    why: str
    sim_ms: int
    wall_s: float
    stages: dict                 # group -> StageStats
    texts: list
    rx_frames_total: int = 0
    bye: object = None
    flood_frames: int = 0
    # (group, t_start_ms, t_end_ms, stats): every snapshot interval in order;
    # charging is cut into ``interval_ms`` slices so that steady charging
    # (without the stage changes at either end) can be told apart
    intervals: list = field(default_factory=list)
    # simulated ms of the "stage locking" text: the session in progress
    # (lock, aux supply, power path) from here to "stage done"; a snapshot
    # is taken there, so no interval straddles it (None: never reached)
    session_from_ms: Optional[int] = None

    def in_session(self) -> list:
        """Intervals from the lock to the end of the session (LOCKING ..
        FINISH): where a late protection tick could matter."""
        if self.session_from_ms is None:
            return []
        return [x for x in self.intervals
                if x[1] >= self.session_from_ms and x[0] in GROUPS]

    def steady(self, group: str = "charging") -> list:
        """Intervals of ``group`` without the first and the last one (the
        last one holds the stage change out of it)."""
        iv = [x for x in self.intervals if x[0] == group]
        return iv[1:-1]


class Flood:
    """Extra bus load from the harness: ``rate`` frames per simulated second,
    spread over the steps (fractional accumulation), drawn round-robin from
    ``frames`` (a list of (can_id, bytes))."""

    def __init__(self, sim: Simulation, rate: float, frames: list, start: Callable[[], bool]):
        self.sim, self.rate, self.frames, self.start = sim, rate, frames, start
        self.acc = 0.0
        self.k = 0
        self.sent = 0
        self.bus = sim.bus()
        # frames given with data None replay the latest payload seen on the
        # bus under that id (the BMS simulator's own BCL/BSM)
        self.latest = {cid: None for cid, d in frames if d is None}
        if self.latest:
            sim.hub.listeners.append(self._watch)

    def _watch(self, msg) -> None:
        if msg.arbitration_id in self.latest:
            self.latest[msg.arbitration_id] = bytes(msg.data)

    def __call__(self, now_ms: int) -> None:
        if not self.start():
            return
        self.acc += self.rate * self.sim.step_ms / 1000.0
        import can
        skipped = 0
        while self.acc >= 1.0 and skipped < len(self.frames):
            cid, data = self.frames[self.k % len(self.frames)]
            self.k += 1
            if data is None:
                data = self.latest[cid]
                if data is None:        # not seen yet: skip this one
                    skipped += 1
                    continue
            skipped = 0
            self.acc -= 1.0
            self.bus.send(can.Message(arbitration_id=cid, data=data, is_extended_id=True))
            self.sent += 1


def run_session(cfg: dict | None = None, params: BmsParams | None = None,
                heapsize: str | None = None, firmware_dir: Path | None = None,
                step_ms: int = 10, max_ms: int = 300_000, snapshots: bool = True,
                interval_ms: int = 1000,
                flood_rate: float = 0.0, flood_frames: list | None = None,
                on_step: Callable | None = None, target: str = "unix",
                image: Path | None = None, sim_kw: dict | None = None) -> SessionResult:
    """Run plug -> unlock with the BMS simulator.  ``ok`` = the BMS simulator
    finished, the firmware reached ``done`` and never fell into fail-safe.
    ``sim_kw``: more arguments for ``Simulation`` (e.g. ``qemu_files``)."""
    params = params or small_params()
    pack = BatteryPack(params.chemistry, params.capacity_ah, params.cells, params.soc)
    plant = Plant(pack)
    with tempfile.TemporaryDirectory(prefix="bench_") as td:
        cfg_path = write_config(Path(td), cfg)
        t0 = time.perf_counter()
        sim = Simulation(step_ms=step_ms, plant=plant, config=cfg_path, heapsize=heapsize,
                         firmware_dir=firmware_dir, state_dir=os.path.join(td, "state"),
                         target=target, image=image, **(sim_kw or {}))
        stages = {g: StageStats() for g in GROUPS}
        group = "handshake"
        t_mark = 0
        t_cut = 0
        intervals = []
        ok, why = False, "timeout"
        flood = None
        session_from = None
        try:
            bms = BmsSimulator(sim.bus(), params, pack=pack, drive_pack=False)
            sim.step_hooks.append(bms.poll)
            if flood_rate:
                flood = Flood(sim, flood_rate, flood_frames or [],
                              start=lambda: group == "charging")
                sim.step_hooks.append(flood)
            if snapshots:
                sim.stats(reset=True)
            n = 0
            while sim.now_ms < max_ms:
                sim.step()
                if on_step:
                    on_step(sim)
                new = sim.texts[n:]
                n = len(sim.texts)
                changed = None
                cut = False
                for _, txt in new:
                    if txt.startswith("fail-safe"):
                        why = txt
                        raise RuntimeError(txt)
                    if txt == "stage locking" and session_from is None:
                        session_from = sim.now_ms
                        cut = True
                    if txt.startswith("stage "):
                        g = GROUP_OF.get(txt.split()[1], group)
                        if g != group:
                            changed = g
                if snapshots and (changed or cut or (group == "charging" and
                                                     sim.now_ms - t_cut >= interval_ms)):
                    st = sim.stats(reset=True)
                    intervals.append((group, t_cut, sim.now_ms, st))
                    if group in stages:
                        stages[group].add(st, sim.now_ms - t_cut)
                    t_cut = sim.now_ms
                if changed:
                    group, t_mark = changed, sim.now_ms
                if group == "done" and bms.done:
                    ok, why = True, "done"
                    break
                if sim.bye is not None:
                    why = "firmware exited: %s" % (sim.bye,)
                    break
        except (RuntimeError, ConnectionError, TimeoutError, OSError) as e:
            ok = False
            why = why if why != "timeout" else "%s: %s" % (type(e).__name__, e)
        finally:
            wall = time.perf_counter() - t0
            try:
                sim.close()
            except Exception:
                pass
        if ok and sim.output_log and sim.outputs.get("lock", 0) != 0:
            ok, why = False, "gun still locked at the end"
        return SessionResult(ok, why, sim.now_ms, wall, stages, list(sim.texts),
                             bye=sim.bye, flood_frames=flood.sent if flood else 0,
                             intervals=intervals, session_from_ms=session_from)
