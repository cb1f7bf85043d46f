"""``make bench ARGS="--target qemu"``: the budgets measured on the target class.

The firmware runs frozen into the QEMU board's image (MPS2-AN385 Cortex-M3,
the GC heap of a PYBv1.1) under ``qemu-system-arm -icount shift=0``, where
``time.ticks_us()`` advances one microsecond per 1,000 guest instructions.
Every CPU figure the firmware reports about itself (scheduler ``total_us``,
``wcet_us``, the board's ``loop_us``) is therefore an exact instruction count
in thousands (kinstr): deterministic, the same on every run and machine, so
two builds can be compared to the instruction.

Converting to MCU time needs the cost of 1,000 instructions on the MCU,
``k`` (µs per kinstr).  It is measured in the same run: MicroPython's own
performance suite (``tests/perf_bench`` of the same source tree) runs on the
same image, and its instruction counts are compared with published timings
of the same benchmarks on real boards (``REFERENCE``; sources in
docs/performance.md).  The integer benchmarks decide ``k`` (the QEMU board
has no FPU, the F405 has one: float benchmarks cost it more instructions).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from .session import GROUPS, run_session, small_params

# Published run-perfbench timings on hardware, in µs (mean of the runner's
# repeats).  N=100..170 with M>=100 select the same workloads as our
# N=168 M=100 (benchrun.py picks the largest bm_params key with
# 10*n <= 12*N and m <= M).
REFERENCE = [
    {"id": "PYBV11", "mcu": "STM32F405RG, 168 MHz (pyboard v1.1)",
     "version": "master ~v1.25 preview, 2024-12-16", "params": "N=100 M=100",
     "source": "github.com/micropython/micropython pull 16015 (dpgeorge comment, 'master' column)",
     "us": {"bm_chaos": 141371, "bm_fannkuch": 81900, "bm_hexiom": 216779,
            "bm_nqueens": 238339, "bm_float": 43498}},
    {"id": "PYBV10-2022", "mcu": "STM32F405RG, 168 MHz (pyboard v1.0)",
     "version": "v1.18-150, 2022-02 (commit f2040bfc7e)", "params": "N=100 M=100",
     "source": "github.com/micropython/micropython commit f2040bfc7e message "
               "(scores; µs = 1e6 x factor / score)",
     "us": {"bm_chaos": 139903, "bm_fannkuch": 77429, "bm_hexiom": 208638,
            "bm_nqueens": 224218, "bm_float": 42313, "misc_pystone": 124711}},
    {"id": "NUCLEO_G474RE", "mcu": "STM32G474RE, 170 MHz, FLASH_LATENCY_4",
     "version": "~v1.27 preview, 2025-09", "params": "N=170 M=128",
     "source": "github.com/micropython/micropython pull 18073 (description, 'after' column)",
     "us": {"bm_chaos": 157714, "bm_fannkuch": 92167, "bm_hexiom": 240445,
            "bm_nqueens": 272934, "bm_float": 50194}},
]
PRIMARY = "PYBV11"              # the reference platform's floor
INTEGER = ("bm_fannkuch", "bm_hexiom", "bm_nqueens", "misc_pystone")
PERF_TESTS = ("bm_fannkuch", "bm_hexiom", "bm_nqueens", "misc_pystone", "bm_chaos", "bm_float")

BUS_FPS = 1900                  # saturated 250 kbit/s bus: 29-bit ids, 8 data bytes
BUDGETS = {"cpu_charging_pct": 20.0, "worst_pass_us": 1000.0,
           "cpu_saturated_bus_pct": 30.0, "heap_charging_bytes": 48 * 1024}


def _med(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- calibration
def perf_kinstr(tests=PERF_TESTS, image: Path | None = None) -> dict:
    """Instruction counts (kinstr) of MicroPython's perf suite on the image."""
    from host_tools import firmware
    from host_tools.sil.qemu import QemuMachine, ensure_image
    img = image or ensure_image("QEMU_M3")
    pb = firmware.source_tree() / "tests" / "perf_bench"
    runner = (pb / "benchrun.py").read_text()
    out = {}
    for name in tests:
        m = QemuMachine(image=img)
        try:
            m.raw_repl()
            src = (pb / (name + ".py")).read_text() + "\n" + runner + "\nbm_run(168, 100)\n"
            text, err = m.raw_exec(src, timeout=600)
        finally:
            m.proc.kill()
            m.close()
        parts = text.split()
        if err.strip() or not parts or not parts[0].lstrip("-").isdigit() or int(parts[0]) <= 0:
            raise RuntimeError("perf test %s failed on the target: %r %r" % (name, text, err))
        out[name] = int(parts[0])
    return out


