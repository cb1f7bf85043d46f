"""Plant model for the SIL bench: power stage, contactors, cable, vehicle.

Everything the firmware measures comes from here, in the firmware's units
(0.1 V, 0.1 A, mV, kOhm, 0.1 degC).  The model is deliberately simple but
has the behaviours the firmware must cope with:

* power stage: output voltage follows the set-point with a first-order lag,
  current is regulated CC/CV against the battery with a slew limit, and
  collapses quickly when the stage is disabled (trip path);
* K1/K2 with actuation delays (closing ``contactor_delay_ms``, opening
  ``contactor_open_ms``: the coil command is not the contact state) and
  auxiliary-contact feedback; ``Plant.k12`` is the *physical* contact
  state and ``Plant.k12_log`` records each physical change ``(t_ms,
  closed)``, which is what NB/T 33008.1 5.4.7 measures; the vehicle's K5/K6 close when the BMS says BRO 0xAA and open after the BMS
  has stopped and the current is low;
* the battery pack (``host_tools.bms.battery.BatteryPack``) is stepped with
  the real current; its terminal voltage is what the charger sees outside
  K1/K2 once K5/K6 are closed;
* bleeder: output below 60 V well within 1 s; without it, a slow decay;
* insulation monitor, CC1 detection point, gun temperatures (I^2 heating),
  E-stop, leakage and mains inputs, each overridable by a test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PGN_BRO, PGN_BST, PGN_BSD, PGN_CST = 0x0900, 0x1900, 0x1C00, 0x1A00


@dataclass
class PlantParams:
    stage_tau_s: float = 0.05          # voltage loop time constant
    slew_up_a_s: float = 400.0         # current rise limit of the stage
    slew_down_a_s: float = 2000.0      # current fall limit while enabled
    off_decay_a_s: float = 10000.0     # current collapse when disabled
    max_current_a: float = 250.0       # physical limit of the stage
    max_voltage_v: float = 1000.0
    r_loop_ohm: float = 0.02           # cable + contactors
    contactor_delay_ms: int = 15       # K1/K2 coil on -> contacts closed
    contactor_open_ms: int | None = None  # coil off -> contacts apart (None: contactor_delay_ms)
    lock_delay_ms: int = 80
    bleed_tau_s: float = 0.15          # 750 V -> < 60 V in ~0.4 s
    idle_tau_s: float = 8.0            # stray decay without the bleeder
    insulation_kohm: int = 10000       # healthy: 10 MOhm
    cc1_plugged_mv: int = 4000         # detection point 1, state 3
    ambient_c: float = 25.0
    gun_k_c_per_a2: float = 0.0004     # steady-state rise per A^2
    gun_tau_s: float = 300.0
    pack_step_ms: int = 100            # the pack (cells, heat) is integrated at this rate


class Plant:
    def __init__(self, pack=None, params: PlantParams | None = None):
        self.p = params or PlantParams()
        self.pack = pack
        self.v_in = 0.0          # V, charger side of K1/K2
        self.v_out = 0.0         # V, gun side
        self.i = 0.0             # A, delivered
        self.k12 = False
        self.k12_cmd_ms = None
        self.k12_pending = None
        self.k12_log: list[tuple[int, bool]] = []   # (t_ms, physically closed) per change
        self.vehicle_closed = False
        self.vehicle_stop_seen = False
        self.lock = False
        self.lock_pending = None
        self.t_gun = self.p.ambient_c
        self.inrush_a = 0.0      # peak current estimate at K1/K2 closing
        self.energy_wh = 0.0
        self.now_ms = 0
        self.overrides: dict[str, int] = {}
        self._pack_dt = 0.0            # accumulated seconds and ampere-seconds
        self._pack_as = 0.0
        self.plugged = True

    # -- the vehicle's side, inferred from the BMS traffic ----------------
    def on_frame(self, msg) -> None:
        cid = msg.arbitration_id
        sa, pgn = cid & 0xFF, (cid >> 8) & 0x3FF00
        if sa != 0xF4:
            return
        if pgn == PGN_BRO and len(msg.data) >= 1 and msg.data[0] == 0xAA and not self.vehicle_stop_seen:
            self.vehicle_closed = True
        elif pgn in (PGN_BST, PGN_BSD):
            self.vehicle_stop_seen = True

    def reset_vehicle(self) -> None:
        self.vehicle_closed = False
        self.vehicle_stop_seen = False

    def _pack_step(self, dt: float, i: float) -> None:
        # The cell model is the expensive part of the bench; its state moves
        # slowly, so integrate it at the average current every pack_step_ms.
        self._pack_dt += dt
        self._pack_as += i * dt
        self.pack.current_a = i        # what the BMS measures (BCS) is live
        if self._pack_dt * 1000.0 >= self.p.pack_step_ms - 1e-9:
            self.pack.step(self._pack_dt, self._pack_as / self._pack_dt)
            self.pack.current_a = i
            self._pack_dt = 0.0
            self._pack_as = 0.0

    # -- one step ------------------------------------------------------------
    def update(self, dt_ms: int, out: dict) -> dict:
        p = self.p
        dt = dt_ms / 1000.0
        self.now_ms += dt_ms
        en = bool(out.get("pwr_en"))
        v_set = out.get("v_set", 0) / 10.0
        i_set = min(out.get("i_set", 0) / 10.0, p.max_current_a)
        bleed = bool(out.get("bleed"))

        # contactor actuation delays
        want = bool(out.get("k12"))
        if want != self.k12:
            if self.k12_pending is None or self.k12_pending[0] != want:
                delay = p.contactor_delay_ms
                if not want and p.contactor_open_ms is not None:
                    delay = p.contactor_open_ms
                self.k12_pending = (want, self.now_ms + delay)
            elif self.now_ms >= self.k12_pending[1]:
                if want and self.vehicle_closed:
                    # The stage's output diodes block reverse current: only a
                    # stage voltage above the battery's drives an inrush
                    # (why GB/T 18487.1 pre-charges to 1..10 V *below* it).
                    self.inrush_a = max(self.inrush_a, max(0.0, self.v_in - self.v_out) / p.r_loop_ohm)
                self.k12 = want
                self.k12_pending = None
                self.k12_log.append((self.now_ms, want))
        else:
            self.k12_pending = None
        lw = bool(out.get("lock"))
        if lw != self.lock:
            if self.lock_pending is None or self.lock_pending[0] != lw:
                self.lock_pending = (lw, self.now_ms + p.lock_delay_ms)
            elif self.now_ms >= self.lock_pending[1]:
                self.lock = lw
                self.lock_pending = None

        # vehicle opens K5/K6 once it has stopped and the current is low
        if self.vehicle_stop_seen and self.vehicle_closed and abs(self.i) < 5.0:
            self.vehicle_closed = False

        ocv = None
        r_b = 0.0
        if self.pack is not None and self.vehicle_closed and self.plugged:
            ocv = self.pack.ocv()
            r_b = max(1e-4, self.pack.resistance_ohm) + p.r_loop_ohm

        # power stage voltage (internal node)
        if en:
            self.v_in += (min(v_set, p.max_voltage_v) - self.v_in) * (1 - math.exp(-dt / p.stage_tau_s))
        else:
            tau = p.bleed_tau_s if bleed else p.idle_tau_s
            self.v_in *= math.exp(-dt / tau)

        connected = self.k12 and ocv is not None
        if connected:
            target = 0.0
            if en:
                target = max(0.0, min(i_set, (v_set - ocv) / r_b))
            if self.i < target:
                self.i = min(target, self.i + p.slew_up_a_s * dt)
            else:
                rate = p.slew_down_a_s if en else p.off_decay_a_s
                self.i = max(target, self.i - rate * dt)
            self.v_out = ocv + self.i * r_b
            self.v_in = self.v_out
            self._pack_step(dt, self.i)
            self.energy_wh += self.v_out * self.i * dt / 3600.0
        else:
            self.i = 0.0 if not en or not self.k12 else 0.0
            if self.k12:
                self.v_out = self.v_in                  # insulation test: gun sees the stage
            elif ocv is not None:
                self.v_out = ocv                         # vehicle contactors closed: battery
            else:
                tau = p.bleed_tau_s if bleed else p.idle_tau_s
                self.v_out *= math.exp(-dt / tau)
            if not self.plugged:
                self.v_out = 0.0 if not self.k12 else self.v_in
        if self.pack is not None and not connected:
            self._pack_step(dt, 0.0)

        # gun temperature
        t_ss = p.ambient_c + p.gun_k_c_per_a2 * self.i * self.i
        self.t_gun += (t_ss - self.t_gun) * (1 - math.exp(-dt / p.gun_tau_s))

        vals = {
            "v_inside": int(round(self.v_in * 10)),
            "v_outside": int(round(self.v_out * 10)),
            "i_out": int(round(self.i * 10)),
            "cc1_mv": p.cc1_plugged_mv if self.plugged else 6000,
            "insulation_kohm": p.insulation_kohm if (self.k12 or self.v_out > 50) else -1,
            "t_gun_pos": int(round(self.t_gun * 10)),
            "t_gun_neg": int(round(self.t_gun * 10)) - 5,
            "estop": 0,
            "k12_fb": 1 if self.k12 else 0,
            "lock_fb": 1 if self.lock else 0,
            "leakage_ma": 0,
            "mains_ok": 1,
        }
        vals.update(self.overrides)
        return vals
