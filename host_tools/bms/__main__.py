"""Command line: run the BMS simulator against a charger on a real or virtual CAN bus.

    python -m host_tools.bms --interface pcan --channel PCAN_USBBUS1 --soc 30 --target-soc 90
    python -m host_tools.bms --interface socketcan --channel can0 --scenario bst_mid_charge
    python -m host_tools.bms --interface sil --channel /tmp/sil.sock --duration 120

Real-time loop (1 ms poll), live one-line status, final verdict table.
Exit code: 0 all checks PASS / NOT RUN, 1 any FAIL, 2 bad arguments or bus error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import can
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .checks import FAIL, PASS, overall
from .params import BmsParams, load_toml
from .scenario import Scenario, builtin, builtin_names
from .simulator import BmsSimulator

# CLI flag -> BmsParams name (None: same name with - replaced by _)
_PARAM_FLAGS = [
    ("--chemistry", str, "battery chemistry: LFP, NCM, LTO"),
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
    ("--soc", float, "start SOC, %"),
    ("--target-soc", float, "stop (BST SOC reached) at this SOC, %"),
    ("--ambient-c", float, "ambient temperature, C"),
    ("--temp-c", float, "start pack temperature, C"),
    ("--probes", int, "temperature probe count"),
    ("--vin", str, "VIN sent in BRM (17 characters)"),
    ("--protocol-version", str, "BRM protocol version, e.g. 1.1"),
    ("--brm-length", int, "BRM payload length (49, 41 or >= 8)"),
    ("--seed", int, "cell mismatch seed"),
]
_CHECK_FLAGS = [
    ("--period-tol-pct", float, "period tolerance, percent"),
    ("--period-tol-ms", float, "period tolerance floor, ms"),
    ("--ccs-dlc", int, "expected CCS DLC (8 or 7)"),
    ("--cst-after-bst-ms", int, "limit for CST after BST, ms"),
]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m host_tools.bms", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interface", "-i", default="virtual", help="python-can interface (virtual, pcan, socketcan, "
                    "kvaser, slcan, gs_usb, sil, ...)")
    ap.add_argument("--channel", "-c", default="gbt", help="python-can channel")
    ap.add_argument("--bitrate", type=int, default=250000)
    ap.add_argument("--bus-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="extra keyword argument for can.Bus (repeatable)")
    ap.add_argument("--params", type=Path, help="TOML parameter file")
    ap.add_argument("--scenario", help="scenario TOML file or the name of a built-in one")
    ap.add_argument("--list-scenarios", action="store_true", help="list the built-in scenarios and exit")
    ap.add_argument("--duration", type=float, help="stop after this many seconds (default: until the session ends)")
    ap.add_argument("--timestamps", choices=("auto", "poll", "frame"), default="auto",
                    help="time base of received frames: the adapter's timestamps (frame) or the poll clock; "
                         "auto = poll for virtual/sil, frame otherwise")
    ap.add_argument("--no-live", action="store_true", help="no live status line")
    ap.add_argument("--json", type=Path, help="also write summary and check results to this JSON file")
    for flag, typ, hlp in _PARAM_FLAGS + _CHECK_FLAGS:
        ap.add_argument(flag, type=typ, help=hlp)
    return ap


def _bus_kwargs(items: List[str]) -> dict:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        if not _:
            raise ValueError("--bus-arg needs KEY=VALUE, got %r" % it)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                pass
        if v in ("true", "false"):
            v = v == "true"
        out[k] = v
    return out


def make_params(args, scenario: Optional[Scenario]) -> BmsParams:
    """Defaults <- --params file <- scenario [params]/[checks] <- command-line flags."""
    p = BmsParams()
    if args.params:
        p.update(load_toml(args.params))
    if scenario:
        p.update(scenario.params)
        p.update({"checks": scenario.checks})
    for flag, _, _ in _PARAM_FLAGS:
        v = getattr(args, flag[2:].replace("-", "_"))
        if v is not None:
            p.update({flag[2:].replace("-", "_"): v})
    for flag, _, _ in _CHECK_FLAGS:
        v = getattr(args, flag[2:].replace("-", "_"))
        if v is not None:
            p.update({"checks": {flag[2:].replace("-", "_"): v}})
    ts = args.timestamps
    if ts == "auto":
        ts = "poll" if args.interface in ("virtual", "sil") else "frame"
    p.checks.timestamps = ts
    return p


def verdict_table(results) -> Table:
    t = Table(title="Charger checks", show_lines=False)
    t.add_column("Check")
    t.add_column("Verdict")
    t.add_column("Measured")
    t.add_column("Limit")
    style = {PASS: "green", FAIL: "bold red"}
    for r in results:
        t.add_row(r.name, Text(r.verdict, style=style.get(r.verdict, "dim")), r.measured + (
            " - " + r.detail if r.detail and r.verdict == FAIL else ""), r.limit)
    return t


def run(sim: BmsSimulator, duration_s: Optional[float], console: Console, live: bool) -> None:
    t0 = time.monotonic()
    last_ui = -1e9
    ctx = Live(Text(""), console=console, refresh_per_second=5, transient=True) if live else None
    try:
        if ctx:
            ctx.__enter__()
        while True:
            now = int((time.monotonic() - t0) * 1000)
            sim.poll(now)
            if sim.done or (duration_s is not None and now >= duration_s * 1000):
                break
            if ctx and now - last_ui >= 200:
                ctx.update(Text(sim.status_line()))
                last_ui = now
            time.sleep(0.0005)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
    finally:
        if ctx:
            ctx.__exit__(None, None, None)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if args.list_scenarios:
        for n in builtin_names():
            sc = Scenario.load(builtin(n))
            console.print("[bold]%s[/bold]: %s" % (n, sc.description))
        return 0
    try:
        scenario = None
        if args.scenario:
            path = Path(args.scenario)
            scenario = Scenario.load(path if path.exists() or path.suffix else builtin(args.scenario))
        params = make_params(args, scenario).resolved()
        kwargs = _bus_kwargs(args.bus_arg)
    except (ValueError, OSError) as e:
        console.print("[red]error:[/red] %s" % e)
        return 2
    try:
        if args.interface != "sil":         # the SIL link has no bit rate
            kwargs.setdefault("bitrate", args.bitrate)
        bus = can.Bus(interface=args.interface, channel=args.channel, **kwargs)
    except Exception as e:  # python-can raises many types for a missing adapter/driver
        console.print("[red]cannot open bus %s/%s:[/red] %s" % (args.interface, args.channel, e))
        return 2
    try:
        sim = BmsSimulator(bus, params, scenario=scenario, apply_scenario_params=False)
        console.print("BMS simulator on %s/%s, scenario %s: %s %dS %.0f Ah, SOC %.0f -> %.0f %%" % (
            args.interface, args.channel, sim.scenario.name, params.chemistry, params.cells, params.capacity_ah,
            params.soc, params.target_soc))
        run(sim, args.duration, console, live=not args.no_live and console.is_terminal)
    finally:
        bus.shutdown()
    results = sim.report()
    summary = sim.summary()
    console.print(sim.status_line())
    console.print(verdict_table(results))
    verdict = overall(results)
    console.print("stop reason: %s" % (sim.stop_reason or "-"))
    console.print("[bold]%s[/bold]: %d PASS, %d FAIL, %d NOT RUN" % (
        verdict, summary["checks"]["PASS"], summary["checks"]["FAIL"], summary["checks"]["NOT RUN"]))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "checks": [r.__dict__ for r in results]}, indent=1))
    return 1 if verdict == FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
