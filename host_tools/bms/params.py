"""Simulator parameters: the battery the BMS announces, its timeouts and the check limits.

Every value has a documented default; ``None`` means "derived from the
chemistry / cell count" (see ``BmsParams.resolved()``).  A TOML file sets the
same names: top-level keys for ``BmsParams``, ``[timeouts]`` for
``Timeouts``, ``[checks]`` for ``CheckLimits``.  Unknown keys are an error
that names the key, so a typo never goes unnoticed.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .battery import chemistry as lookup_chemistry


@dataclass
class Timeouts:
    """BMS-side receive timeouts (spec section 4.2, BMS table); each expiry sends BEM."""
    crm_ms: int = 30000          # any CRM, from the first CHM (60 s from start without CHM)
    crm_no_chm_ms: int = 60000
    crm_aa_ms: int = 5000        # CRM 0xAA, from the first BRM
    cml_ms: int = 5000           # CTS/CML, from CRM 0xAA (start point UNCONFIRMED)
    cro_ms: int = 5000           # any CRO, from BRO 0xAA
    cro_aa_ms: int = 60000       # CRO 0xAA, from BRO 0xAA
    ccs_ms: int = 1000           # CCS during charging
    cst_ms: int = 5000           # CST, after BST sent
    csd_ms: int = 10000          # CSD, from BST sent
    rehandshake_ms: int = 30000  # CRM 0x00 after BEM / CEM before giving up
    bem_hold_ms: int = 2000      # how long BEM is sent before "done" when no re-handshake is expected


@dataclass
class CheckLimits:
    """Limits of the verdicts on the charger's behaviour."""
    period_tol_pct: float = 10.0     # allowed period deviation, percent of the nominal period
    period_tol_ms: float = 0.0       # absolute floor of the allowed deviation (clock resolution)
    ccs_dlc: int = 8                 # expected CCS DLC (8 per the 2015 table; 7 = 2023-A/ENPLUS)
    cst_after_bst_ms: int = 5000     # first CST after our BST (BMS-side CST timeout)
    current_after_cst_ms: int = 100  # CCS current <= stop_current_a after the first CST
    stop_current_a: float = 5.0
    min_ramp_a_per_s: float = 100.0  # current fall rate after BST (GB/T 18487.1 B.3.6)
    cem_tol_pct: float = 10.0        # CEM after a dropped message: timeout +- this
    cem_tol_ms: float = 100.0        # ... plus this (charger tick and bus jitter)
    bsm_fault_stop_ms: int = 1000    # CST after an abnormal BSM (DECISION: not in the spec)
    pause_current_ms: int = 1000     # CCS current <= stop_current_a after BSM pause (DECISION)
    resume_current_ms: int = 5000    # CCS current > stop_current_a again after resume (DECISION)
    current_follow_ms: int = 1000    # CCS current <= max BCL demand over this window ...
    current_follow_tol_a: float = 0.3  # ... + max(this, current_follow_tol_pct of demand)
    current_follow_tol_pct: float = 1.0
    cts_response_ms: int = 200       # charger's CTS after our RTS (J1939 Tr)
    timestamps: str = "poll"         # "poll": time = now_ms at poll(); "frame": msg.timestamp


