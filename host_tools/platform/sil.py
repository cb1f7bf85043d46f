"""SIL chargers as fleet members: the firmware on the SIL board, a BMS
simulator, and a TCU (``tcu.Tcu``) between the board's telemetry channel and
the broker.

``SilCharger(charger_id, vin, host, port, workdir)`` runs one charging session
in lock-step simulated time (``run()``): every telemetry record the firmware
emits on the SIL link (packet 0x85, what the UART carries on a board) goes
into the TCU's ring, the TCU publishes it.  A ``stop`` command from the
platform is typed at the firmware's console as ``stop()`` (what a field
engineer or a TCU wired to the console would do): the firmware ramps the
current down, sends CST and ends the session normally.

With ``keys`` (a charger key file of ``host_tools.seckeys new``) the charger
has the authenticated platform link (issue 13, C-2): the key file goes onto
the SIL board's filesystem, ``sec.policy`` / ``sec.suite`` into its
configuration, the vehicle is plugged in only once the link is sealed
(the handshake runs between sessions), and the TCU relays the link: what
the platform sends on ``link/down`` is typed as ``link("<hex>")``, a plain
stop as ``pstop()`` (which the charger refuses under require).

``WeldPack``: a pack with one cell whose connection degrades during the
charge (its resistance grows after ``onset_s``), so its voltage under
current rises above the others: the cell-voltage spread grows, slowly
enough that the firmware's own limit (S-8, 0.2 V) is far away when the
platform's 3σ rule sees it.
"""
from __future__ import annotations

import json
import os
import select
import threading
import time
from pathlib import Path

from host_tools.bms.battery import BatteryPack
from host_tools.bms.params import BmsParams
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, Simulation

from .tcu import Tcu


class WeldPack(BatteryPack):
    def __init__(self, *a, onset_s: float = 20.0, growth_per_s: float = 0.02, **kw):
        super().__init__(*a, **kw)
        self.onset_s = onset_s
        self.growth_per_s = growth_per_s
        self._r0 = self._r[0]

    def step(self, dt_s, current_a):
        super().step(dt_s, current_a)
        if self.time_s > self.onset_s:
            self._r[0] = self._r0 * (1.0 + self.growth_per_s * (self.time_s - self.onset_s))


class Terminal:
    """The far end of the firmware console's pseudo-terminal: where a TCU
    wired to the console, an engineer or a test types.  A reader thread
    drains everything the firmware prints (a full pty makes the firmware
    drop console output); ``take`` returns what came since the last take.
    ``keep``: the most bytes kept (the oldest go first), for a reader that
    never takes (0: no bound)."""

    def __init__(self, fd, keep: int = 0):
        self.fd = fd
        self.keep = keep
        self.buf = bytearray()
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    time.sleep(0.01)
                    continue
                with self.lock:
                    self.buf += data
                    if self.keep:
                        del self.buf[:-self.keep]

    def take(self) -> bytes:
        """What the firmware printed since the last ``take``."""
        with self.lock:
            b = bytes(self.buf)
            del self.buf[:]
        return b

    def put_back(self, data: bytes) -> None:
        """Output taken but not used: the next ``take`` starts with it."""
        with self.lock:
            self.buf[:0] = data

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        os.close(self.fd)


