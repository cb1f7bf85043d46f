"""The SIL harness: firmware process + plant + CAN hub, in lock-step or real time.

Lock-step (``Simulation``): the harness owns time.  Each step it applies the
plant's measurements, hands queued bus frames to the firmware, and sends
STEP(t + dt); the firmware runs every task due up to that time and answers
ACK.  A simulated hour runs in seconds, and two runs with the same inputs
produce the same bytes at the same simulated milliseconds.

Real time (``RealtimeBench``): the firmware runs on its wall clock; the
harness forwards frames and measurements as they happen and serves the bus
to other processes on loopback (``HubServer``), so a BMS simulator we did
not write, a logger or ``python -m can.viewer`` can join.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import can

from . import link as L
from .hub import HubServer, close_hub, open_hub
from .plant import Plant

_names = itertools.count(1)


@dataclass
class OutputChange:
    t_ms: int
    name: str
    value: int


class _Base:
    def _setup(self, plant: Plant | None):
        self.plant = plant or Plant()
        self.outputs = {n: 0 for n in L.OUTPUT_NAMES}
        self.outputs["bleed"] = 1
        self.output_log: list[OutputChange] = []
        self.texts: list[tuple[int, str]] = []
        self.telemetry: list[tuple[int, bytes]] = []
        self.sent_inputs: dict[str, int] = {}
        self.overrides: dict[str, int] = {}
        self.bye: tuple[int, str] | None = None
        self.plug_listeners: list[Callable[[bool], None]] = []
        self.hub.listeners.append(self.plant.on_frame)

    def _frame_time(self, t_ms: int) -> float:
        return t_ms / 1000.0

    # -- the connector -------------------------------------------------------
    def plug(self) -> None:
        """Plug the vehicle in (CC1 connected): the charger starts a session.
        Also the SIL console's ``plug()`` (a ``bench plug`` TEXT)."""
        if not self.plant.plugged:
            self.plant.reset_vehicle()
            self.plant.plugged = True
            for fn in self.plug_listeners:
                fn(True)

    def unplug(self) -> None:
        """Pull the connector (CC1 open): the charger ends the session.
        Also the SIL console's ``unplug()``."""
        if self.plant.plugged:
            self.plant.plugged = False
            for fn in self.plug_listeners:
                fn(False)

    @property
    def plugged(self) -> bool:
        return self.plant.plugged

    def override(self, name: str, value: int) -> None:
        """Force a measurement (fault injection): wins over the plant."""
        if name not in L.INPUT_NAMES:
            raise KeyError(name)
        self.overrides[name] = int(value)

    def release(self, name: str) -> None:
        self.overrides.pop(name, None)

    def _handle(self, p: L.Packet) -> bool:
        """Apply one packet from the firmware; True for ACK."""
        if p.type == L.T_FRAME_OUT:
            t_ms, cid, data = L.decode_frame(p)
            self.hub.from_firmware(self._frame_time(t_ms), cid, data)
        elif p.type == L.T_OUTPUT:
            t_ms, idx, val = L.decode_output(p)
            name = L.OUTPUT_NAMES[idx]
            self.outputs[name] = val
            self.output_log.append(OutputChange(t_ms, name, val))
        elif p.type == L.T_TEXT:
            t_ms, text = L.decode_text(p)
            self.texts.append((t_ms, text))
            if text == "bench plug":
                self.plug()
            elif text == "bench unplug":
                self.unplug()
        elif p.type == L.T_TELEMETRY:
            t_ms = int.from_bytes(p.payload[:4], "little")
            self.telemetry.append((t_ms, p.payload[4:]))
        elif p.type == L.T_BYE:
            self.bye = (p.payload[0], p.payload[1:].decode(errors="replace"))
        elif p.type == L.T_STATS_OUT:
            t_ms, idx, d = L.decode_stats(p)
            if idx == 0xFF:
                self._stats = dict(d, t_ms=t_ms, tasks={})
            elif getattr(self, "_stats", None) is not None:
                self._stats["tasks"][d.pop("name")] = d
        elif p.type == L.T_ACK:
            return True
        return False

    def _input_packets(self, vals: dict) -> bytes:
        ov = self.overrides
        sent = self.sent_inputs
        out = bytearray()
        for i, n in enumerate(L.INPUT_NAMES):
            v = int(ov[n]) if n in ov else int(vals.get(n, 0))
            if sent.get(n) != v:
                sent[n] = v
                out += L.pk_input(i, v)
        return bytes(out)

    def _send_inputs(self, vals: dict) -> None:
        out = self._input_packets(vals)
        if out:
            self.fw.send(out)

    def inject_exception(self, code: int = 1) -> None:
        """Test hook: 1 = the firmware's session task raises once; 2 = the
        board's ``read_inputs`` raises on every call from now on (an
        exception inside the protection task, e.g. a broken ADC driver)."""
        self.fw.send(L.pk_inject(code))

    def set_can_state(self, state: int) -> None:
        self.fw.send(L.pk_can_state(state))

    def output_at(self, name: str, t_ms: int) -> int:
        v = 0 if name != "bleed" else 1
        for c in self.output_log:
            if c.t_ms > t_ms:
                break
            if c.name == name:
                v = c.value
        return v

    def first_change(self, name: str, value: int, after_ms: int = 0) -> int | None:
        for c in self.output_log:
            if c.t_ms >= after_ms and c.name == name and c.value == value:
                return c.t_ms
        return None