@dataclass
class BmsParams:
    chemistry: str = "LFP"
    battery_type: Optional[int] = None       # BRM code; default from the chemistry
    capacity_ah: float = 150.0
    cells: int = 96
    rated_voltage_v: Optional[float] = None  # default cells x nominal cell voltage
    max_cell_voltage_v: Optional[float] = None  # BCP; default chemistry max
    max_voltage_v: Optional[float] = None    # BCP max total charging voltage; default cells x max cell
    bhm_max_voltage_v: Optional[float] = None  # BHM; default max_voltage_v
    max_current_a: float = 250.0             # BCP max permitted charging current
    request_current_a: Optional[float] = None  # CC demand in BCL; default 98 % of max_current_a (S-1)
    cv_margin_v: float = 0.05                # CV target = max cell voltage - margin
    cutoff_current_a: Optional[float] = None  # end of CV taper; default 0.05 C
    max_temp_c: float = 55.0
    soc: float = 30.0                        # start SOC, %
    target_soc: float = 90.0                 # BST "SOC target reached" at this SOC, %
    energy_kwh: Optional[float] = None       # BCP nominal energy; default rated V x Ah
    ambient_c: float = 25.0
    temp_c: Optional[float] = None           # start temperature; default ambient
    probes: int = 8
    resistance_ohm: Optional[float] = None   # pack; default from chemistry
    soc_spread_pct: float = 1.0
    capacity_spread_pct: float = 2.0
    seed: int = 1
    vin: str = "LSIMBMS0000000001"
    manufacturer: str = "SIMB"
    protocol_version: str = "1.1"            # "1.1" -> 01 01 00, or hex bytes "01 01 00"
    brm_length: int = 49
    bro_delay_ms: int = 500                  # BRO 0x00 for this long, then 0xAA
    send_bmv: bool = True
    send_bmt: bool = True
    bmv_bmt_bam: bool = False                # BMV/BMT by BAM instead of RTS/CTS
    tp_dt_gap_ms: int = 0
    timeouts: Timeouts = field(default_factory=Timeouts)
    checks: CheckLimits = field(default_factory=CheckLimits)

    # ------------------------------------------------------------------
    def version_int(self) -> int:
        v = str(self.protocol_version).strip()
        if "." in v:
            major, minor = (int(x) for x in v.split(".")[:2])
            return (minor << 8) | major           # V1.1 -> bytes 01 01 00
        return int.from_bytes(bytes.fromhex(v.replace(" ", "")), "little")

    def resolved(self) -> "BmsParams":
        """Copy with every derived (None) value filled in."""
        p = dataclasses.replace(self, timeouts=dataclasses.replace(self.timeouts),
                                checks=dataclasses.replace(self.checks))
        ch = lookup_chemistry(p.chemistry)
        p.chemistry = ch.name
        if p.battery_type is None:
            p.battery_type = ch.battery_type
        if p.rated_voltage_v is None:
            p.rated_voltage_v = round(p.cells * ch.nominal_v, 1)
        if p.max_cell_voltage_v is None:
            p.max_cell_voltage_v = ch.max_v
        if p.max_voltage_v is None:
            p.max_voltage_v = round(p.cells * p.max_cell_voltage_v, 1)
        if p.bhm_max_voltage_v is None:
            p.bhm_max_voltage_v = p.max_voltage_v
        if p.request_current_a is None:
            # 98 %: a demand above 99.5 % of the BCP limit is itself a risk (S-1)
            p.request_current_a = round(0.98 * p.max_current_a, 1)
        if p.cutoff_current_a is None:
            p.cutoff_current_a = round(0.05 * p.capacity_ah, 1)
        if p.energy_kwh is None:
            p.energy_kwh = round(p.rated_voltage_v * p.capacity_ah / 1000.0, 1)
        if len(p.vin) > 17:
            raise ValueError("VIN longer than 17 characters: %r" % p.vin)
        if not 0 <= p.soc <= 100 or not 0 < p.target_soc <= 100:
            raise ValueError("soc / target_soc must be within 0..100 %")
        if p.checks.timestamps not in ("poll", "frame"):
            raise ValueError("checks.timestamps must be 'poll' or 'frame'")
        return p

    def update(self, values: Mapping[str, Any]) -> "BmsParams":
        """Apply a dict (as read from TOML) in place; returns self."""
        _apply(self, values, "")
        return self


def _apply(obj, values: Mapping[str, Any], where: str) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = k.replace("-", "_")
        if key not in names:
            raise ValueError("unknown parameter %s%s (known: %s)" % (where, k, ", ".join(names)))
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur):
            if not isinstance(v, Mapping):
                raise ValueError("parameter %s%s must be a table" % (where, k))
            _apply(cur, v, where + key + ".")
            continue
        if isinstance(cur, bool) and not isinstance(v, bool):
            raise ValueError("parameter %s%s must be true/false" % (where, k))
        if isinstance(cur, (int, float)) and not isinstance(cur, bool) and isinstance(v, (int, float)):
            v = type(cur)(v) if isinstance(cur, float) or float(v).is_integer() else v
        setattr(obj, key, v)


def load_toml(path) -> Dict[str, Any]:
    with open(Path(path), "rb") as f:
        return tomllib.load(f)


def load_params(path, base: Optional[BmsParams] = None) -> BmsParams:
    return (base or BmsParams()).update(load_toml(path))
