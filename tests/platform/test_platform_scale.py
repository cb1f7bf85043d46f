"""Scale (issue 14, part 4), scaled down: the synthetic fleet generator with
injected faults, and the bench's figures on a small fleet (``make
platform-bench`` runs the documented full set)."""
import argparse
import json

import numpy as np
import pytest

from host_tools.platform import bench as B
from host_tools.platform import analytics as A
from host_tools.platform.fleet import Fleet, FleetSpec, FAULTS
from host_tools.telemetry import decode_record


def test_fleet_records_are_table1_records():
    """The generator's records decode with the host telemetry decoder (CRC,
    layouts) and carry charger, date-time, region and VIN."""
    fl = Fleet(FleetSpec(chargers=2, days=1, sessions_per_day=1, seed=9, demand=True, min_minutes=8))
    s = fl.sessions_of_day(0)
    streams = fl.streams(s)
    for cid, (n0, recs) in streams.items():
        d = [decode_record(r) for r in recs[:50]] + [decode_record(recs[-1])]
        assert {x["charger_id"] for x in d} == {cid}
        assert d[0]["type_name"] == "event" and d[1]["type_name"] == "handshake"
        assert d[-1]["type_name"] == "end"
        assert {x["type_name"] for x in d} >= {"status", "demand"}
        assert d[1]["vin"].startswith("LSYNV") and d[1]["datetime"].startswith("2026-01-01")
        seqs = [x["seq"] for x in d[:50]]
        assert seqs == list(range(seqs[0], seqs[0] + 50))
    # deterministic
    fl2 = Fleet(FleetSpec(chargers=2, days=1, sessions_per_day=1, seed=9, demand=True, min_minutes=8))
    assert fl2.streams(fl2.sessions_of_day(0)) == streams


def test_bench_scaled_down(tmp_path, capsys):
    """A-1 and A-2 on a small synthetic fleet with faults injected: the bench
    measures ingest through mosquitto (nothing lost), store size, analytics
    time, detection and false-alarm rates."""
    ap = argparse.ArgumentParser()
    B.add_args(ap)
    a = ap.parse_args(["--out", str(tmp_path), "--ingest-chargers", "1", "--det-chargers", "4",
                       "--det-days", "12", "--warmup-days", "4", "--fault-rate", "0.2",
                       "--fleet-sessions", "20000", "--sessions-per-day", "3"])
    assert B.run(a) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    ing = r["ingest"]
    assert ing["duplicates_or_lost"] == 0 and ing["records"] > 50_000
    assert ing["mqtt_records_per_s"] > 1000 and 2 < ing["bytes_per_record"] < 100
    det = r["detection"]
    assert det["evaluated_sessions"] > 50
    assert det["false_alarm_rate"] < 0.05
    assert det["detection_rate_all_faults"] > 0.25
    assert r["fleet_rules"]["sessions"] == 20000
    out = capsys.readouterr().out
    assert "false alarms on clean sessions" in out and "per charger-year" in out
