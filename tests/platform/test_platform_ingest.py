"""Ingest over a real broker (issue 14, part 1): TCU ring -> mosquitto (QoS 1,
topics per charger) -> ingest -> Parquet store; a charger offline for hours
catches up without loss or duplicates; stop goes back on a plain topic."""
import datetime as dt
import json
import time

import numpy as np
import pyarrow.compute as pc
import pytest

from host_tools.platform import wire as W
from host_tools.platform.fleet import Fleet, FleetSpec
from host_tools.platform.ingest import Ingestor
from host_tools.platform.store import Store
from host_tools.platform.tcu import Tcu

from platform_broker import broker  # noqa: F401  (the fixture)


def _streams(chargers=2, day=0, seed=3):
    fl = Fleet(FleetSpec(chargers=chargers, days=1, sessions_per_day=2, seed=seed, min_minutes=8))
    return fl.streams(fl.sessions_of_day(day))


def _wait(pred, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_offline_for_hours_catches_up_without_loss_or_duplicates(broker, tmp_path):
    """A charger whose TCU is offline for most of a day (hours of records in
    its ring) sends them all when it is back: every record number n once in
    the store, no gap; batches sent twice (a reconnect before the PUBACKs)
    are dropped by number."""
    streams = _streams()
    (cid_a, (_, recs_a)), (cid_b, (_, recs_b)) = list(streams.items())[:2]
    store = Store(tmp_path / "store")
    ing = Ingestor(store, broker.host, broker.port, flush_s=0.2)
    a = Tcu(cid_a, broker.host, broker.port, tmp_path / "ring-a", batch_max=500)
    b = Tcu(cid_b, broker.host, broker.port, tmp_path / "ring-b", batch_max=500)
    assert _wait(lambda: a.connected and b.connected)
    b.set_offline(True)
    half = len(recs_b) // 3
    for r in recs_a:
        a.add(r)
    for r in recs_b[:half]:
        b.add(r)
    assert a.drain(30)
    # b: hours of charging while offline, all in the ring (on disk)
    for r in recs_b[half:]:
        b.add(r)
    b.pump()
    assert b.backlog() == len(recs_b)
    span_h = (W.decode_columns(recs_b[-1], [0])[0].column("ts")[0].value
              - W.decode_columns(recs_b[0], [0])[0].column("ts")[0].value) / 3.6e6
    assert span_h >= 2, span_h                   # "offline for hours"
    # the TCU restarts while offline: the ring comes back from its files
    b.close()
    b = Tcu(cid_b, broker.host, broker.port, tmp_path / "ring-b", batch_max=500)
    assert b.backlog() == len(recs_b)
    assert b.drain(60)
    assert _wait(lambda: (ing.flush() or True) and store.ranges.count(cid_b) == len(recs_b), 30)
    # resend a stretch that is already stored (a lost PUBACK): dropped by n
    dup_before = store.stats["duplicates"]
    b.client.publish(W.topic(cid_b, "telemetry"), W.pack_batch(cid_b, 0, 0, recs_b[:300]),
                     qos=1).wait_for_publish(5)
    assert _wait(lambda: store.stats["duplicates"] >= dup_before + 300)
    ing.wait_idle(0.3)
    for cid, recs in ((cid_a, recs_a), (cid_b, recs_b)):
        assert store.ranges.count(cid) == len(recs)
        assert store.ranges.missing(cid) == []
    con = store.duck()
    rows = con.execute("SELECT charger_id, count(*), count(DISTINCT n), min(n), max(n) FROM records "
                       "GROUP BY charger_id ORDER BY charger_id").fetchall()
    assert sorted(rows) == sorted([(cid_a, len(recs_a), len(recs_a), 0, len(recs_a) - 1),
                                   (cid_b, len(recs_b), len(recs_b), 0, len(recs_b) - 1)])
    # the catch-up batches were flagged, the on-line ones not; topics per charger
    assert store.stats["invalid"] == 0
    a.close()
    b.close()
    ing.close()
    store.close()


def test_stop_command_is_plain_and_marked_unauthenticated(broker, tmp_path):
    """The platform's stop (seed 000 4.2.3 b) to a charger without a sealed
    link reaches the charger's TCU on evc/<id>/cmd/stop, a plain topic, and
    the command says so; the charger answers on cmd/result."""
    got = []
    store = Store(tmp_path / "s")
    ing = Ingestor(store, broker.host, broker.port)
    t = Tcu(42, broker.host, broker.port, tmp_path / "ring", on_stop=lambda c: got.append(c) or "stopped")
    assert _wait(lambda: t.connected)
    time.sleep(0.2)
    ing.send_stop(42, alarm={"rule": "A-1", "metric": "spread_v"}, reason="A-1 spread_v")
    assert _wait(lambda: (t.pump() or True) and got)
    assert got[0]["cmd"] == "stop" and got[0]["auth"].startswith("none")
    assert _wait(lambda: ing.results)
    assert ing.results[0] == (42, {"cmd": "stop", "alarm": {"rule": "A-1", "metric": "spread_v"},
                                   "result": "stopped"})
    t.close()
    ing.close()
    store.close()


def test_c2_ring_numbers_sealed_batches_with_plain_records(tmp_path):
    """A sealed batch of the C-2 link takes the next record numbers (the TCU
    cannot open it): plain records before and after it keep one numbering,
    a ring batch never spans the reserved numbers, and acknowledging the
    sealed batch's range moves the ring's acknowledged mark past it."""
    from host_tools.platform.tcu import Ring
    recs = next(iter(_streams(1).values()))[1][:8]
    r = Ring(tmp_path / "ring")
    assert [r.append(x) for x in recs[:3]] == [0, 1, 2]
    assert r.reserve(4) == 3                      # a sealed batch of 4 records: 3..6
    assert [r.append(x) for x in recs[3:5]] == [7, 8]
    assert [e[0] for e in r.take(0, 100)] == [0, 1, 2], "a batch stops at the reserved numbers"
    assert [e[0] for e in r.take(3, 100)] == [7, 8], "after them: the next plain records"
    r.ack_to(3)
    assert [e[0] for e in r.take(3, 100)] == [7, 8]
    r.ack_to(9)
    assert r.take(9, 100) == [] and r.acked == 9
