"""The main job: a complete simulated charge on the SIL bench.

    make charge                      # 60 kWh LFP pack, 30 % -> 90 %
    make charge ARGS="--soc 20 --target-soc 80 --chemistry NCM --capacity-kwh 75"

The firmware runs unmodified on the MicroPython unix port in lock-step
simulated time against the plant model (power stage, contactors, battery
pack) and our BMS simulator on the firmware's CAN bus.  Live progress is
shown while it runs; at the end: a summary, the bus as a candump ``.log``
and a Vector ``.asc``, a PNG plot of the session, the BMS simulator's
verdicts (also as JUnit XML) and the firmware's telemetry records, all under
``--out`` (default ``out/charge``).  The battery options are those of the
BMS simulator (``python -m host_tools.bms --help``).

Exit status: 0 the charge reached the target and no check FAILed; 1 it did
not (the reason is printed: a refused start, a stop, a FAIL); 2 bad options.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import can

from host_tools import clitools
from host_tools.bms import options
from host_tools.bms.battery import BatteryPack
from host_tools.bms.checks import FAIL, NOT_RUN, PASS, junit_xml, overall
from host_tools.bms.simulator import BmsSimulator
from host_tools.sil import Plant, Simulation
from host_tools.sil.link import ROOT, prepare_board_dir

PGN_BCL, PGN_CEM, PGN_BEM, PGN_CST, PGN_BST, PGN_CCS = 0x1000, 0x1F00, 0x1E00, 0x1A00, 0x1900, 0x1200
PGN_CML = 0x0800

DEFAULTS = {"chemistry": "LFP", "cells": 104, "soc": 30.0, "target_soc": 90.0,
            "max_current_a": 250.0, "temp_c": 25.0}
DEFAULT_KWH = 60.0


@dataclass
class Trace:
    t: list = field(default_factory=list)
    v: list = field(default_factory=list)
    i: list = field(default_factory=list)
    v_dem: list = field(default_factory=list)
    i_dem: list = field(default_factory=list)
    i_cml: list = field(default_factory=list)
    i_pwr: list = field(default_factory=list)
    soc: list = field(default_factory=list)
    t_max: list = field(default_factory=list)
    t_min: list = field(default_factory=list)
    t_gun: list = field(default_factory=list)
    cell_max: list = field(default_factory=list)
    cell_min: list = field(default_factory=list)


class BusWatch(can.Listener):
    """Remembers what a person wants in the summary: demand, limits, CEM/BEM, stops."""

    def __init__(self):
        self.v_dem = 0.0
        self.i_dem = 0.0
        self.cml_v = None
        self.cml_i = None
        self.cem = []
        self.bem = []
        self.cst = None
        self.bst = None
        self.frames = 0
        self.charger_frames = 0

    def on_message_received(self, msg):
        self.frames += 1
        cid = msg.arbitration_id
        pgn, sa = (cid >> 8) & 0x3FF00, cid & 0xFF
        d = bytes(msg.data)
        if sa == 0x56:
            self.charger_frames += 1
        if sa == 0xF4 and pgn == PGN_BCL and len(d) >= 4:
            self.v_dem = int.from_bytes(d[0:2], "little") / 10.0
            self.i_dem = 400.0 - int.from_bytes(d[2:4], "little") / 10.0
        elif sa == 0x56 and pgn == PGN_CML and len(d) >= 6:
            self.cml_v = int.from_bytes(d[0:2], "little") / 10.0
            self.cml_i = 400.0 - int.from_bytes(d[4:6], "little") / 10.0
        elif sa == 0x56 and pgn == PGN_CEM and (not self.cem or bytes(self.cem[-1].data) != d):
            self.cem.append(msg)
        elif sa == 0xF4 and pgn == PGN_BEM and (not self.bem or bytes(self.bem[-1].data) != d):
            self.bem.append(msg)
        elif sa == 0x56 and pgn == PGN_CST and self.cst is None:
            self.cst = msg
        elif sa == 0xF4 and pgn == PGN_BST and self.bst is None:
            self.bst = msg


def describe(msg) -> str:
    """'at 2313.6 s: 40 00 F0 F0 (BmsStopped=active ...)' for a status message."""
    if msg is None:
        return "-"
    from host_tools.logdecode import decode_messages
    recs = [r for r in decode_messages([msg]) if r["name"] != "TP"]
    fields = ""
    if recs:
        f = {k: v for k, v in recs[0]["fields"].items() if v not in ("normal", "not available")}
        fields = " ".join("%s=%s" % kv for kv in f.items())
    return "at %.1f s: %s%s" % (msg.timestamp, bytes(msg.data).hex(" ").upper(),
                                ("  (%s)" % fields) if fields else "")


def firmware_setting(key: str, config: str | None):
    """A firmware setting as the charger runs with it: the config file's value,
    else the schema default in firmware/config.py (for the plot's notes)."""
    if config:
        try:
            v = json.loads(Path(config).read_text()).get(key)
            if isinstance(v, int):
                return v
        except (OSError, ValueError, AttributeError):
            pass
    m = re.search(r'\("%s",\s*(-?\d+)' % re.escape(key), (ROOT / "firmware" / "config.py").read_text())
    return int(m.group(1)) if m else None


def plot(trace: Trace, stages, path: Path, title: str, notes: list, limits: dict) -> None:
    """The session: voltage, current (with every limit), SOC and cells,
    temperatures over the whole charge; on top, the start-up and the end
    zoomed in so that the short stages are visible."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec
    colours = {"handshake": "#fde2e4", "insulation": "#fad2e1", "recognition": "#e2ece9",
               "parameter": "#bee1e6", "precharge": "#cddafd", "charging": "#dfe7fd",
               "stopping": "#ffe5b4", "statistics": "#e9f5db", "finish": "#dddddd",
               "rehandshake": "#ffcad4"}
    t_end = trace.t[-1] if trace.t else 0.0
    spans = [(t0, nxt[0], name) for (t0, name), nxt in zip(stages, stages[1:] + [(t_end, "")])]
    fig = plt.figure(figsize=(13, 13))
    gs = GridSpec(5, 2, figure=fig, height_ratios=[1.1, 1, 1, 1, 1], hspace=0.35, wspace=0.25)

    def bands(ax, lo, hi, label):
        for t0, t1, name in spans:
            c = colours.get(name)
            if not c or t1 < lo or t0 > hi:
                continue
            ax.axvspan(max(t0, lo), min(t1, hi), color=c, alpha=0.8, lw=0)
            if label and min(t1, hi) - max(t0, lo) > 0.06 * (hi - lo):
                ax.text((max(t0, lo) + min(t1, hi)) / 2, 0.98, name, transform=ax.get_xaxis_transform(),
                        fontsize=7, ha="center", va="top", rotation=90)

    # -- zoom panels: start-up (until 20 s into charging) and the end -------
    t_chg = next((t0 for t0, _, n in spans if n == "charging"), None)
    t_stop = next((t0 for t0, _, n in spans if n in ("stopping", "rehandshake")), None)
    zooms = [(0.0, (t_chg + 8.0) if t_chg is not None else min(t_end, 60.0), "start-up"),
             ((t_stop - 10.0) if t_stop is not None else max(0.0, t_end - 60.0), t_end, "end")]
    for k, (lo, hi, name) in enumerate(zooms):
        ax = fig.add_subplot(gs[0, k])
        sel = [j for j, t in enumerate(trace.t) if lo <= t <= hi]
        ts = [trace.t[j] for j in sel]
        ax.plot(ts, [trace.i[j] for j in sel], color="tab:blue", label="output current (A)")
        ax.plot(ts, [trace.i_dem[j] for j in sel], "--", color="tab:orange", label="BCL current demand (A)")
        axv = ax.twinx()
        axv.plot(ts, [trace.v[j] for j in sel], color="tab:green", lw=0.9, label="output voltage (V)")
        ax.set_xlim(lo, hi if hi > lo else lo + 1)
        bands(ax, lo, hi, True)
        ax.set_title("%s (s)" % name, fontsize=9)
        ax.set_ylabel("A")
        axv.set_ylabel("V")
        ax.grid(alpha=0.3)
        if k == 1:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = axv.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8)

    # -- the whole charge -----------------------------------------------------
    tm = [x / 60.0 for x in trace.t]
    axes = [fig.add_subplot(gs[r, :]) for r in range(1, 5)]
    for a_ in axes[1:]:
        a_.sharex(axes[0])
    ax = axes
    ax[0].plot(tm, trace.v, label="output voltage")
    ax[0].plot(tm, trace.v_dem, "--", label="BCL voltage demand")
    if limits.get("bcp_v"):
        ax[0].axhline(limits["bcp_v"], color="tab:red", lw=0.8, ls=":", label="BCP max voltage")
    ax[0].set_ylabel("V")
    ax[1].plot(tm, trace.i, label="output current")
    ax[1].plot(tm, trace.i_dem, "--", label="BCL current demand")
    if any(x is not None for x in trace.i_cml):
        ax[1].plot(tm, [x if x is not None else float("nan") for x in trace.i_cml], ":", color="tab:red",
                   label="CML max current (charger)")
    if limits.get("bcp_i"):
        ax[1].axhline(limits["bcp_i"], color="tab:purple", lw=0.8, ls="-.", label="BCP max current (BMS)")
    if any(x is not None for x in trace.i_pwr):
        ax[1].plot(tm, [x if x is not None else float("nan") for x in trace.i_pwr], "-", color="tab:brown",
                   lw=4, alpha=0.35, zorder=1, label="power limit: rated power / V")
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
    for a_ in ax:
        for t0, t1, name in spans:
            c = colours.get(name)
            if c:
                a_.axvspan(t0 / 60.0, t1 / 60.0, color=c, alpha=0.5, lw=0)
        a_.grid(alpha=0.3)
    for a_, extra in ((ax[0], None), (ax[1], None), (ax[2], ax2b), (ax[3], None)):
        h, lab = a_.get_legend_handles_labels()
        if extra is not None:
            h2, l2 = extra.get_legend_handles_labels()
            h, lab = h + h2, lab + l2
        a_.legend(h, lab, loc="upper left", bbox_to_anchor=(1.06 if extra is not None else 1.01, 1.0),
                  fontsize=8)
    used = [n for n in colours if any(s[2] == n for s in spans)]
    import matplotlib.patches as mpatches
    fig.legend([mpatches.Patch(color=colours[n]) for n in used], used, loc="lower center",
               ncol=min(len(used), 10) or 1, fontsize=8, title="stages", title_fontsize=8, frameon=False)
    if notes:
        fig.text(0.01, 0.055, "\n".join(notes), fontsize=8, va="top")
    fig.suptitle(title)
    fig.subplots_adjust(left=0.06, right=0.78, top=0.94, bottom=0.12)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="make charge ARGS=\"...\"", description=__doc__.split("\n\n")[0],
                                 epilog="Pack defaults: LFP, 104 cells, 60 kWh, SOC 30 -> 90 %%, 250 A, 25 C.")
    ap.add_argument("--config", default=None, help="firmware configuration JSON (the board's config.json)")
    ap.add_argument("--step-ms", type=int, default=10, help="lock-step size (simulated ms)")
    ap.add_argument("--max-minutes", type=float, default=240.0, help="give up after this much simulated time")
    ap.add_argument("--out", default="out/charge", help="output directory (default out/charge)")
    ap.add_argument("--no-live", action="store_true", help="no live display (CI logs)")
    options.add_options(ap, dict(DEFAULTS, capacity_kwh=DEFAULT_KWH))
    return ap


def _fmt_s(s: float) -> str:
    s = max(0, int(s))
    return "%d:%02d:%02d" % (s // 3600, s % 3600 // 60, s % 60) if s >= 3600 else "%d:%02d" % (s // 60, s % 60)


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.capacity_ah is None and a.capacity_kwh is None:
        a.capacity_kwh = DEFAULT_KWH
    if a.config and not Path(a.config).is_file():
        ap.error("--config %s: no such file" % a.config)
    try:
        params = options.make_params(a, DEFAULTS, a.scenario).resolved()
    except ValueError as e:
        ap.error(str(e))

    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    con = clitools.out_console()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    kwh = options.capacity_kwh(params)
    pack = BatteryPack(params.chemistry, params.capacity_ah, params.cells, params.soc,
                       params.resistance_ohm, params.soc_spread_pct, params.capacity_spread_pct,
                       params.seed, params.ambient_c, params.temp_c, params.probes)
    plant = Plant(pack)
    board = prepare_board_dir(out / "board", a.config, fresh=True)
    sim = Simulation(step_ms=a.step_ms, plant=plant, board_dir=board)
    log_w = can.CanutilsLogWriter(str(out / "session.log"), channel="can0")
    asc_w = can.ASCWriter(str(out / "session.asc"), channel=1)
    watch = BusWatch()
    for w in (log_w, asc_w, watch):
        sim.hub.listeners.append(w.on_message_received)
    bms = BmsSimulator(sim.bus(), params, pack=pack, scenario=a.scenario, drive_pack=False,
                       apply_scenario_params=False)
    sim.step_hooks.append(bms.poll)
    rated_p = firmware_setting("rating.max_p", a.config)      # 0.1 kW
    trace = Trace()
    stages: list[tuple[float, str]] = []
    seen_texts = 0
    stage = "boot"
    info = {"stop": "", "refused": [], "config": [], "bad_config": False, "fail": "", "reached": set()}
    t_wall0 = time.monotonic()
    end_ms = int(a.max_minutes * 60_000)
    next_sample = 0
    soc_hist: list[tuple[float, float]] = []

    def poll_texts():
        nonlocal seen_texts, stage
        for t_ms, text in sim.texts[seen_texts:]:
            kind, _, rest = text.partition(" ")
            if kind == "stage":
                stage = rest
                stages.append((t_ms / 1000.0, rest))
                info["reached"].add(rest)
            elif kind == "stop":
                info["stop"] = rest
            elif kind == "refused":
                info["refused"].append(rest)
            elif kind == "config":
                info["config"].append(rest)
            elif kind == "boot" and rest.endswith("config=BAD"):
                info["bad_config"] = True
            elif kind == "fail-safe":
                info["fail"] = rest
        seen_texts = len(sim.texts)

    def eta():
        """Simulated time to the target SOC at the rate of the last minute."""
        if len(soc_hist) < 2 or stage != "charging":
            return None
        (t0, s0), (t1, s1) = soc_hist[0], soc_hist[-1]
        if s1 <= s0 or t1 <= t0:
            return None
        return (params.target_soc - s1) * (t1 - t0) / (s1 - s0)

    def view():
        tb = Table.grid(padding=(0, 2))
        tb.add_column(style="bold")
        tb.add_column()
        soc = pack.soc
        n = max(0, min(40, int(soc / 2.5)))
        t_s = sim.now_ms / 1000.0
        wall = time.monotonic() - t_wall0
        speed = t_s / wall if wall > 0 else 0
        tb.add_row("sim time", "%s   (x%.0f real time)" % (_fmt_s(t_s), speed))
        tb.add_row("stage", stage)
        tb.add_row("SOC", Text("[%s%s] %5.1f %%  (target %.0f %%)" % ("#" * n, "." * (40 - n), soc,
                                                                     params.target_soc)))
        e = eta()
        tb.add_row("remaining", "-" if e is None else "%s simulated, about %s here" % (
            _fmt_s(e), _fmt_s(e / speed) if speed else "?"))
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
                # 1 s samples while charging; 50 ms around the short stages
                # (start-up, the first seconds of charging, the end) for the zooms
                fine = stage != "charging" or (stages and sim.now_ms / 1000.0 - stages[-1][0] < 10)
                next_sample += 50 if fine else 1000
                temps = pack.temperatures()
                cells = pack.cell_voltages()
                trace.t.append(sim.now_ms / 1000.0)
                trace.v.append(plant.v_out)
                trace.i.append(plant.i)
                trace.v_dem.append(watch.v_dem)
                trace.i_dem.append(watch.i_dem)
                trace.i_cml.append(watch.cml_i)
                trace.i_pwr.append(min(rated_p * 100.0 / plant.v_out, 1000.0)
                                   if rated_p and plant.v_out > 50 and stage == "charging" else None)
                trace.soc.append(pack.soc)
                trace.t_max.append(max(temps))
                trace.t_min.append(min(temps))
                trace.t_gun.append(plant.t_gun)
                trace.cell_max.append(max(cells))
                trace.cell_min.append(min(cells))
                soc_hist.append((sim.now_ms / 1000.0, pack.soc))
                del soc_hist[:-60]
                now = time.monotonic()
                if live:
                    live.update(view())
                elif now - last_print > 5:
                    last_print = now
                    e = eta()
                    con.print("t=%6.0fs %-11s SOC %5.1f%% %6.1f V %6.1f A%s" % (
                        sim.now_ms / 1000, stage, pack.soc, plant.v_out, plant.i,
                        "" if e is None else "  %s to target" % _fmt_s(e)), highlight=False)
            if stage in ("done",) or (bms.done and stage in ("done", "idle", "connected")):
                sim.run_for(500)
                poll_texts()
                break
            # A charger that will not start: no need to wait for --max-minutes.
            if (info["bad_config"] or info["fail"]) and sim.now_ms >= 3000:
                break
            if info["refused"] and sim.now_ms >= 10000 and "handshake" not in info["reached"]:
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
    report = bms.report()
    charged = "charging" in info["reached"]
    # Why the run did not charge, in the firmware's own words.
    why_not = ""
    if info["bad_config"]:
        why_not = "the charger refused to start: bad configuration: %s" % ("; ".join(info["config"]) or "?")
    elif info["fail"]:
        why_not = "the firmware halted (H-9): %s" % info["fail"]
    elif info["refused"]:
        why_not = "the charger refused to start: %s" % info["refused"][-1]
    elif not charged:
        why_not = "no charging stage reached within %.0f simulated minutes (final stage %s)" % (
            dur_s / 60.0, stage)
    verdict = overall(report)
    if not charged and verdict == PASS:
        verdict = NOT_RUN                  # a run that never charged proves nothing
    target_ok = pack.soc >= params.target_soc - 1.0
    ok = stage == "done" and target_ok and verdict != FAIL and charged

    cml_i = watch.cml_i
    limit_note = ""
    v_chg = [v for v, s in zip(trace.v, trace.t) if v > 50]
    i_mean = None
    if charged and trace.i:
        i_chg = sorted(x for x in trace.i if x > 1.0)
        i_mean = i_chg[len(i_chg) // 2] if i_chg else None
    if i_mean is not None and v_chg:
        v_med = sorted(v_chg)[len(v_chg) // 2]
        cands = [("BCL demand (BMS)", max(trace.i_dem) if trace.i_dem else None),
                 ("BCP max current (BMS)", params.max_current_a),
                 ("CML max current (charger rating.max_i)", cml_i),
                 ("charger power rating.max_p %.1f kW / %.0f V" % (rated_p / 10.0, v_med) if rated_p else "",
                  rated_p * 100.0 / v_med if rated_p else None)]
        cands = [(n, x) for n, x in cands if x]
        if cands:
            name, lim = min(cands, key=lambda c: c[1])
            limit_note = "current %.0f A: limited by %s = %.0f A (others: %s)" % (
                i_mean, name, lim, ", ".join("%s %.0f A" % c for c in cands if c[0] != name))

    summary = {
        "battery": "%s %.0f kWh (%d cells, %.0f Ah)" % (params.chemistry, kwh, params.cells, params.capacity_ah),
        "soc_start": params.soc, "soc_end": round(pack.soc, 2), "soc_target": params.target_soc,
        "energy_kwh": round(plant.energy_wh / 1000.0, 3),
        "duration_s": round(dur_s, 1),
        "charged": charged,
        "did_not_charge_because": why_not or None,
        "stop_reason_charger": info["stop"] or None,
        "stop_reason_bms": bms.stop_reason or None,
        "cst": describe(watch.cst) if watch.cst else None,
        "bst": describe(watch.bst) if watch.bst else None,
        "cem": [describe(m) for m in watch.cem],
        "bem": [describe(m) for m in watch.bem],
        "final_stage": stage,
        "current_limit": limit_note or None,
        "max_inrush_a": round(plant.inrush_a, 1),
        "frames": watch.frames,
        "telemetry_records": len(sim.telemetry),
        "wall_s": round(wall, 1),
        "speedup": round(dur_s / wall, 1) if wall else None,
        "bms_verdict": verdict,
        "checks": [r.__dict__ for r in report],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "junit.xml").write_text(junit_xml(report))
    (out / "telemetry.bin").write_bytes(b"".join(r for _, r in sim.telemetry))
    notes = []
    if limit_note:
        notes.append(limit_note)
    notes.append("max inrush at K1/K2 closing %.1f A (pre-charge matched the battery voltage)"
                 % plant.inrush_a if plant.inrush_a < 1.0 else
                 "max inrush at K1/K2 closing %.1f A" % plant.inrush_a)
    if trace.t:
        plot(trace, stages, out / "session.png",
             "%s: SOC %.0f%% -> %.1f%%, %.2f kWh in %.1f min" % (
                 summary["battery"], params.soc, pack.soc, plant.energy_wh / 1000.0, dur_s / 60.0),
             notes, {"bcp_i": params.max_current_a, "bcp_v": params.max_voltage_v})

    tb = Table(title="Summary")
    tb.add_column("item")
    tb.add_column("value")
    rows = [
        ("battery", summary["battery"]),
        ("SOC", "%.1f %% -> %.1f %% (target %.0f %%)" % (params.soc, pack.soc, params.target_soc)),
        ("energy", "%.3f kWh in %s (simulated, x%s real time)" % (
            summary["energy_kwh"], _fmt_s(dur_s), summary["speedup"])),
    ]
    if why_not:
        rows.append(("DID NOT CHARGE", why_not))
    rows += [
        ("final stage", stage if stage != "boot" else "none: no session was started"),
        ("stop reason (charger)", info["stop"] or "-"),
        ("stop reason (BMS)", bms.stop_reason or "-"),
        ("CST (first)", summary["cst"] or "-"),
        ("BST (first)", summary["bst"] or "-"),
        ("CEM", "; ".join(summary["cem"]) or "none"),
        ("BEM", "; ".join(summary["bem"]) or "none"),
        ("current", limit_note or "-"),
        ("inrush at K1/K2", notes[-1].replace("max inrush at K1/K2 closing ", "") if charged
         else "- (K1/K2 never closed)"),
        ("telemetry", "%d records" % len(sim.telemetry)),
        ("BMS verdict", verdict + (" (nothing was charged)" if verdict == NOT_RUN and not charged else "")),
    ]
    for k, v in rows:
        tb.add_row(k, Text(str(v)))
    con.print(tb)
    vt = Table(title="BMS simulator checks of the charger")
    vt.add_column("check", no_wrap=True)
    vt.add_column("verdict", no_wrap=True)
    vt.add_column("detail")
    for r in report:
        colour = {PASS: "green", FAIL: "red"}.get(r.verdict, "yellow")
        vt.add_row(r.name, Text(r.verdict, style=colour),
                   Text(" ".join(x for x in (r.measured, r.limit and "limit " + r.limit, r.detail) if x)))
    con.print(vt)
    with open(out / "report.txt", "w") as f:
        for r in report:
            f.write(str(r) + "\n")
    con.print("files: %s" % ", ".join(str(out / n) for n in (
        "session.log", "session.asc", "session.png", "summary.json", "report.txt", "junit.xml",
        "telemetry.bin")), highlight=False)
    if not ok:
        reasons = [why_not] if why_not else []
        if charged and not target_ok:
            reasons.append("SOC %.1f %% short of the target %.0f %% (stop: %s)" % (
                pack.soc, params.target_soc, info["stop"] or bms.stop_reason or "-"))
        if verdict == FAIL:
            reasons.append("the BMS simulator FAILed the charger: %s" % ", ".join(
                r.name for r in report if r.verdict == FAIL))
        if charged and stage != "done" and not reasons:
            reasons.append("the session did not end (final stage %s)" % stage)
        con.print(Text("charge FAILED: " + "; ".join(reasons or ["?"]), style="bold red"))
    return 0 if ok else 1


if __name__ == "__main__":
    clitools.run(main)