def calibrate(kinstr: dict) -> dict:
    rows = []
    for ref in REFERENCE:
        per = {t: round(us / kinstr[t], 3) for t, us in ref["us"].items() if t in kinstr}
        ints = [v for t, v in per.items() if t in INTEGER]
        rows.append(dict(ref, k_per_test=per, k_integer_median=round(_med(ints), 3) if ints else None))
    prim = next(r for r in rows if r["id"] == PRIMARY)
    return {"k_us_per_kinstr": prim["k_integer_median"], "reference": PRIMARY,
            "method": ("perf_bench on the QEMU image (kinstr, deterministic) vs published µs on "
                       "the reference board; k = median over the integer benchmarks %s"
                       % ", ".join(t for t in INTEGER if t in prim["us"])),
            "kinstr": kinstr, "rows": rows}


# ---------------------------------------------------------------- session figures
def _bms_replay_frames():
    # copies of the BMS simulator's own BCL and BSM (see session.Flood): the
    # extra frames are filtered, decoded and update the session unchanged
    return [(0x181056F4, None), (0x181356F4, None)]


# The platform link in service (docs/security.md, "C-2 in service"): the
# board's key file holds the link keys of the suite (``sec.policy`` prefer,
# the default, then puts the link into service), and the link is sealed
# before the session as after a handshake in production.  The harness has
# no platform answering the handshake on the board's console, so the
# session keys are installed the way tests/mp/test_security_link.py does:
# a record layer of fixed test keys, made in the link task's four runs after
# the link is built (where a handshake's last four steps, the two
# directions' key schedules and MAC keys, would run).
_LINK_PRELUDE = """import security.platlink as _P
_b0 = _P._build
def _sealed(app, out, have):
    link = _b0(app, out, have)
    from security import linkrec as _L
    from security import linkservice as _S
    t0 = _S.PlatformLink.task
    st = []
    def task(self, now):
        # the handshake's last four steps: each direction's cipher key
        # schedule, then its MAC keys; then the record layer (the class's
        # method for those runs: no instance attribute)
        n = len(st)
        if n == 0:
            st.append(_L.cipher_of(%d, b'\\x11' * 16))
        elif n == 1:
            st.append(_L.Direction(%d, None, b'\\x22' * 32, st[0]))
        elif n == 2:
            st.append(_L.cipher_of(%d, b'\\x33' * 16))
        else:
            rx = _L.Direction(%d, None, b'\\x44' * 32, st[2])
            self.records = _L.RecordLayer(%d, None, None, st[1], rx)
            st.clear()
            _S.PlatformLink.task = t0
            for t in app.sched.tasks:
                if t.name == "link":
                    t.fn = self.task
    _S.PlatformLink.task = task
    return link
_P._build = _sealed
"""


def link_setup(suite: str) -> tuple[dict, dict]:
    """(config, Simulation keywords) of a charger with a sealed platform
    link of ``suite`` ("sm" or "aes") on the QEMU board."""
    import tempfile
    from host_tools import seckeys
    with tempfile.TemporaryDirectory(prefix="bench_keys_") as td:
        p = Path(td) / "keys.json"
        seckeys.new_keys(p)
        keys = p.read_bytes()
    cfg = {"sec.policy": "prefer", "sec.suite": suite}
    # the vehicle plugs in once the link is up (``LINK_PLUG_MS``): the link
    # is built and keyed only with no session in progress
    return cfg, {"qemu_files": {"keys.json": keys}, "plugged": False,
                 "qemu_prelude": _LINK_PRELUDE % ((1 if suite == "sm" else 2,) * 5)}


# when the vehicle plugs in with a link: after the link's four build runs and
# the four key runs (link task every 50 ms from 45 ms: the last at 445 ms)
LINK_PLUG_MS = 600