class SilCharger:
    def __init__(self, charger_id: int, vin: str, host: str, port: int, workdir,
                 soc: float = 30.0, target_soc: float = 80.0, capacity_ah: float = 120.0,
                 max_current_a: float = 150.0, fault: str | None = None, seed: int = 1,
                 epoch_s: int | None = None, first_n: int = 0, boot: int = 0,
                 weld_onset_s: float = 20.0, keys=None, policy: str = "prefer",
                 suite: str = "sm", extra_config: dict | None = None):
        self.cid = charger_id
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "config.json"
        conf = {"charger.id": charger_id, "telemetry.region_code": 440305,
                "console.tx_timeout_ms": 1000}
        board = self.dir / "board"
        board.mkdir(exist_ok=True)
        self.secure = keys is not None
        if keys is not None:
            (board / "keys.json").write_text(Path(keys).read_text())
            # (the REPLY deadline is simulated time: at 10x the wall clock
            # the default 10 s would be 1 s of MQTT + TCU relay on a loaded host)
            conf.update({"sec.policy": policy, "sec.suite": suite, "sec.hs_reply_s": 60})
        conf.update(extra_config or {})
        cfg.write_text(json.dumps(conf))
        self.params = BmsParams(capacity_ah=capacity_ah, cells=96, soc=soc, target_soc=target_soc,
                                max_current_a=max_current_a, vin=vin, seed=seed).resolved()
        p = self.params
        args = (p.chemistry, p.capacity_ah, p.cells, p.soc, p.resistance_ohm, p.soc_spread_pct,
                p.capacity_spread_pct, p.seed, p.ambient_c, p.temp_c, p.probes)
        self.pack = WeldPack(*args, onset_s=weld_onset_s) if fault == "weld" else BatteryPack(*args)
        master, slave = os.openpty()
        self.sim = Simulation(plant=Plant(self.pack), console_fd=master, config=str(cfg),
                              state_dir=str(self.dir / "state"), epoch_s=epoch_s,
                              board_dir=str(board))
        if self.secure:
            self.sim.unplug()            # the handshake first (between sessions)
        os.close(master)
        self.console = Terminal(slave, keep=20000)
        self.bms = None
        if not self.secure:
            self._vehicle()
        self.stops: list[dict] = []
        self.links: list = []
        self.tcu = Tcu(charger_id, host, port, self.dir / "ring", on_stop=self._on_stop,
                       first_n=first_n, boot=boot, on_link=self._on_link)
        self._fed = 0
        self.emitted = 0              # records the charger emitted (plain or in sealed batches)
        self.offline_windows: list[tuple[int, int]] = []

    def _vehicle(self):
        # the vehicle's BMS wakes up when it is plugged in (its timeouts
        # run from then on); a weld's onset counts from the plug-in too
        if isinstance(self.pack, WeldPack):
            self.pack.onset_s += self.pack.time_s
            self.pack._r[0] = self.pack._r0
        self.bms = BmsSimulator(self.sim.bus(), self.params, pack=self.pack, drive_pack=False)
        self.sim.step_hooks.append(self.bms.poll)

    def _on_stop(self, cmd: dict) -> str:
        self.stops.append(dict(cmd, at_ms=self.sim.now_ms))
        typed = "pstop()" if self.secure else "stop()"
        self.console.type(typed)
        return "%s typed at the console at t=%d ms (stage %s)" % (typed, self.sim.now_ms,
                                                                 self.stage())

    def _on_link(self, frame: bytes) -> None:
        self.links.append((self.sim.now_ms, frame))
        self.console.type('link("%s")' % frame.hex())

    def sealed_commands(self) -> int:
        """Sealed frames from the platform passed to the charger (not REPLYs)."""
        return sum(1 for _, f in self.links if f[:4] != b"EVR1")

    def sealed(self) -> bool:
        """The charger's link is up (its first sealed frame reached the TCU)."""
        return any(rec[0] == 0xEC and rec[2] in (1, 2) for _, rec in self.sim.telemetry)

    def stage(self) -> str | None:
        st = [t for _, t in self.sim.texts if t.startswith("stage ")]
        return st[-1][6:] if st else None

    def _feed(self):
        tel = self.sim.telemetry
        while self._fed < len(tel):
            rec = tel[self._fed][1]
            self.tcu.add(rec)
            self._fed += 1
            self.emitted += rec[1] if rec[0] == 0xEC else 1

    def run(self, max_ms: int = 240_000, pace_s: float = 0.0) -> None:
        """Until the session is over (or ``max_ms`` simulated after the
        plug-in; with the link, the vehicle is plugged in once it is sealed).
        The TCU is offline during ``offline_windows`` (simulated ms after
        the plug-in)."""
        started = False
        t0 = self.sim.now_ms if not self.secure else None     # plug-in time
        while t0 is None or self.sim.now_ms - t0 < max_ms:
            if t0 is None and (self.sealed() or self.sim.now_ms > 300_000):
                t0 = self.sim.now_ms
                self._vehicle()
                self.sim.plug()
            self.sim.step()
            if self.sim.now_ms % 100 == 0:
                self._feed()
                off = t0 is not None and any(a <= self.sim.now_ms - t0 < b
                                             for a, b in self.offline_windows)
                if off != self.tcu.offline:
                    self.tcu.set_offline(off)
                self.tcu.pump()
                if pace_s:
                    time.sleep(pace_s)
            st = self.stage()
            started = started or st == "charging"
            if started and (st in ("done", "idle", "connected") or self.bms.done):
                self.sim.run_for(1000)
                break
        self._feed()
        if self.tcu.offline:
            self.tcu.set_offline(False)

    def drain(self, timeout: float = 30.0) -> bool:
        return self.tcu.drain(timeout)

    def close(self):
        self.tcu.close()
        self.sim.close()
        self.console.close()
