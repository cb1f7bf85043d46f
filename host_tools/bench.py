"""``make bench``: performance and resource budgets of the firmware, measured.

    make bench ARGS="--target qemu"  # the budgets, on the 32-bit target class (~15 s)
    make bench ARGS="--target qemu --profile"   # where the instructions go
    make bench                       # unix-port figures (~3-4 min on a 2-core machine)
    make bench ARGS="--quick"        # one session per figure, short charge (smoke)
    python -m host_tools.bench --only cpu,alloc --runs 5

The target bench (host_tools/benchlib/target.py) runs the frozen image on the
QEMU board: instruction counts (exact, repeatable), converted to STM32F405
time with a calibration measured in the same run; it writes
``bench/results/<date>-qemu.json``.  The unix bench writes
``bench/results/<date>-<machine>.json``: figures of the unix port on the
development machine (CPU medians of ``--runs`` sessions, measured by the
firmware process with ``time.ticks_us``), no MCU estimates.  See
docs/performance.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import socket
import sys
import time
from pathlib import Path

from host_tools.benchlib import figures as F

ROOT = Path(__file__).resolve().parents[1]
ALL = ("cpu", "alloc", "heap", "ingest", "trip", "speed")


def _fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%%.%df" % nd) % v
    return str(v)


def _verdict(f):
    if "pass" not in f:
        return ""
    return "PASS" if f["pass"] else "MISS"


def table(res: dict) -> str:
    """Plain-text table (also readable in CI logs)."""
    L = []
    add = L.append
    add("Firmware performance budgets (%s, %s)" % (res["machine"], res["date"]))
    add("Unix-port figures; MCU figures and budgets: make bench ARGS=\"--target qemu\"")
    add("Timings: medians of %d sessions, measured inside the firmware process "
        "(time.ticks_us); this machine runs other processes too." % res["runs"])
    add("")
    add("%-44s %14s %14s  %s" % ("figure", "unix port", "", "goal / verdict"))
    add("-" * 100)
    f = res["figures"]
    if "cpu" in f:
        c = f["cpu"]
        for g, s in c["stages"].items():
            add("%-44s %14s %14s  %s" % ("1. CPU, %s stage (us/sim-s | load)" % g,
                                         _fmt(s["cpu_us_per_s"], 0),
                                         "", ""))
        add("%-44s %s" % ("   charging, per task (us/sim-s)",
                          ", ".join("%s %d" % kv for kv in c["stages"]["charging"]["tasks_us_per_s"].items())))
    if "passes" in f:
        p = f["passes"]
        add("%-44s %14s %14s  %s" % ("2. worst scheduler pass, charging (us)", _fmt(p["pass_wcet_us"], 0),
                                     "", ""))
        add("%-44s %14s %14s  %s" % ("   median of the per-second worst (us)", _fmt(p["typical_worst_per_s_us"], 0),
                                     "", "OS noise filtered"))
        add("%-44s %s" % ("   per task worst run (us)",
                          ", ".join("%s %d" % kv for kv in p["task_wcet_us"].items())))
    if "alloc" in f:
        a = f["alloc"]
        add("%-44s %14s %14s  %s" % ("3. heap alloc per control tick (bytes)", _fmt(a["value"], 2), "",
                                     "0 %s" % _verdict(a)))
        add("%-44s %s" % ("   per task (bytes in charging)",
                          ", ".join("%s %d" % (n, t["bytes"]) for n, t in a["tasks"].items())))
    if "heap" in f:
        h = f["heap"]
        add("%-44s %14s %14s  %s" % ("4. smallest heap, full session (wK)", _fmt(h["value"]), "",
                                     "%s %s" % (h["goal"], _verdict(h))))
        if "split" in h:
            sp = h["split"]
            add("%-44s %s" % ("   imports / app objects (wK, measured)",
                              "%.1f / %.1f" % (sp["import_wK"], sp["app_wK"])))
            add("%-44s %14s %14s  %s" % ("   frozen modules (wK, estimate)", _fmt(h["frozen_est_wK"]), "",
                                         "imports on the heap with frozen modules: %.1f wK"
                                         % sp["frozen_import_wK_est"]))
    if "ingest" in f:
        g = f["ingest"]
        for n, m in g["mixes"].items():
            add("%-44s %14s %14s  %s" % ("5. CAN ingest, %s frames (frames/s)" % n,
                                         _fmt(m["capacity_fps_unix"]), "",
                                         "%.1f us/frame" % m["us_per_frame"]))
    if "trip" in f:
        t = f["trip"]
        for n, r in t["rows"].items():
            if "error" in r:
                add("%-44s %s" % ("6. trip %s" % n, r["error"]))
            else:
                add("%-44s %14s %14s  %s" % ("6. trip %s (sim ms)" % n, "pwr off " + _fmt(r["pwr_off_ms"]),
                                             "K1/K2 " + _fmt(r["k12_open_ms"]), r["input"]))
        add("%-44s %14s %14s  %s" % ("   worst K1/K2 open (sim ms)", "", _fmt(t["value"]),
                                     "%s %s" % (t["goal"], _verdict(t))))
    if "speed" in f:
        s = f["speed"]
        add("%-44s %14s %14s  %s" % ("7. SIL speed (sim s / wall s)", _fmt(s["value"]), "",
                                     "%.0f s simulated in %.1f s" % (s["duration_s"], s["wall_s"])))
    if res.get("errors"):
        add("")
        for k, e in res["errors"].items():
            add("ERROR %s: %s" % (k, e))
    add("-" * 100)
    add("total bench wall time %.0f s" % res["wall_s"])
    return "\n".join(L)


def run(only=ALL, runs=3, quick=False, full_charge=False) -> dict:
    t0 = time.monotonic()
    res = {"date": datetime.date.today().isoformat(), "machine": socket.gethostname(),
           "platform": platform.platform(), "python": sys.version.split()[0],
           "quick": quick, "runs": runs, "note": F.TARGET_NOTE, "figures": {}, "errors": {}}
    figs = res["figures"]

    def step(key, fn):
        try:
            return fn()
        except Exception as e:          # report and go on with the others
            res["errors"][key] = "%s: %s" % (type(e).__name__, e)
            return None

    base = None
    if "cpu" in only or "ingest" in only:
        out = step("cpu", lambda: F.cpu_and_passes(runs))
        if out:
            figs["cpu"], figs["passes"], _ = out
            base = figs["cpu"]["stages"]["charging"]
    if "alloc" in only:
        v = step("alloc", F.alloc_per_tick)
        if v:
            figs["alloc"] = v
    if "heap" in only:
        v = step("heap", lambda: F.heap(quick=quick))
        if v:
            figs["heap"] = v
    if "ingest" in only and base is not None:
        v = step("ingest", lambda: F.can_ingest(max(1, runs if not quick else 1), base))
        if v:
            figs["ingest"] = v
    if "trip" in only:
        v = step("trip", F.trip_latency)
        if v:
            figs["trip"] = v
    if "speed" in only:
        v = step("speed", lambda: F.sil_speed(quick, full_charge))
        if v:
            figs["speed"] = v
    res["wall_s"] = round(time.monotonic() - t0, 1)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 session per figure, short charge, heap probe at 100wK only")
    ap.add_argument("--runs", type=int, default=None, help="sessions per timing figure (default 5, quick 1)")
    ap.add_argument("--only", default=",".join(ALL), help="comma list of: " + ",".join(ALL))
    ap.add_argument("--full-charge", action="store_true",
                    help="figure 7 on the main command's default charge (30 -> 90 %%, many minutes)")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/<date>-<machine>.json)")
    ap.add_argument("--target", choices=["unix", "qemu"], default="unix",
                    help="qemu: the budgets on the 32-bit QEMU board (instruction counts, calibrated)")
    ap.add_argument("--profile", action="store_true",
                    help="with --target qemu: per-task and per-function instruction counts "
                         "of steady charging (tests/mp/prof_charging.py on the test image)")
    a = ap.parse_args(argv)
    if a.target == "qemu":
        return _target(a)
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    bad = [x for x in only if x not in ALL]
    if bad:
        ap.error("unknown figure(s): %s" % ", ".join(bad))
    runs = a.runs or (1 if a.quick else 5)
    res = run(only, runs, a.quick, a.full_charge)
    print(table(res))
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / ("%s-%s.json" % (res["date"], res["machine"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("results: %s" % out)
    return 1 if res["errors"] else 0


def _target(a) -> int:
    from host_tools.benchlib import target as T
    if a.profile:
        rows = T.profile()
        print(T.profile_table(rows))
        return 0
    res = T.measure(quick=a.quick)
    res["date"] = datetime.date.today().isoformat()
    print(T.table(res))
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / ("%s-qemu.json" % res["date"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("results: %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
