"""Command line: run the BMS simulator against a charger on a real or virtual CAN bus.

    python -m host_tools.bms --interface pcan --channel PCAN_USBBUS1 --soc 30 --target-soc 90
    python -m host_tools.bms --interface socketcan --channel can0 --scenario bst_mid_charge
    python -m host_tools.bms --interface sil --channel 127.0.0.1:29536 --duration 120

Real-time loop (1 ms poll), live one-line status, final verdict table.
Exit code: 0 no FAIL (and at least one PASS), 1 any FAIL, 2 bad arguments or bus
error, 3 nothing could be checked (no charger frame seen: every check NOT RUN).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import can

from host_tools import clitools
from host_tools.clitools import out_console
from rich.console import Console
from rich.markup import escape
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .checks import FAIL, NOT_RUN, PASS, junit_xml, overall
from . import options
from .options import add_options
from .params import BmsParams
from .scenario import Scenario, builtin, builtin_names
from .simulator import BmsSimulator

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m host_tools.bms", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interface", "-i", default="virtual", help="python-can interface (virtual, pcan, socketcan, "
                    "kvaser, slcan, gs_usb, sil, ...)")
    ap.add_argument("--channel", "-c", default="gbt", help="python-can channel")
    ap.add_argument("--bitrate", type=int, default=250000)
    ap.add_argument("--bus-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="extra keyword argument for can.Bus (repeatable)")
    ap.add_argument("--list-scenarios", action="store_true", help="list the built-in scenarios and exit")
    ap.add_argument("--duration", type=float, help="stop after this many seconds (default: until the session ends)")
    ap.add_argument("--timestamps", choices=("auto", "poll", "frame"), default="auto",
                    help="time base of received frames: the interface's frame timestamps (frame) or the "
                         "poll clock; auto = poll for virtual, frame otherwise (sil: the firmware's clock)")
    ap.add_argument("--no-live", action="store_true", help="no live status line")
    ap.add_argument("--json", type=Path, help="also write summary and check results to this JSON file")
    ap.add_argument("--junit", type=Path, help="also write the verdicts as JUnit XML (one testcase per check)")
    add_options(ap)
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
    p = options.make_params(args, scenario=scenario)
    ts = args.timestamps
    if ts == "auto":
        ts = "poll" if args.interface == "virtual" else "frame"
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
    ap = build_parser()
    args = ap.parse_args(argv)
    console = out_console()
    if args.list_scenarios:
        for n in builtin_names():
            sc = Scenario.load(builtin(n))
            console.print("[bold]%s[/bold]: %s" % (n, escape(sc.description)))
        return 0
    scenario = args.scenario
    try:
        params = make_params(args, scenario).resolved()
        kwargs = _bus_kwargs(args.bus_arg)
    except (ValueError, OSError) as e:
        ap.error(str(e))
    try:
        if args.interface != "sil":         # the SIL link has no bit rate
            kwargs.setdefault("bitrate", args.bitrate)
        bus = can.Bus(interface=args.interface, channel=args.channel, **kwargs)
    except Exception as e:  # python-can raises many types for a missing adapter/driver
        console.print("[red]cannot open bus %s/%s:[/red] %s" % (args.interface, args.channel, escape(str(e))))
        return 2
    try:
        sim = BmsSimulator(bus, params, scenario=scenario, apply_scenario_params=False)
        console.print("BMS simulator on %s/%s, scenario %s: %s %dS %.0f Ah, SOC %.0f -> %.0f %%, "
                      "%s timestamps" % (
                          args.interface, args.channel, sim.scenario.name, params.chemistry, params.cells,
                          params.capacity_ah, params.soc, params.target_soc, params.checks.timestamps),
                      highlight=False)
        run(sim, args.duration, console, live=not args.no_live and console.is_terminal)
    finally:
        bus.shutdown()
    results = sim.report()
    summary = sim.summary()
    summary["timestamps"] = params.checks.timestamps
    console.print(sim.status_line(), highlight=False)
    if console.is_terminal:
        console.print(verdict_table(results))
    else:
        print_plain(results)
    verdict = overall(results)
    console.print("stop reason: %s" % (sim.stop_reason or "-"), highlight=False)
    why = ""
    if verdict == NOT_RUN:
        why = " (no charger frame seen on %s/%s: nothing could be checked)" % (args.interface, args.channel)
    console.print("[bold]%s[/bold]: %d PASS, %d FAIL, %d NOT RUN%s" % (
        verdict, summary["checks"]["PASS"], summary["checks"]["FAIL"], summary["checks"]["NOT RUN"],
        escape(why)))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "checks": [r.__dict__ for r in results]}, indent=1))
    if args.junit:
        args.junit.write_text(junit_xml(results))
    return {FAIL: 1, NOT_RUN: 3}.get(verdict, 0)


def print_plain(results) -> None:
    """The verdicts as plain lines (a pipe or a CI log: nothing cut or wrapped)."""
    w = max([len(r.name) for r in results] + [5])
    for r in results:
        extra = (" - " + r.detail) if r.detail and r.verdict == FAIL else ""
        print("%-*s  %-7s  %s%s%s" % (w, r.name, r.verdict, r.measured, extra,
                                       ("  (limit %s)" % r.limit) if r.limit else ""))


if __name__ == "__main__":
    clitools.run(main)
