"""``python -m host_tools.platform COMMAND`` (docs/platform.md).

    demo      a few SIL chargers -> TCU -> local mosquitto -> ingest -> Parquet
              store -> analytics (A-1, A-2) -> alarms, stop -> report
    bench     the scale figures (synthetic fleet): ingest records/s, analytics
              time, store size per charger-year, detection / false-alarm rates
    analyze   A-1/A-2 over a store: alarms and a report
    compact   merge each day/charger partition; ``--retain-days`` (>= 8 years)
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import analytics as A
from . import report as R
from . import wire as W
from .broker import BrokerError, Mosquitto
from .fleet import Fleet, FleetSpec
from .ingest import Ingestor, SEALED_AUTH
from .store import Store

DEMO_DATE = dt.date(2026, 1, 31)


def _say(*a):
    print(*a, flush=True)


def seed_history(store: Store, ids: list[int], vins: list[str], days: int, end: dt.date,
                 seed: int = 5) -> tuple[A.Features, dict]:
    """Synthetic history of the demo's chargers and vehicles (one session a
    day each, no faults) written to the store: the baseline the demo's live
    sessions are judged against.  -> (features, next record number per charger)."""
    spec = FleetSpec(chargers=len(ids), days=days, sessions_per_day=1.0, vehicles_per_charger=1.0,
                     fault_rate=0.0, seed=seed, start=end - dt.timedelta(days=days),
                     first_charger_id=ids[0])
    fl = Fleet(spec)
    fl.charger_ids = np.asarray(ids, np.int64)
    fl.vins = np.asarray(vins)
    fl.v_of_charger = [np.array([i]) for i in range(len(ids))]
    fl.v_home = np.arange(len(ids))[:, None].repeat(3, axis=1)
    tabs = []
    for d in range(days):
        s = fl.sessions_of_day(d)
        if not len(s):
            continue
        s["vehicle"] = s["charger"]                     # each vehicle at its own charger
        t = fl.table(s)
        tabs.append(t)
    tab = pa.concat_tables(tabs)
    ranges = [(int(c), 0, int(n)) for c, n in zip(fl.charger_ids, fl.next_n)]
    store.add_table(tab, ranges)
    store.flush()
    return A.features(tab), {int(c): int(n) for c, n in zip(fl.charger_ids, fl.next_n)}


def demo(a) -> int:
    from .sil import SilCharger
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ids = [1001 + i for i in range(a.chargers)]
    vins = ["LDEMOVIN%09d" % (i + 1) for i in range(a.chargers)]
    faulty = ids[-1]
    offline = ids[0] if len(ids) >= 2 else None
    store = Store(out / "store")
    _say("platform demo: %d SIL chargers %s; charger %d has a failing cell connection (weld), "
         "charger %s goes offline for %d s of its session" % (
             a.chargers, ids, faulty, offline, a.offline_s))
    link_keys, charger_keys = {}, {}
    if not a.plain:
        from host_tools import seckeys
        from .seclink import load_platform_keys
        kd = out / "keys"
        kd.mkdir()
        for cid in ids:
            seckeys.new_keys(kd / ("charger-%d.json" % cid), charger_id=cid)
            charger_keys[cid] = kd / ("charger-%d.json" % cid)
            link_keys[cid] = load_platform_keys(kd / ("charger-%d.platform.json" % cid))
        _say("authenticated link (C-2): suite %s, sec.policy %s; keys in %s (the platform's: "
             "charger-<id>.platform.json); each charger plugs its vehicle in once its link is "
             "sealed" % (a.suite, a.policy, kd))
    else:
        _say("plain link (--plain): telemetry and stop unauthenticated, as before C-2")
    t0 = time.monotonic()
    f_hist, next_n = seed_history(store, ids, vins, a.history_days, DEMO_DATE)
    _, a1h, _, _ = A.analyse(f_hist, build_ref=False)
    ref = A.build_reference(f_hist, exclude=A.session_alarm_mask(f_hist, a1h, None))
    A.save_reference(ref, out / "store" / "reference" / "kl.json")
    hist_rows = store.stats["records"]
    _say("history: %d sessions of the %d vehicles over %d days stored (%.1f s)" % (
        len(f_hist), len(ids), a.history_days, time.monotonic() - t0))
    try:
        broker = Mosquitto(log=out / "mosquitto.log")
    except BrokerError as e:
        _say("platform demo: %s" % e)
        return 2
    epoch = int(dt.datetime(DEMO_DATE.year, DEMO_DATE.month, DEMO_DATE.day, 9,
                            tzinfo=dt.timezone.utc).timestamp())
    ing = Ingestor(store, broker.host, broker.port, flush_s=0.5, link_keys=link_keys)
    _say("mosquitto on %s (loopback only); ingest subscribed to %s/+/telemetry (QoS 1)" % (
        broker.url, W.PREFIX))
    chargers = []
    for i, (cid, vin) in enumerate(zip(ids, vins)):
        c = SilCharger(cid, vin, broker.host, broker.port, out / ("charger-%d" % cid),
                       soc=a.target_soc - 5 - i, target_soc=a.target_soc, seed=i + 1, epoch_s=epoch,
                       first_n=next_n[cid], boot=1, fault="weld" if cid == faulty else None,
                       keys=charger_keys.get(cid), policy=a.policy, suite=a.suite)
        if cid == offline:
            c.offline_windows = [(15_000, 15_000 + a.offline_s * 1000)]
        chargers.append(c)
    threads = [threading.Thread(target=c.run, kwargs=dict(max_ms=a.max_s * 1000, pace_s=a.pace),
                                daemon=True) for c in chargers]
    for t in threads:
        t.start()
    stopped: dict = {}
    day = DEMO_DATE.isoformat()

    def analyse_live():
        ing.flush()
        tab = store.records("day >= '%s' AND boot = 1" % day, A.COLUMNS)
        f_live = A.features(tab)
        f = A.Features.concat([f_hist, f_live])
        a1 = A.three_sigma(f)
        a2 = A.kl_check(f, ref)
        al = A.alarms(f, a1, a2, ref)
        live = [x for x in al if x["boot"] == 1]
        return tab, f, live

    while any(t.is_alive() for t in threads):
        time.sleep(a.every)
        _, _, live = analyse_live()
        for x in live:
            if x["in_progress"] and x["charger_id"] not in stopped:
                stopped[x["charger_id"]] = x
                auth = ing.send_stop(x["charger_id"], alarm=x,
                                     reason="%s %s" % (x["rule"], x["metric"]))
                x["stop_auth"] = auth
                _say("ALARM charger %d (in progress): %s %s -> stop sent on %s: %s" % (
                    x["charger_id"], x["rule"], x["text"],
                    W.topic(x["charger_id"], "link/down" if auth == SEALED_AUTH else "cmd/stop"),
                    auth))
    for c in chargers:
        if not c.drain(30):
            _say("charger %d: %d records not acknowledged" % (c.cid, c.tcu.backlog()))
    ing.wait_idle()
    tab, f, live = analyse_live()
    store.write_sessions(f)
    store.write_alarms(live)
    files = R.write(out / "report", live, f, R.series_of(tab), title="platform demo")
    comp = store.compact(all_days=True)
    ok = True
    summary = {"chargers": [], "alarms": live, "files": [str(p) for p in files]}
    _say("")
    _say("%-8s %-18s %-9s %8s %8s %6s %-28s %s" % ("charger", "VIN", "stage", "records", "stored",
                                                     "gaps", "stop", "alarms"))
    for c in chargers:
        got = store.ranges.count(c.cid) - next_n[c.cid]
        gaps = store.ranges.missing(c.cid)
        nal = sum(1 for x in live if x["charger_id"] == c.cid)
        res = [r for cid, r in ing.results if cid == c.cid]
        stop = ("stopped: " + c.stops[0]["reason"]) if c.stops else \
            ("stopped: sealed stop" if c.cid in stopped and c.sealed_commands() else "-")
        _say("%-8d %-18s %-9s %8d %8d %6d %-28s %d" % (c.cid, c.params.vin, c.stage(), c.emitted, got,
                                                        len(gaps), stop[:28], nal))
        if got != c.emitted or gaps:
            ok = False
            _say("FAIL: charger %d: records lost or duplicated" % c.cid)
        summary["chargers"].append({"charger_id": c.cid, "vin": c.params.vin, "stage": c.stage(),
                                    "records": c.emitted, "stored": got, "gaps": len(gaps),
                                    "faulty": c.cid == faulty, "offline": c.cid == offline,
                                    "stops": c.stops, "results": res, "alarms": nal,
                                    "stop_auth": stopped[c.cid].get("stop_auth") if c.cid in stopped else None,
                                    "sealed_commands": c.sealed_commands(),
                                    "link_sealed": ing.sealed(c.cid),
                                    "link_refused": ing.link_refused.get(c.cid, {}),
                                    "firmware_stop": [t for _, t in c.sim.texts if t.startswith("stop ")]})
    _say("")
    for x in live:
        _say("alarm: charger %d session %d %s %s" % (x["charger_id"], x["session"], x["rule"], x["text"]))
    if not live:
        _say("no alarms")
    _say("ingest (MQTT): %d batches, %d records, %d duplicates dropped, %d invalid; compaction: %d "
         "partitions" % (store.stats["batches"], store.stats["records"] - hist_rows, store.stats["duplicates"],
            store.stats["invalid"], comp["partitions"]))
    for cid, r in ing.results:
        _say("cmd/result from %d: %s (%s)" % (cid, r.get("result"), r.get("auth", "plain")))
    if link_keys:
        _say("links sealed: %s; sealed frames refused by the platform: %s" % (
            ", ".join("%d %s" % (c, "yes" if ing.sealed(c) else "NO") for c in ids),
            ing.link_refused or "none"))
        if not all(ing.sealed(c) for c in ids):
            ok = False
            _say("FAIL: a charger's link never came up")
    _say("store: %s   report: %s" % (out / "store", ", ".join(str(p) for p in files[:3])))
    summary["ok"] = bool(ok)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    for c in chargers:
        c.close()
    ing.close()
    broker.close()
    store.close()
    if not ok:
        return 1
    return 0


def analyze(a) -> int:
    store = Store(a.store)
    tab = store.records(a.where or "", A.COLUMNS)
    f = A.features(tab)
    ref = A.load_reference(Path(a.store) / "reference" / "kl.json") if not a.rebuild_reference else None
    al, a1, a2, ref = A.analyse(f, ref)
    if a.rebuild_reference or not (Path(a.store) / "reference" / "kl.json").exists():
        A.save_reference(ref, Path(a.store) / "reference" / "kl.json")
    store.write_sessions(f)
    store.write_alarms(al)
    if a.report:
        R.write(a.report, al, f)
    for x in al:
        _say("charger %d session %d %s: %s" % (x["charger_id"], x["session"], x["rule"], x["text"]))
    _say("%d sessions, %d alarms" % (len(f), len(al)))
    return 0


def compact(a) -> int:
    store = Store(a.store)
    _say(json.dumps(store.compact(all_days=a.all_days)))
    if a.retain_days:
        _say("removed days: %s" % store.retain(a.retain_days))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.platform", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="SIL chargers -> mosquitto -> store -> alarms -> stop")
    d.add_argument("--chargers", type=int, default=3)
    d.add_argument("--out", default="out/platform")
    d.add_argument("--history-days", type=int, default=30)
    d.add_argument("--target-soc", type=float, default=40.0)
    d.add_argument("--max-s", type=int, default=200, help="simulated seconds per charger at most")
    d.add_argument("--offline-s", type=int, default=40)
    d.add_argument("--pace", type=float, default=0.01, help="wall seconds per 100 ms simulated")
    d.add_argument("--every", type=float, default=0.5, help="analysis period, wall seconds")
    d.add_argument("--plain", action="store_true",
                   help="no authenticated link (C-2): plain telemetry and a plain stop, as before")
    d.add_argument("--suite", choices=("sm", "aes"), default="sm", help="C-2 cipher suite")
    d.add_argument("--policy", choices=("prefer", "require"), default="require",
                   help="the chargers' sec.policy")
    b = sub.add_parser("bench", help="scale figures on a synthetic fleet")
    from . import bench as B
    B.add_args(b)
    z = sub.add_parser("analyze", help="A-1/A-2 over a store")
    z.add_argument("--store", required=True)
    z.add_argument("--where", default="", help="SQL condition on records, e.g. \"day >= '2026-01-01'\"")
    z.add_argument("--report", help="report directory")
    z.add_argument("--rebuild-reference", action="store_true")
    c = sub.add_parser("compact", help="compaction and retention")
    c.add_argument("--store", required=True)
    c.add_argument("--all-days", action="store_true")
    c.add_argument("--retain-days", type=int)
    a = ap.parse_args(argv)
    if a.cmd == "demo":
        return demo(a)
    if a.cmd == "bench":
        return B.run(a)
    if a.cmd == "analyze":
        return analyze(a)
    return compact(a)