class Simulation(_Base):
    """Lock-step SIL: ``with Simulation() as sim: sim.run_for(60_000)``."""

    def __init__(self, step_ms: int = 10, plant: Plant | None = None, config: str | None = None,
                 heapsize=None, channel: str | None = None, console_fd=None,
                 state_dir: str | None = None, firmware_dir: Path | None = None, stderr=None,
                 epoch_s: int | None = None, target: str | None = None, image: Path | None = None,
                 board_dir: str | Path | None = None, console_auth: int | None = 0,
                 qemu_files: dict | None = None, qemu_prelude: str | None = None,
                 plugged: bool = True):
        """``epoch_s``: the simulated date (UTC seconds) at t = 0, the
        firmware's RTC in lock-step (default 2026-01-01 00:00 UTC).

        ``target``: ``"unix"`` (the SIL board on the MicroPython unix port)
        or ``"qemu"`` (the frozen image on the 32-bit Cortex-M QEMU board,
        ``image`` default build/firmware/QEMU_M3; ``heapsize``,
        ``console_fd`` and ``firmware_dir`` do not apply;
        the heap is the board's; ``state_dir`` is mirrored onto the board's
        RAM filesystem at boot and written back when the firmware stops).
        Default: ``$EVCHARGER_TARGET``, else ``"unix"`` -- so any SIL test
        runs on the target with ``EVCHARGER_TARGET=qemu pytest ...``.

        ``board_dir``: the SIL board's filesystem (``config.json``,
        ``state/``; see ``link.prepare_board_dir``); default a temporary
        directory (unix target).

        ``console_auth``: 0 (default) opens the console without roles (a
        bench has no keys); None lets ``console.auth`` decide (roles, with
        the key in ``board_dir/keys.json``; docs/security.md).

        ``qemu_files``, ``qemu_prelude`` (target qemu): files put on the
        board's filesystem and code run before the app (``QemuFirmwareProcess``).

        ``plugged``: whether the vehicle is plugged in at start (``plug()``
        later)."""
        import os
        target = target or os.environ.get("EVCHARGER_TARGET") or "unix"
        if target not in ("unix", "qemu"):
            raise ValueError("target must be 'unix' or 'qemu'")
        self.target = target
        self.step_ms = step_ms
        self.now_ms = 0
        self.channel = channel or ("sim%d" % next(_names))
        self.hub = open_hub(self.channel, clock=lambda: self.now_ms / 1000.0)
        self._setup(plant)
        self.plant.plugged = plugged
        self.step_hooks: list[Callable[[int], None]] = []
        if target == "qemu":
            from .qemu import QemuFirmwareProcess
            if board_dir is not None:     # the board's flash: config.json and state/
                bd = Path(board_dir)
                if state_dir is None:
                    state_dir = str(bd / "state")
                if config is None and (bd / "config.json").exists():
                    config = str(bd / "config.json")
            self.fw = QemuFirmwareProcess(config=config, epoch_s=epoch_s, image=image,
                                          stderr=stderr, state_dir=state_dir,
                                          files=qemu_files, prelude=qemu_prelude)
        else:
            self.fw = L.FirmwareProcess("lockstep", config=config, heapsize=heapsize,
                                        console_fd=console_fd, state_dir=state_dir,
                                        firmware_dir=firmware_dir, stderr=stderr,
                                        epoch_s=epoch_s, board_dir=board_dir,
                                        console_auth=console_auth)
        self.steps = 0
        self._plant_dt = 0       # ms since the plant's last update (the previous step)
        self._buses: list = []

    # -- python-can view of the bus ---------------------------------------
    def bus(self, **kw) -> can.BusABC:
        """A python-can bus on this simulation (same as
        ``can.Bus(interface="sil", channel=sim.channel)``)."""
        b = can.Bus(interface="sil", channel=self.channel, **kw)
        self._buses.append(b)
        return b

    def step(self) -> None:
        dt = self.step_ms
        # The plant advances by the time since its last update, i.e. the
        # previous step (not this one: after a change of ``step_ms`` the
        # plant's clock would drift from the simulation's), so
        # ``plant.now_ms`` == ``now_ms``: its state at the start of this step.
        vals = self.plant.update(self._plant_dt, self.outputs)
        self._plant_dt = dt
        parts = [self._input_packets(vals)]
        pending = self.hub.drain_to_firmware()
        if pending:
            parts.extend(L.pk_frame(m.arbitration_id, bytes(m.data)) for m in pending)
        target = self.now_ms + dt
        parts.append(L.pk_step(target))
        self.fw.send(b"".join(parts))
        while True:
            p = self.fw.read_packet(timeout=30)
            if p is None:
                raise TimeoutError("firmware did not answer STEP(%d)" % target)
            if self._handle(p):
                break
        self.now_ms = target
        self.steps += 1
        for hook in self.step_hooks:
            hook(self.now_ms)

    def stats(self, reset: bool = False, timeout: float = 10.0, collect: bool = False,
              heap_watch: bool = False) -> dict:
        """Snapshot of the firmware's own execution statistics (STATS).

        Returns ``{"t_ms", "passes", "pass_wcet_us", "loop_us" (CPU us in
        scheduler passes), "mem_alloc", "mem_free", "rx_frames",
        "rx_overruns", "rx_backlog_max", "tasks": {name: {"runs",
        "total_us", "wcet_us", "overruns", "alloc_bytes", "alloc_max",
        "late_max_ms"}}}``; counters run since the last ``reset=True``
        (or the start).  Times are real microseconds measured by the
        firmware with ``time.ticks_us``, modulo 2**30."""
        self._stats = None
        self.fw.send(L.pk_stats(reset, collect, heap_watch))
        while True:
            st = self._stats
            if st is not None and len(st["tasks"]) >= st["ntasks"]:
                self._stats = None
                return st
            p = self.fw.read_packet(timeout=timeout)
            if p is None:
                raise TimeoutError("firmware did not answer STATS")
            self._handle(p)

    def run_for(self, ms: int) -> None:
        end = self.now_ms + ms
        while self.now_ms < end:
            self.step()

    def run_until(self, pred: Callable[[], bool], timeout_ms: int) -> bool:
        end = self.now_ms + timeout_ms
        while self.now_ms < end:
            if pred():
                return True
            self.step()
        return pred()

    def close(self) -> int | None:
        rc = None
        if getattr(self, "fw", None):
            # drain to collect BYE
            try:
                self.fw.send(L.pk_stop())
                while True:
                    p = self.fw.read_packet(timeout=2)
                    if p is None:
                        break
                    self._handle(p)
            except (OSError, ConnectionError):
                pass
            rc = self.fw.close()
        for b in self._buses:
            b.shutdown()
        self._buses.clear()
        close_hub(self.channel)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RealtimeBench(_Base):
    """Real-time SIL: the firmware on wall-clock time, the bus open to other
    processes on ``127.0.0.1:port`` (python-can ``interface="sil"``).

    Time stamps: every frame on the hub, from the firmware or from a client,
    is stamped on the firmware's clock (a frame from the firmware with the
    time the firmware gave it, a client's frame at its arrival), as Unix
    time: the bench's start date plus firmware milliseconds since then.  So
    a ``can.Logger`` writes real dates and the periods it records are the
    charger's own.  ``texts`` and ``output_log`` keep the firmware's raw
    ``t_ms``; ``bench_s(t_ms)`` converts.

    ``plugged``: whether the vehicle is plugged in at start (``plug()`` /
    ``unplug()`` later)."""

    def __init__(self, port: int = 0, plant: Plant | None = None, config: str | None = None,
                 heapsize=None, console_fd=None, state_dir: str | None = None,
                 plant_period_ms: int = 2, stderr=None, channel: str = "realtime",
                 board_dir: str | Path | None = None, plugged: bool = True):
        self.channel = channel
        t0 = time.monotonic()
        self.t0 = t0
        self.epoch0 = time.time()
        self.fw_t0 = None
        self.hub = open_hub(channel, clock=lambda: self.epoch0 + (time.monotonic() - self.t0))
        self.hub.epoch0 = self.epoch0
        self._setup(plant)
        self.plant.plugged = plugged
        try:
            self.server = HubServer(self.hub, port)
        except OSError:
            close_hub(channel)
            raise
        self.port = self.server.port
        self.fw = L.FirmwareProcess("realtime", config=config, heapsize=heapsize,
                                    console_fd=console_fd, state_dir=state_dir, stderr=stderr,
                                    board_dir=board_dir)
        # HELLO carries the firmware's clock (ticks_ms) when it connected:
        # from here on firmware ms map onto bench time.
        self.fw_t0 = int.from_bytes(self.fw.hello.payload[2:6], "little")
        self.fw_off_s = time.monotonic() - self.t0
        self.period = plant_period_ms
        self.running = True
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.hooks: list[Callable[[int], None]] = []
        self.thread.start()

    def bench_s(self, t_ms: int) -> float:
        """Firmware time (ms, ``ticks_ms``, wraps at 2**30) -> seconds since
        the bench started."""
        return ((t_ms - self.fw_t0) & 0x3FFFFFFF) / 1000.0 + self.fw_off_s

    def _frame_time(self, t_ms: int) -> float:
        return self.epoch0 + self.bench_s(t_ms)

    @property
    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def _loop(self) -> None:
        last = time.monotonic()
        try:
            while self.running:
                p = self.fw.read_packet(timeout=self.period / 1000.0)
                while p is not None:
                    self._handle(p)
                    p = self.fw.poll_packet()
                now = time.monotonic()
                dt_ms = int((now - last) * 1000)
                if dt_ms >= self.period:
                    last = now
                    with self.lock:
                        vals = self.plant.update(dt_ms, self.outputs)
                        self._send_inputs(vals)
                    for h in self.hooks:
                        h(self.now_ms)
                pending = self.hub.drain_to_firmware()
                if pending:
                    self.fw.send(b"".join(L.pk_frame(m.arbitration_id, bytes(m.data))
                                          for m in pending))
        except (OSError, ConnectionError):
            self.running = False

    def close(self) -> int | None:
        self.running = False
        self.thread.join(timeout=2)
        self.server.close()
        rc = self.fw.close()
        close_hub(self.channel)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
