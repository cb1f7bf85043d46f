"""Scale figures of the platform on a synthetic fleet (``fleet.py``).

The full fleet (10^4 chargers x 1 year, ~4 sessions a day, ~30 min each) is
about 1.4e10 status records and 7e10 demand records: far more than one
machine generates in a bench run.  So each figure is measured on a part and
extrapolated, and the output says which:

* **ingest**: full-rate records (demand 50 ms + status 250 ms + the rest) of
  ``--ingest-chargers`` chargers x ``--ingest-days`` days, published by one
  TCU per charger (ring on disk, QoS 1) through mosquitto into the store:
  records/s end to end; also the store alone (decode + Parquet write).
* **store size**: the same records after compaction: bytes per charger-day,
  x 365 = per charger-year, x 10^4 = the fleet-year.
* **analytics**: session features from the stored status records read back
  with DuckDB (records/s, measured on the detection fleet below), then A-1
  and A-2 over ``--fleet-sessions`` session rows (default the full fleet's
  count, the measured fleet's features tiled with new charger and vehicle
  ids): seconds, measured in full.  Whole-fleet analytics time = features at
  the measured rate over the fleet's status records + the measured A-1/A-2.
* **detection**: ``--det-chargers`` x ``--det-days`` with faults injected
  (``--fault-rate``); rates over the sessions after ``--warmup-days`` (a
  history must exist first): detection rate per fault kind (any alarm on the
  session), false-alarm rate on clean sessions (any alarm).
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import analytics as A
from .broker import Mosquitto
from .fleet import FAULTS, Fleet, FleetSpec
from .ingest import Ingestor
from .store import Store
from .tcu import Tcu
from . import wire as W

FLEET_CHARGERS = 10_000


def add_args(p):
    p.add_argument("--out", default="out/platform-bench")
    p.add_argument("--ingest-chargers", type=int, default=4)
    p.add_argument("--ingest-days", type=int, default=1)
    p.add_argument("--det-chargers", type=int, default=20)
    p.add_argument("--det-days", type=int, default=60)
    p.add_argument("--warmup-days", type=int, default=20)
    p.add_argument("--fault-rate", type=float, default=0.03)
    p.add_argument("--sessions-per-day", type=float, default=4.0)
    p.add_argument("--fleet-sessions", type=int, default=0,
                   help="session rows for the A-1/A-2 timing (0: the full fleet-year)")
    p.add_argument("--seed", type=int, default=1)


def _ingest(a, work: Path) -> dict:
    spec = FleetSpec(chargers=a.ingest_chargers, days=a.ingest_days, demand=True, seed=a.seed,
                     sessions_per_day=a.sessions_per_day, fault_rate=0.0)
    fl = Fleet(spec)
    streams: dict = {}
    for d in range(spec.days):
        s = fl.sessions_of_day(d)
        if len(s):
            for cid, (n0, recs) in fl.streams(s).items():
                streams.setdefault(cid, []).extend(recs)
    total = sum(len(v) for v in streams.values())
    # the store alone
    st0 = Store(work / "store-direct")
    t = time.perf_counter()
    for cid, recs in streams.items():
        for k in range(0, len(recs), 200):
            st0.add_batch(W.pack_batch(cid, k, 0, recs[k:k + 200]))
    st0.flush()
    direct_s = time.perf_counter() - t
    st0.close()
    # through mosquitto
    with Mosquitto() as b:
        store = Store(work / "store")
        ing = Ingestor(store, b.host, b.port, flush_s=0.25)
        tcus = [Tcu(cid, b.host, b.port, work / ("ring-%d" % cid), window=64) for cid in streams]
        t = time.perf_counter()

        def feed(tcu, recs):
            for k in range(0, len(recs), 2000):
                for r in recs[k:k + 2000]:
                    tcu.add(r)
                tcu.pump()
            tcu.drain(600)
        th = [threading.Thread(target=feed, args=(tc, streams[tc.cid])) for tc in tcus]
        for x in th:
            x.start()
        for x in th:
            x.join()
        deadline = time.monotonic() + 600
        while store.stats["records"] + store._buf_rows * 0 < total and time.monotonic() < deadline:
            ing.flush()
            time.sleep(0.05)
        ing.flush()
        mqtt_s = time.perf_counter() - t
        stored = sum(store.ranges.count(c) for c in streams)
        for tc in tcus:
            tc.close()
        ing.close()
        comp = store.compact(all_days=True)
        size = store.size_bytes("records")
        store.close()
    charger_days = a.ingest_chargers * a.ingest_days
    per_cd = size / charger_days
    return {"records": total, "stored": stored, "duplicates_or_lost": total - stored,
            "mqtt_records_per_s": total / mqtt_s, "mqtt_s": mqtt_s,
            "store_only_records_per_s": total / direct_s,
            "records_per_charger_day": total / charger_days,
            "bytes_per_record": size / total, "bytes_per_charger_day": per_cd,
            "bytes_per_charger_year": per_cd * 365, "fleet_year_tb": per_cd * 365 * FLEET_CHARGERS / 1e12,
            "compaction": comp}


def _detect(a, work: Path) -> tuple[dict, A.Features]:
    spec = FleetSpec(chargers=a.det_chargers, days=a.det_days, fault_rate=a.fault_rate, seed=a.seed + 1,
                     sessions_per_day=a.sessions_per_day)
    fl = Fleet(spec)
    store = Store(work / "det-store")
    sess = []
    t = time.perf_counter()
    for d in range(spec.days):
        s = fl.sessions_of_day(d)
        if len(s):
            sess.append(s)
            store.add_table(fl.table(s))
    store.flush()
    gen_s = time.perf_counter() - t
    S = np.concatenate(sess)
    # features per group of chargers (a session never spans chargers): the
    # memory stays that of a few chargers' records
    read_s = feat_s = 0.0
    n_status = 0
    parts = []
    ids = [int(c) for c in fl.charger_ids]
    for k in range(0, len(ids), 5):
        t = time.perf_counter()
        tab = store.records("charger IN (%s) AND (type = 4 OR type = 5)" % ",".join(map(str, ids[k:k + 5])),
                            A.COLUMNS)
        read_s += time.perf_counter() - t
        t = time.perf_counter()
        parts.append(A.features(tab))
        feat_s += time.perf_counter() - t
        n_status += tab.num_rows
        del tab
    f = A.Features.concat(parts)
    t = time.perf_counter()
    al, a1, a2, ref = A.analyse(f)
    rules_s = time.perf_counter() - t
    mask = A.session_alarm_mask(f, a1, a2)
    truth = {(int(c), int(n) & 0xFFFF): (int(fa), float(sv)) for c, n, fa, sv in
             zip(S["charger_id"], S["session_no"], S["fault"], S["severity"])}
    fault = np.array([truth[(int(c), int(n))][0] for c, n in zip(f.cols["charger_id"], f.cols["session"])])
    sev = np.array([truth[(int(c), int(n))][1] for c, n in zip(f.cols["charger_id"], f.cols["session"])])
    t0 = int(np.min(f.cols["start_ms"])) + a.warmup_days * 86_400_000
    ev = f.cols["start_ms"] >= t0
    out = {"sessions": len(f), "evaluated_sessions": int(ev.sum()), "status_records": n_status,
           "generate_s": gen_s, "read_s": read_s, "features_s": feat_s, "rules_s": rules_s,
           "features_records_per_s": n_status / (read_s + feat_s),
           "clean_sessions": int((ev & (fault == 0)).sum()),
           "false_alarm_rate": float(mask[ev & (fault == 0)].mean()),
           "alarms_by_rule_on_clean": {
               "A-1": int(sum((a1[m]["alarm"] & ev & (fault == 0)).sum() for m in A.METRICS)),
               "A-2": int((a2["alarm"].any(axis=1) & ev & (fault == 0)).sum())}}
    det = {}
    for k, name in FAULTS.items():
        if k == 0:
            continue
        sel = ev & (fault == k)
        strong = sel & (sev >= 0.6)
        det[name] = {"sessions": int(sel.sum()), "detected": float(mask[sel].mean()) if sel.any() else None,
                     "detected_severity_ge_0.6": float(mask[strong].mean()) if strong.any() else None,
                     "A-1_alarms": {m: int((a1[m]["alarm"] & sel).sum()) for m in A.METRICS},
                     "A-2_alarms": int((a2["alarm"].any(axis=1) & sel).sum())}
    out["detection"] = det
    allf = ev & (fault > 0)
    out["detection_rate_all_faults"] = float(mask[allf].mean()) if allf.any() else None
    store.close()
    return out, f


def _fleet_rules(a, f: A.Features, n_target: int) -> dict:
    """A-1 and A-2 over n_target sessions: ``f`` tiled, new charger/vehicle ids."""
    reps = max(1, int(np.ceil(n_target / len(f))))
    idx = np.tile(np.arange(len(f)), reps)[:n_target]
    rep = np.repeat(np.arange(reps), len(f))[:n_target]
    _, vk = np.unique(f.cols["vin"].astype(str), return_inverse=True)
    vk = vk.reshape(-1)
    cols = {m: f.cols[m][idx] for m in A.METRICS}
    cols["start_ms"] = f.cols["start_ms"][idx]
    cols["charger_id"] = f.cols["charger_id"][idx] + rep * 1_000_000
    cols["vehicle_key"] = vk[idx] + rep * (int(vk.max()) + 1)
    del rep
    g = A.Features(cols, None, None)
    t = time.perf_counter()
    a1 = A.three_sigma(g)
    t_a1 = time.perf_counter() - t
    ref = A.build_reference(f)
    t = time.perf_counter()
    chunk = 1_000_000
    n_al = 0
    for k in range(0, n_target, chunk):
        ii = idx[k:k + chunk]
        part = A.Features({}, f.hist[ii], f.hist_ok[ii])
        n_al += int(A.kl_check(part, ref)["alarm"].sum())
    t_a2 = time.perf_counter() - t
    n1 = int(sum(a1[m]["alarm"].sum() for m in A.METRICS))
    return {"sessions": n_target, "A-1_s": t_a1, "A-2_s": t_a2, "A-1_alarms": n1, "A-2_alarms": n_al}


def run(a) -> int:
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="platform-bench-", dir=str(out)))
    t_all = time.perf_counter()
    print("ingest: %d chargers x %d day(s), full-rate records, through mosquitto ..." % (
        a.ingest_chargers, a.ingest_days), flush=True)
    ing = _ingest(a, work)
    print("detection: %d chargers x %d days, fault rate %.1f %% ..." % (
        a.det_chargers, a.det_days, 100 * a.fault_rate), flush=True)
    det, f = _detect(a, work)
    fleet_sessions = a.fleet_sessions or int(FLEET_CHARGERS * 365 * a.sessions_per_day)
    print("A-1/A-2 over %d sessions ..." % fleet_sessions, flush=True)
    fr = _fleet_rules(a, f, fleet_sessions)
    status_per_session = det["status_records"] / max(det["sessions"], 1)
    fleet_status = fleet_sessions * status_per_session
    feat_fleet_s = fleet_status / det["features_records_per_s"]
    res = {"ingest": ing, "detection": det, "fleet_rules": fr,
           "extrapolated": {
               "fleet_chargers": FLEET_CHARGERS, "fleet_sessions_per_year": fleet_sessions,
               "fleet_records_per_year": ing["records_per_charger_day"] * 365 * FLEET_CHARGERS,
               "fleet_status_records_per_year": fleet_status,
               "fleet_store_tb_per_year": ing["fleet_year_tb"],
               "features_s_one_core": feat_fleet_s,
               "analytics_s_fleet_year_one_core": feat_fleet_s + fr["A-1_s"] + fr["A-2_s"],
               "ingest_hours_one_process": ing["records_per_charger_day"] * 365 * FLEET_CHARGERS
               / ing["mqtt_records_per_s"] / 3600,
               "mean_ingest_records_per_s_needed": ing["records_per_charger_day"] * FLEET_CHARGERS / 86400},
           "bench_s": time.perf_counter() - t_all, "cpus": os.cpu_count()}
    (out / "results.json").write_text(json.dumps(res, indent=1))
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    e = res["extrapolated"]
    rows = [
        ("ingest via mosquitto (measured, %d records)" % ing["records"], "%.0f records/s" % ing["mqtt_records_per_s"]),
        ("  store only: decode + Parquet (measured)", "%.0f records/s" % ing["store_only_records_per_s"]),
        ("  lost or duplicated", "%d" % ing["duplicates_or_lost"]),
        ("store size (measured, compacted, zstd)", "%.1f B/record, %.1f MB/charger-day" % (
            ing["bytes_per_record"], ing["bytes_per_charger_day"] / 1e6)),
        ("  per charger-year (x365)", "%.2f GB" % (ing["bytes_per_charger_year"] / 1e9)),
        ("  fleet-year, 10^4 chargers (extrapolated)", "%.1f TB" % e["fleet_store_tb_per_year"]),
        ("  mean ingest rate the fleet needs", "%.0f records/s" % e["mean_ingest_records_per_s_needed"]),
        ("features from stored records (measured)", "%.0f status records/s" % det["features_records_per_s"]),
        ("A-1 over %d sessions (measured)" % fr["sessions"], "%.1f s" % fr["A-1_s"]),
        ("A-2 over %d sessions (measured)" % fr["sessions"], "%.1f s" % fr["A-2_s"]),
        ("analytics, whole fleet-year (extrapolated, 1 core)", "%.1f h" % (e["analytics_s_fleet_year_one_core"] / 3600)),
        ("detection, all injected faults (%d sessions)" % sum(v["sessions"] for v in det["detection"].values()),
         "%.1f %%" % (100 * (det["detection_rate_all_faults"] or 0))),
    ]
    for k, v in det["detection"].items():
        rows.append(("  %s (%d; severity >= 0.6: %s)" % (k, v["sessions"], "-" if v["detected_severity_ge_0.6"] is None
                                                         else "%.0f %%" % (100 * v["detected_severity_ge_0.6"])),
                     "-" if v["detected"] is None else "%.1f %%" % (100 * v["detected"])))
    rows.append(("false alarms on clean sessions (%d)" % det["clean_sessions"],
                 "%.2f %%" % (100 * det["false_alarm_rate"])))
    rows.append(("bench wall time", "%.0f s" % res["bench_s"]))
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print("%-*s  %s" % (w, k, v))
    print("results: %s" % (out / "results.json"))
    return 0
