"""One vocabulary for the battery / BMS options of every tool.

``python -m host_tools.bms``, ``make charge`` (``host_tools.charge``) and
``make realtime`` (``host_tools.sil``) take the same flags, with the names of
``BmsParams`` (``--chemistry``, ``--soc``, ``--target-soc``,
``--capacity-ah`` or ``--capacity-kwh``, ``--cells``, ``--temp-c``, ...),
the same ``--params FILE.toml`` and the same ``--scenario NAME|FILE``.  Bad
values are argparse errors (usage line, exit status 2), never tracebacks.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from .battery import CHEMISTRIES
from .params import BmsParams, load_toml
from .scenario import Scenario, builtin_names


def _chem(v: str) -> str:
    u = v.strip().upper()
    if u not in CHEMISTRIES:
        raise argparse.ArgumentTypeError("unknown chemistry %r (choose from %s)"
                                         % (v, ", ".join(sorted(CHEMISTRIES))))
    return u


# CLI flag -> BmsParams field (the flag without "--", "-" -> "_")
PARAM_FLAGS = [
    ("--chemistry", _chem, "battery chemistry: LFP, NCM, LTO"),
    ("--battery-type", int, "BRM battery-type code (default from chemistry)"),
    ("--capacity-ah", float, "rated capacity, Ah"),
    ("--cells", int, "series cell count"),
    ("--rated-voltage-v", float, "BRM rated total voltage, V"),
    ("--max-cell-voltage-v", float, "BCP max permitted cell voltage, V"),
    ("--max-voltage-v", float, "BCP max permitted total charging voltage, V"),
    ("--bhm-max-voltage-v", float, "BHM max permitted total voltage, V"),
    ("--max-current-a", float, "BCP max permitted charging current, A"),
    ("--request-current-a", float, "BCL current demand in CC, A"),
    ("--max-temp-c", float, "BCP max permitted temperature, C"),
    ("--soc", float, "start SOC, %%"),
    ("--target-soc", float, "the BMS stops (BST SOC reached) at this SOC, %%"),
    ("--ambient-c", float, "ambient temperature, C"),
    ("--temp-c", float, "start pack temperature, C"),
    ("--probes", int, "temperature probe count"),
    ("--vin", str, "VIN sent in BRM (17 characters)"),
    ("--protocol-version", str, "BRM protocol version, e.g. 1.1"),
    ("--brm-length", int, "BRM payload length (49, 41 or >= 8)"),
    ("--seed", int, "cell mismatch seed"),
]
CHECK_FLAGS = [
    ("--period-tol-pct", float, "period tolerance, percent"),
    ("--period-tol-ms", float, "period tolerance floor, ms"),
    ("--ccs-dlc", int, "expected CCS DLC (8 or 7)"),
    ("--cst-after-bst-ms", int, "limit for CST after BST, ms"),
]


def add_options(ap: argparse.ArgumentParser, defaults: Optional[dict] = None,
                checks: bool = True) -> None:
    """Add the battery, scenario and check-limit options to ``ap``.
    ``defaults``: this tool's own defaults (shown in --help)."""
    defaults = defaults or {}
    g = ap.add_argument_group("battery and BMS (the names of BmsParams; docs/bms-simulator.md)")
    g.add_argument("--params", type=Path, help="TOML parameter file (flags win over it)")
    g.add_argument("--scenario", type=scenario_arg, metavar="NAME|FILE",
                   help="a built-in scenario by name (--list-scenarios) or a TOML file")
    g.add_argument("--capacity-kwh", type=float,
                   help="rated energy, kWh (sets --capacity-ah from the cells' nominal voltage)")
    for flag, typ, hlp in PARAM_FLAGS:
        key = flag[2:].replace("-", "_")
        if key in defaults:
            hlp += " (default %s)" % defaults[key]
        g.add_argument(flag, type=typ, help=hlp)
    if checks:
        c = ap.add_argument_group("check limits")
        for flag, typ, hlp in CHECK_FLAGS:
            c.add_argument(flag, type=typ, help=hlp)


def scenario_arg(value: str) -> Scenario:
    """``--scenario``: a name of a built-in scenario or a TOML file."""
    p = Path(value)
    names = builtin_names()
    if not p.exists():
        name = value[:-5] if value.endswith(".toml") else value
        if name not in names:
            raise argparse.ArgumentTypeError(
                "no scenario file or built-in scenario %r (built-in: %s)" % (value, ", ".join(names)))
        from .scenario import builtin
        p = builtin(name)
    try:
        return Scenario.load(p)
    except (ValueError, OSError) as e:
        raise argparse.ArgumentTypeError(str(e))


def make_params(args, defaults: Optional[dict] = None,
                scenario: Optional[Scenario] = None) -> BmsParams:
    """Tool defaults <- --params file <- scenario [params]/[checks] <- flags.
    Raises ValueError (with the offending name) for an invalid combination."""
    p = BmsParams()
    if defaults:
        p.update(defaults)
    if getattr(args, "params", None):
        p.update(load_toml(args.params))
    if scenario:
        p.update(scenario.params)
        p.update({"checks": scenario.checks})
    for flag, _, _ in PARAM_FLAGS:
        key = flag[2:].replace("-", "_")
        v = getattr(args, key, None)
        if v is not None:
            p.update({key: v})
    for flag, _, _ in CHECK_FLAGS:
        key = flag[2:].replace("-", "_")
        v = getattr(args, key, None)
        if v is not None:
            p.update({"checks": {key: v}})
    kwh = getattr(args, "capacity_kwh", None)
    if kwh is not None:
        if getattr(args, "capacity_ah", None) is not None:
            raise ValueError("give --capacity-ah or --capacity-kwh, not both")
        ch = CHEMISTRIES[p.chemistry.upper()]
        p.capacity_ah = round(kwh * 1000.0 / (p.cells * ch.nominal_v), 1)
    return p


def capacity_kwh(p: BmsParams) -> float:
    ch = CHEMISTRIES[p.chemistry.upper()]
    return p.capacity_ah * p.cells * ch.nominal_v / 1000.0
