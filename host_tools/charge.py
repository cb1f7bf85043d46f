"""The main job: a complete simulated charge on the SIL bench.

    make charge                      # 60 kWh LFP pack, 30 % -> 90 %
    make charge ARGS="--soc 20 --target 80 --chem NCM --capacity-kwh 75"

The firmware runs unmodified on the MicroPython unix port in lock-step
simulated time against the plant model (power stage, contactors, battery
pack) and our BMS simulator on the firmware's CAN bus.  Live progress is
shown while it runs; at the end: a summary, the bus as a candump ``.log``
and a Vector ``.asc``, a PNG plot of the session and the BMS simulator's
verdicts, all under ``--out`` (default ``out/charge``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import can

from host_tools.bms.battery import BatteryPack, chemistry
from host_tools.bms.params import BmsParams
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, Simulation

PGN_BCL, PGN_CEM, PGN_BEM, PGN_CST, PGN_BST, PGN_CCS = 0x1000, 0x1F00, 0x1E00, 0x1A00, 0x1900, 0x1200


@dataclass
class Trace:
    t: list = field(default_factory=list)
    v: list = field(default_factory=list)
    i: list = field(default_factory=list)
    v_dem: list = field(default_factory=list)
    i_dem: list = field(default_factory=list)
    soc: list = field(default_factory=list)
    t_max: list = field(default_factory=list)
    t_min: list = field(default_factory=list)
    t_gun: list = field(default_factory=list)
    cell_max: list = field(default_factory=list)
    cell_min: list = field(default_factory=list)


class BusWatch(can.Listener):
    """Remembers what a person wants in the summary: demand, CEM/BEM, stops."""

    def __init__(self):
        self.v_dem = 0.0
        self.i_dem = 0.0
        self.cem = []
        self.bem = []
        self.cst = None
        self.bst = None
        self.frames = 0

    def on_message_received(self, msg):
        self.frames += 1
        cid = msg.arbitration_id
        pgn, sa = (cid >> 8) & 0x3FF00, cid & 0xFF
        d = bytes(msg.data)
        if sa == 0xF4 and pgn == PGN_BCL and len(d) >= 4:
            self.v_dem = int.from_bytes(d[0:2], "little") / 10.0
            self.i_dem = 400.0 - int.from_bytes(d[2:4], "little") / 10.0
        elif sa == 0x56 and pgn == PGN_CEM and (not self.cem or self.cem[-1][1] != d.hex()):
            self.cem.append((msg.timestamp, d.hex()))
        elif sa == 0xF4 and pgn == PGN_BEM and (not self.bem or self.bem[-1][1] != d.hex()):
            self.bem.append((msg.timestamp, d.hex()))
        elif sa == 0x56 and pgn == PGN_CST and self.cst is None:
            self.cst = (msg.timestamp, d.hex())
        elif sa == 0xF4 and pgn == PGN_BST and self.bst is None:
            self.bst = (msg.timestamp, d.hex())


def build_params(a) -> BmsParams:
    ch = chemistry(a.chem)
    cells = a.cells
    capacity_ah = a.capacity_kwh * 1000.0 / (cells * ch.nominal_v)
    return BmsParams(chemistry=a.chem, capacity_ah=round(capacity_ah, 1), cells=cells,
                     soc=a.soc, target_soc=a.target, max_current_a=a.max_current,
                     temp_c=a.temp, vin=a.vin).resolved()


def plot(trace: Trace, stages, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tm = [x / 60.0 for x in trace.t]
    fig, ax = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    ax[0].plot(tm, trace.v, label="output voltage")
    ax[0].plot(tm, trace.v_dem, "--", label="BCL voltage demand")
    ax[0].set_ylabel("V")
    ax[1].plot(tm, trace.i, label="output current")
    ax[1].plot(tm, trace.i_dem, "--", label="BCL current demand")
    ax[1].set_ylabel("A")
    ax[2].plot(tm, trace.soc, label="SOC", color="tab:green")
    ax[2].set_ylabel("SOC %")
    ax2b = ax[2].twinx()
    ax2b.plot(tm, trace.cell_max, color="tab:red", lw=0.8, label="max cell V")
    ax2b.plot(tm, trace.cell_min, color="tab:purple", lw=0.8, label="min cell V")
    ax2b.set_ylabel("cell V")
    ax[3].plot(tm, trace.t_max, label="pack max temp")
    ax[3].plot(tm, trace.t_min, label="pack min temp")
    ax[3].plot(tm, trace.t_gun, label="gun temp")
    ax[3].set_ylabel("degC")
    ax[3].set_xlabel("time (min)")
    colours = {"handshake": "#fde2e4", "insulation": "#fad2e1", "recognition": "#e2ece9",
               "parameter": "#bee1e6", "precharge": "#f0efeb", "charging": "#dfe7fd",
               "stopping": "#ffe5b4", "statistics": "#e9f5db", "finish": "#eeeeee"}
    span = (trace.t[-1] - trace.t[0]) if len(trace.t) > 1 else 1.0
    for (t0, name), nxt in zip(stages, stages[1:] + [(trace.t[-1] if trace.t else 0, "")]):
        c = colours.get(name)
        if c:
            for a_ in ax:
                a_.axvspan(t0 / 60.0, nxt[0] / 60.0, color=c, alpha=0.6, lw=0)
            if nxt[0] - t0 > 0.04 * span:      # label the bands wide enough to read
                ax[0].text((t0 + nxt[0]) / 120.0, ax[0].get_ylim()[1] * 0.97, name, fontsize=8,
                           ha="center", va="top")
    ax[3].text(0.0, -0.28, "stage bands: " + ", ".join(n for _, n in stages if n in colours),
               transform=ax[3].transAxes, fontsize=7)
    for a_ in ax:
        a_.grid(alpha=0.3)
        a_.legend(loc="lower right", fontsize=8)
    ax2b.legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="make charge", description=__doc__.split("\n\n")[0])
    ap.add_argument("--chem", default="LFP", help="battery chemistry: LFP, NCM, LTO")
    ap.add_argument("--capacity-kwh", type=float, default=60.0)
    ap.add_argument("--cells", type=int, default=104, help="series cell count")
    ap.add_argument("--soc", type=float, default=30.0, help="start SOC %%")
    ap.add_argument("--target", type=float, default=90.0, help="BMS stops at this SOC %%")
    ap.add_argument("--max-current", type=float, default=250.0, help="BCP max charging current A")
    ap.add_argument("--temp", type=float, default=25.0, help="pack start temperature degC")
    ap.add_argument("--vin", default="LSIMBMS0000000001")
    ap.add_argument("--config", default=None, help="firmware configuration JSON")
    ap.add_argument("--scenario", default=None, help="BMS simulator scenario TOML")
    ap.add_argument("--step-ms", type=int, default=10, help="lock-step size (simulated ms)")
    ap.add_argument("--max-minutes", type=float, default=240.0, help="give up after this much simulated time")
    ap.add_argument("--out", default="out/charge", help="output directory")
    ap.add_argument("--no-live", action="store_true", help="no live display (CI logs)")
    a = ap.parse_args(argv)

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    con = Console()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    params = build_params(a)
    pack = BatteryPack(params.chemistry, params.capacity_ah, params.cells, params.soc,
                       params.resistance_ohm, params.soc_spread_pct, params.capacity_spread_pct,
                       params.seed, params.ambient_c, params.temp_c, params.probes)
    scenario = None
    if a.scenario:
        from host_tools.bms.scenario import Scenario
        scenario = Scenario.load(a.scenario)
    plant = Plant(pack)
    sim = Simulation(step_ms=a.step_ms, plant=plant, config=a.config,
                     state_dir=str(out / "state"))
    log_w = can.CanutilsLogWriter(str(out / "session.log"), channel="can0")
    asc_w = can.ASCWriter(str(out / "session.asc"), channel=1)
    watch = BusWatch()
    for w in (log_w, asc_w, watch):
        sim.hub.listeners.append(w.on_message_received)
    bms = BmsSimulator(sim.bus(), params, pack=pack, scenario=scenario, drive_pack=False)
    sim.step_hooks.append(bms.poll)
    trace = Trace()
    stages: list[tuple[float, str]] = []
    seen_texts = 0
    stage = "boot"
    stop_why = ""
    t_wall0 = time.monotonic()
    end_ms = int(a.max_minutes * 60_000)
    next_sample = 0

    def poll_texts():
        nonlocal seen_texts, stage, stop_why
        for t_ms, text in sim.texts[seen_texts:]:
            kind, _, rest = text.partition(" ")
            if kind == "stage":
                stage = rest
                stages.append((t_ms / 1000.0, rest))
            elif kind == "stop":
                stop_why = rest
        seen_texts = len(sim.texts)

    def view():
        tb = Table.grid(padding=(0, 2))
        tb.add_column(style="bold")
        tb.add_column()
        soc = pack.soc
        bar = "#" * int(soc / 2.5) + "." * (40 - int(soc / 2.5))
        t_s = sim.now_ms / 1000.0
        wall = time.monotonic() - t_wall0
        tb.add_row("sim time", "%02d:%02d:%02d   (x%.0f real time)" % (
            t_s // 3600, t_s % 3600 // 60, t_s % 60, t_s / wall if wall > 0 else 0))
        tb.add_row("stage", stage)
        tb.add_row("SOC", "[%s] %5.1f %%  (target %.0f %%)" % (bar, soc, a.target))
        tb.add_row("output", "%6.1f V  %6.1f A  (demand %6.1f V %6.1f A)" % (
            plant.v_out, plant.i, watch.v_dem, watch.i_dem))
        temps = pack.temperatures()
        tb.add_row("temperature", "pack %4.1f..%4.1f C   gun %4.1f C" % (min(temps), max(temps), plant.t_gun))
        tb.add_row("energy", "%6.2f kWh" % (plant.energy_wh / 1000.0))
        return tb

    live = None if a.no_live or not con.is_terminal else Live(view(), console=con, refresh_per_second=4)
    last_print = 0.0
    try:
        if live:
            live.start()
        while sim.now_ms < end_ms:
            sim.step()
            poll_texts()
            if sim.now_ms >= next_sample:
                next_sample += 1000
                temps = pack.temperatures()
                cells = pack.cell_voltages()
                trace.t.append(sim.now_ms / 1000.0)
                trace.v.append(plant.v_out)
                trace.i.append(plant.i)
                trace.v_dem.append(watch.v_dem)
                trace.i_dem.append(watch.i_dem)
                trace.soc.append(pack.soc)
                trace.t_max.append(max(temps))
                trace.t_min.append(min(temps))
                trace.t_gun.append(plant.t_gun)
                trace.cell_max.append(max(cells))
                trace.cell_min.append(min(cells))
                now = time.monotonic()
                if live:
                    live.update(view())
                elif now - last_print > 5:
                    last_print = now
                    con.print("t=%6.0fs %-11s SOC %5.1f%% %6.1f V %6.1f A" % (
                        sim.now_ms / 1000, stage, pack.soc, plant.v_out, plant.i))
            if stage in ("done",) or (bms.done and stage in ("done", "idle", "connected")):
                sim.run_for(500)
                poll_texts()
                break
            if sim.bye is not None:
                break
    finally:
        if live:
            live.stop()
        wall = time.monotonic() - t_wall0
        sim.close()
        log_w.stop()
        asc_w.stop()

    dur_s = sim.now_ms / 1000.0
    summary = {
        "battery": "%s %.0f kWh (%d cells, %.0f Ah)" % (params.chemistry, a.capacity_kwh, params.cells,
                                                        params.capacity_ah),
        "soc_start": a.soc, "soc_end": round(pack.soc, 2),
        "energy_kwh": round(plant.energy_wh / 1000.0, 3),
        "duration_s": round(dur_s, 1),
        "stop_reason_charger": stop_why,
        "stop_reason_bms": bms.stop_reason,
        "cst": watch.cst, "bst": watch.bst,
        "cem": watch.cem, "bem": watch.bem,
        "final_stage": stage,
        "max_inrush_a": round(plant.inrush_a, 1),
        "frames": watch.frames,
        "wall_s": round(wall, 1),
        "speedup": round(dur_s / wall, 1) if wall else None,
    }
    report = bms.report()
    from host_tools.bms.checks import overall
    summary["bms_verdict"] = overall(report)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if trace.t:
        plot(trace, stages, out / "session.png",
             "%s: SOC %.0f%% -> %.1f%%, %.2f kWh in %.1f min" % (
                 summary["battery"], a.soc, pack.soc, plant.energy_wh / 1000.0, dur_s / 60.0))
    tb = Table(title="Summary")
    tb.add_column("item")
    tb.add_column("value")
    for k in ("battery", "soc_start", "soc_end", "energy_kwh", "duration_s", "stop_reason_charger",
              "stop_reason_bms", "cst", "bst", "cem", "bem", "max_inrush_a", "speedup", "bms_verdict"):
        tb.add_row(k, str(summary[k]))
    con.print(tb)
    vt = Table(title="BMS simulator checks of the charger")
    vt.add_column("check")
    vt.add_column("verdict")
    vt.add_column("detail")
    for r in report:
        colour = {"PASS": "green", "FAIL": "red"}.get(r.verdict, "yellow")
        vt.add_row(r.name, "[%s]%s[/]" % (colour, r.verdict),
                   (" ".join(x for x in (r.measured, r.limit and "limit " + r.limit, r.detail) if x))[:90])
    con.print(vt)
    with open(out / "report.txt", "w") as f:
        for r in report:
            f.write(str(r) + "\n")
    con.print("files: %s" % ", ".join(str(out / n) for n in
                                      ("session.log", "session.asc", "session.png", "summary.json", "report.txt")))
    ok = stage == "done" and pack.soc >= a.target - 1.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
