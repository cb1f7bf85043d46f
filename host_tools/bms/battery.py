"""Battery-pack model shared by the BMS simulator and the SIL plant.

A series string of ``cells`` cells.  Each cell has its own SOC, capacity and
resistance (deterministic, seedable mismatch), an open-circuit voltage from the
chemistry's OCV(SOC) table, and a series resistance; the pack has one lumped
thermal mass heated by I^2 R and cooled towards ambient, seen by several
temperature probes with fixed (seeded) gains and offsets.

Sign convention: **current positive = charging** (the opposite of the GB/T
wire format; ``codec`` converts).  SOC is in percent (0..100).
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Chemistry:
    name: str
    ocv: Tuple[Tuple[float, float], ...]   # (SOC %, cell open-circuit V), SOC ascending
    nominal_v: float                       # nominal cell voltage
    max_v: float                           # max permitted cell charging voltage
    r_mohm_ah: float                       # cell resistance x capacity (mOhm*Ah) at 25 degC
    battery_type: int                      # BRM battery-type code
    kg_per_ah: float = 0.02                # cell mass per Ah (thermal mass)

    def __post_init__(self):
        xs = tuple(p[0] for p in self.ocv)
        if any(b <= a for a, b in zip(xs, xs[1:])) or any(b[1] <= a[1] for a, b in zip(self.ocv, self.ocv[1:])):
            raise ValueError("%s: OCV table must be strictly increasing" % self.name)
        object.__setattr__(self, "_xs", xs)

    def open_circuit(self, soc_pct: float) -> float:
        """Cell OCV by linear interpolation; linear extrapolation beyond both ends so an
        over-charged cell keeps rising instead of sitting at a flat 100 % value."""
        xs = self._xs
        i = bisect.bisect_right(xs, soc_pct)
        i = 1 if i < 1 else (len(xs) - 1 if i > len(xs) - 1 else i)
        (x0, y0), (x1, y1) = self.ocv[i - 1], self.ocv[i]
        return y0 + (y1 - y0) * (soc_pct - x0) / (x1 - x0)


# OCV curves (relaxed, 25 degC), typical published shapes: LFP has the long flat
# plateau around 3.3 V with steep ends; NCM rises steadily from ~3.5 to 4.2 V.
LFP = Chemistry("LFP", ((0, 2.50), (2, 2.90), (5, 3.10), (10, 3.20), (20, 3.24), (30, 3.27),
                        (40, 3.285), (50, 3.295), (60, 3.305), (70, 3.32), (80, 3.33),
                        (90, 3.34), (95, 3.36), (98, 3.40), (100, 3.50)),
                nominal_v=3.2, max_v=3.65, r_mohm_ah=90.0, battery_type=3)
NCM = Chemistry("NCM", ((0, 3.00), (5, 3.45), (10, 3.55), (20, 3.62), (30, 3.66), (40, 3.70),
                        (50, 3.75), (60, 3.82), (70, 3.90), (80, 3.98), (90, 4.08), (100, 4.19)),
                nominal_v=3.7, max_v=4.25, r_mohm_ah=120.0, battery_type=6, kg_per_ah=0.016)
LTO = Chemistry("LTO", ((0, 1.80), (5, 2.05), (10, 2.15), (20, 2.22), (50, 2.30), (80, 2.40),
                        (90, 2.48), (100, 2.65)),
                nominal_v=2.3, max_v=2.80, r_mohm_ah=60.0, battery_type=8, kg_per_ah=0.03)

CHEMISTRIES = {c.name: c for c in (LFP, NCM, LTO)}


def chemistry(name) -> Chemistry:
    if isinstance(name, Chemistry):
        return name
    try:
        return CHEMISTRIES[str(name).upper()]
    except KeyError:
        raise ValueError("unknown chemistry %r (known: %s)" % (name, ", ".join(CHEMISTRIES))) from None


_lookup_chemistry = chemistry   # BatteryPack's parameter of the same name shadows it


class BatteryPack:
    """Series pack of ``cells`` cells.

    Parameters: ``chemistry`` ("LFP", "NCM", "LTO"), ``capacity_ah``, ``cells``
    (series count), ``soc`` (start SOC %), ``resistance_ohm`` (whole pack, at
    25 degC; default from the chemistry and capacity), ``soc_spread_pct`` and
    ``capacity_spread_pct`` (full width of the uniform per-cell mismatch),
    ``seed`` (the mismatch and probe placement are reproducible), ``ambient_c``,
    ``temp_c`` (start temperature, default ambient), ``probes`` (temperature
    sensor count), ``cooling_w_per_k`` (heat-transfer conductance to ambient),
    ``heat_capacity_j_per_k`` (default from cell mass, 1000 J/(kg K)).
    """

    def __init__(self, chemistry: str | Chemistry = "LFP", capacity_ah: float = 150.0, cells: int = 96,
                 soc: float = 30.0, resistance_ohm: Optional[float] = None,
                 soc_spread_pct: float = 1.0, capacity_spread_pct: float = 2.0, seed: int = 1,
                 ambient_c: float = 25.0, temp_c: Optional[float] = None, probes: int = 8,
                 cooling_w_per_k: float = 30.0, heat_capacity_j_per_k: Optional[float] = None):
        self.chem = _lookup_chemistry(chemistry)
        if cells < 1 or capacity_ah <= 0 or probes < 1:
            raise ValueError("cells, capacity and probes must be positive")
        self.capacity_ah = float(capacity_ah)
        self.n = int(cells)
        rng = random.Random(seed)
        half_s, half_c = soc_spread_pct / 2.0, capacity_spread_pct / 200.0
        self._soc = [soc + rng.uniform(-half_s, half_s) for _ in range(self.n)]
        self._cap = [self.capacity_ah * (1.0 + rng.uniform(-half_c, half_c)) for _ in range(self.n)]
        r_cell = (resistance_ohm / self.n) if resistance_ohm is not None else self.chem.r_mohm_ah / capacity_ah / 1000.0
        self._r = [r_cell * (1.0 + rng.uniform(-0.05, 0.05)) for _ in range(self.n)]
        # Centre the SOC mismatch so the pack SOC starts exactly at ``soc``.
        shift = soc - sum(self._soc) / self.n
        self._soc = [s + shift for s in self._soc]
        self.ambient_c = float(ambient_c)
        self.temp_c = float(ambient_c if temp_c is None else temp_c)   # bulk temperature
        self._probe = [(rng.uniform(0.85, 1.15), rng.uniform(-1.0, 1.0)) for _ in range(int(probes))]
        self.cooling_w_per_k = float(cooling_w_per_k)
        self.heat_capacity = float(heat_capacity_j_per_k if heat_capacity_j_per_k is not None
                                   else self.n * capacity_ah * self.chem.kg_per_ah * 1000.0)
        self._ocv_sum = sum(self.chem.open_circuit(x) for x in self._soc)
        self.current_a = 0.0          # last current passed to step()
        self.charged_ah = 0.0
        self.energy_kwh = 0.0
        self.time_s = 0.0

    # ------------------------------------------------------------ state
    @property
    def soc(self) -> float:
        """Pack SOC in percent: mean of the cell SOCs."""
        return sum(self._soc) / self.n

    @soc.setter
    def soc(self, value: float) -> None:
        shift = value - self.soc
        self._soc = [s + shift for s in self._soc]
        self._ocv_sum = sum(self.chem.open_circuit(x) for x in self._soc)

    @property
    def resistance_ohm(self) -> float:
        return sum(self._r) * self._r_temp_factor()

    @property
    def rated_voltage(self) -> float:
        return self.n * self.chem.nominal_v

    def _r_temp_factor(self) -> float:
        # Resistance grows when cold (~1.5 %/K below 25 degC), mildly falls when warm.
        return max(0.7, 1.0 + 0.015 * (25.0 - self.temp_c))

    def ocv(self) -> float:
        """Pack open-circuit voltage (sum of the cells' OCV, cached per step)."""
        return self._ocv_sum

    def terminal_voltage(self, current_a: Optional[float] = None) -> float:
        """Pack voltage at ``current_a`` (default: the last step's current)."""
        i = self.current_a if current_a is None else current_a
        return self.ocv() + i * self.resistance_ohm

    def cell_voltages(self, current_a: Optional[float] = None) -> List[float]:
        i = self.current_a if current_a is None else current_a
        k = self._r_temp_factor()
        return [self.chem.open_circuit(s) + i * r * k for s, r in zip(self._soc, self._r)]

    def cell_socs(self) -> List[float]:
        return list(self._soc)

    def temperatures(self) -> List[float]:
        """One reading per probe (degC)."""
        rise = self.temp_c - self.ambient_c
        return [self.ambient_c + rise * g + off for g, off in self._probe]

    # ------------------------------------------------------------ dynamics
    def step(self, dt_s: float, current_a: float) -> None:
        """Advance ``dt_s`` seconds at ``current_a`` (positive = charging)."""
        if dt_s <= 0:
            self.current_a = float(current_a)
            return
        i = float(current_a)
        v = self.terminal_voltage(i)
        heat_w = i * i * self.resistance_ohm
        if i != 0.0:
            k_ah = i * dt_s / 36.0          # percent-Ah per step
            self._soc = [min(110.0, max(-5.0, s + k_ah / c)) for s, c in zip(self._soc, self._cap)]
            self._ocv_sum = sum(self.chem.open_circuit(x) for x in self._soc)
        # Exact solution of C dT/dt = P - h (T - Tamb) over dt (stable for any dt).
        t_inf = self.ambient_c + heat_w / self.cooling_w_per_k if self.cooling_w_per_k > 0 else None
        if t_inf is None:
            self.temp_c += heat_w * dt_s / self.heat_capacity
        else:
            a = math.exp(-self.cooling_w_per_k * dt_s / self.heat_capacity)
            self.temp_c = t_inf + (self.temp_c - t_inf) * a
        self.current_a = i
        self.charged_ah += i * dt_s / 3600.0
        self.energy_kwh += v * i * dt_s / 3.6e6
        self.time_s += dt_s

    def max_current_for(self, cell_v_limit: float, pack_v_limit: Optional[float] = None) -> float:
        """Largest charging current that keeps every cell's terminal voltage at or below
        ``cell_v_limit`` and the pack at or below ``pack_v_limit``: the CV-phase demand.
        May be negative when a limit is already exceeded at open circuit."""
        k = self._r_temp_factor()
        i = min((cell_v_limit - self.chem.open_circuit(s)) / (r * k) for s, r in zip(self._soc, self._r))
        if pack_v_limit is not None:
            i = min(i, (pack_v_limit - self.ocv()) / self.resistance_ohm)
        return i


def cc_cv_demand(pack: BatteryPack, cc_current_a: float, cell_v_limit: float,
                 pack_v_limit: Optional[float] = None) -> Tuple[float, bool]:
    """Charging-current demand of a CC-then-CV charge: -> (amps, in_cv).

    CC at ``cc_current_a`` while that keeps the highest cell below its limit
    (and the pack below ``pack_v_limit``); otherwise the current that holds the
    limit exactly, which tapers as the cells' OCV rises."""
    i_lim = pack.max_current_for(cell_v_limit, pack_v_limit)
    if i_lim >= cc_current_a:
        return cc_current_a, False
    return max(0.0, i_lim), True


def describe(pack: BatteryPack) -> str:
    cv: Sequence[float] = pack.cell_voltages()
    return ("%s %dS %.0fAh SOC %.1f%% V %.1f cells %.3f..%.3f T %.1f" %
            (pack.chem.name, pack.n, pack.capacity_ah, pack.soc, pack.terminal_voltage(),
             min(cv), max(cv), pack.temp_c))