def _session(flood_fps: int = 0, quick: bool = False, link: str | None = None):
    """One charging session on the QEMU image; ``link``: with the platform
    link of that suite in service and sealed (``link_setup``)."""
    heap = {}
    cfg, sim_kw = link_setup(link) if link else (None, None)

    def on_step(sim):
        if sim.steps == 1:
            sim.stats(heap_watch=True)
        if link and "plugged_at_ms" not in heap and sim.now_ms >= LINK_PLUG_MS:
            heap["plugged_at_ms"] = sim.now_ms
            sim.plug()
        if "charging_at_ms" not in heap and any(t == "stage charging" for _, t in sim.texts[-5:]):
            heap["charging_at_ms"] = sim.now_ms
        if "charging_at_ms" in heap and "charging" not in heap and \
                sim.now_ms >= heap["charging_at_ms"] + 3000:
            st = sim.stats(collect=True)
            heap["charging"] = st["mem_alloc"]
            heap["charging_free"] = st["mem_free"]
    params = small_params() if quick or not flood_fps else small_params()
    r = run_session(cfg=cfg, params=params, target="qemu", on_step=on_step,
                    flood_rate=flood_fps, flood_frames=_bms_replay_frames() if flood_fps else None,
                    sim_kw=sim_kw)
    if not r.ok:
        raise RuntimeError("target session failed: %s" % r.why)
    for _, t in r.texts:
        if t.startswith("heap "):
            for kv in t.split()[1:]:
                k, v = kv.split("=")
                heap[k] = int(v)
    heap["peak"] = max(st.get("heap_peak", 0) for _, _, _, st in r.intervals) if r.intervals else 0
    return r, heap


def measure(quick: bool = False) -> dict:
    t0 = time.monotonic()
    res = {"target": "qemu-system-arm mps2-an385 (Cortex-M3), QEMU_M3 image, icount shift=0",
           "unit_note": "kinstr = 1,000 guest instructions (= one ticks_us microsecond under icount)",
           "figures": {}, "detail": {}}
    cal = calibrate(perf_kinstr())
    k = cal["k_us_per_kinstr"]
    res["k_us_per_kinstr"] = k
    res["calibration"] = cal

    r, heap = _session()
    det = res["detail"]
    stages = {}
    for g in GROUPS:
        s = r.stages[g]
        if not s.sim_ms:
            continue
        per_s = s.cpu_us * 1000.0 / s.sim_ms
        stages[g] = {"kinstr_per_s": round(per_s), "mcu_pct": round(per_s * k / 1e4, 1),
                     "tasks_kinstr_per_s": {n: round(us * 1000.0 / s.sim_ms)
                                            for n, us in s.task_us.items()},
                     "tasks_wcet_kinstr": dict(s.wcet_us), "pass_wcet_kinstr": s.pass_wcet_us,
                     "passes_per_s": round(s.passes * 1000.0 / s.sim_ms, 1)}
    det["stages"] = stages
    steady = r.steady("charging")
    worst_steady = max(st["pass_wcet_us"] for _, _, _, st in steady) if steady else None
    worst_all = max(st["pass_wcet_us"] for _, _, _, st in r.intervals)
    sess = r.in_session()
    worst_sess = max(st["pass_wcet_us"] for _, _, _, st in sess) if sess else None
    det["worst_pass_kinstr"] = {"steady_charging": worst_steady, "whole_session": worst_all,
                                "in_session": worst_sess,
                                "per_interval": [(g, a, b, st["pass_wcet_us"])
                                                 for g, a, b, st in r.intervals]}
    det["heap"] = heap
    # CAN: a saturated bus (BUS_FPS frames/s in all) during charging
    base_fps = r.stages["charging"].rx_frames * 1000.0 / r.stages["charging"].sim_ms
    extra = max(0, int(BUS_FPS - base_fps))
    rf, _ = _session(flood_fps=extra, quick=quick)
    c0, c1 = r.stages["charging"], rf.stages["charging"]
    fps1 = c1.rx_frames * 1000.0 / c1.sim_ms
    can0 = c0.task_us.get("can", 0) * 1000.0 / c0.sim_ms
    can1 = c1.task_us.get("can", 0) * 1000.0 / c1.sim_ms
    per_frame = (can1 - can0) / max(1e-9, fps1 - base_fps)
    sat = c1.cpu_us * 1000.0 / c1.sim_ms
    det["can"] = {"base_fps": round(base_fps), "flood_fps": round(fps1),
                  "kinstr_per_frame": round(per_frame, 3),
                  "saturated_kinstr_per_s": round(sat), "rx_overruns": c1.rx_overruns,
                  "flood_worst_pass_kinstr": c1.pass_wcet_us}
    ch = stages["charging"]
    res["figures"] = {
        "cpu_charging_pct": ch["mcu_pct"],
        "worst_pass_us": round(worst_all * k) if worst_all is not None else None,
        "worst_pass_steady_charging_us": round(worst_steady * k) if worst_steady else None,
        "worst_pass_in_session_us": round(worst_sess * k) if worst_sess else None,
        "cpu_saturated_bus_pct": round(sat * k / 1e4, 1),
        "heap_charging_bytes": heap.get("charging"),
        "heap_boot_free_bytes": heap.get("boot_free"),
        "heap_imports_bytes": (heap["imports_alloc"] - heap["boot_alloc"])
        if "imports_alloc" in heap else None,
        "heap_peak_bytes": heap.get("peak"),
        "can_us_per_frame": round(per_frame * k, 1),
    }
    f = res["figures"]
    res["budgets"] = {n: {"limit": lim, "value": f[n],
                          "pass": f[n] is not None and f[n] <= lim}
                      for n, lim in BUDGETS.items()}
    res["wall_s"] = round(time.monotonic() - t0, 1)
    return res


def table(res: dict) -> str:
    k = res["k_us_per_kinstr"]
    f = res["figures"]
    d = res["detail"]
    L = []
    add = L.append
    add("Firmware budgets on the target class: %s" % res["target"])
    add("Calibration: k = %.2f us of a 168 MHz STM32F405 per 1,000 instructions (%s)"
        % (k, res["calibration"]["method"]))
    for row in res["calibration"]["rows"]:
        add("   %-14s k per test: %s" % (row["id"], ", ".join(
            "%s %.2f" % (t.replace("bm_", "").replace("misc_", ""), v)
            for t, v in row["k_per_test"].items())))
    add("")
    add("%-46s %12s %12s  %s" % ("figure", "kinstr", "F405 (k)", "budget"))
    add("-" * 96)
    for g, s in d["stages"].items():
        add("%-46s %12d %11.1f%%  %s" % ("CPU, %s stage (per simulated s)" % g, s["kinstr_per_s"],
                                          s["mcu_pct"], "<= 20 %" if g == "charging" else ""))
        add("   %-43s %s" % ("per task (kinstr/s)", ", ".join(
            "%s %d" % kv for kv in s["tasks_kinstr_per_s"].items())))
        add("   %-43s %s" % ("per task worst run (kinstr)", ", ".join(
            "%s %d" % kv for kv in s["tasks_wcet_kinstr"].items())))
    wp = d["worst_pass_kinstr"]
    add("%-46s %12s %10s us  <= 1000 us" % ("worst scheduler pass, whole session",
                                            wp["whole_session"], f["worst_pass_us"]))
    add("%-46s %12s %10s us" % ("worst scheduler pass, steady charging", wp["steady_charging"],
                                f["worst_pass_steady_charging_us"]))
    if wp.get("in_session") is not None:
        add("%-46s %12s %10s us" % ("worst scheduler pass, in session (lock..done)",
                                    wp["in_session"], f.get("worst_pass_in_session_us")))
    c = d["can"]
    add("%-46s %12.2f %10.1f us" % ("CAN cost per received frame", c["kinstr_per_frame"],
                                     f["can_us_per_frame"]))
    add("%-46s %12d %11.1f%%  <= 30 %% (%d frames/s, overruns %d)" % (
        "CPU, charging with a saturated bus", c["saturated_kinstr_per_s"],
        f["cpu_saturated_bus_pct"], c["flood_fps"], c["rx_overruns"]))
    h = d["heap"]
    add("%-46s %12s" % ("heap free at boot (before the app) bytes", h.get("boot_free")))
    add("%-46s %12s" % ("heap taken by the imports bytes", f["heap_imports_bytes"]))
    add("%-46s %12s  <= 49152 (48 KB)" % ("heap live at charging (after gc) bytes",
                                          f["heap_charging_bytes"]))
    add("%-46s %12s" % ("heap high-water mark, whole session bytes", f["heap_peak_bytes"]))
    add("-" * 96)
    for n, b in res["budgets"].items():
        add("budget %-28s %10s <= %-8s %s" % (n, b["value"], b["limit"], "MET" if b["pass"] else "MISSED"))
    add("total bench wall time %.0f s" % res["wall_s"])
    return "\n".join(L)


# ---------------------------------------------------------------- profile
def profile() -> list:
    """tests/mp/prof_charging.py on the QEMU test image: (name, runs,
    total, min, max) in kinstr."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "target"))
    from qemu_support import run_mp_script
    res = run_mp_script("prof_charging")
    rows = []
    for line in res["__output__"].splitlines():
        p = line.split()
        if len(p) == 6 and p[0] == "PROF":
            rows.append((p[1],) + tuple(int(x) for x in p[2:]))
    if not rows:
        raise RuntimeError("profile failed on the target:\n" + res["__output__"][-2000:])
    return rows


def profile_table(rows) -> str:
    L = ["%-28s %8s %10s %8s %8s %8s" % ("item (kinstr)", "runs", "total", "mean", "min", "max")]
    for name, n, tot, lo, hi in rows:
        L.append("%-28s %8d %10d %8.1f %8d %8d" % (name, n, tot, tot / n, lo, hi))
    return "\n".join(L)
