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


def _link_frame(count, body):
    from host_tools.platform.seclink import LINK_MAGIC
    return bytes([LINK_MAGIC, count]) + body


def test_c2_tcu_restart_keeps_unacknowledged_link_frames_and_their_numbers(broker, tmp_path):
    """C-2: a TCU restarted while sealed link frames wait for the broker
    sends them after the restart, in order, with the record numbers they had;
    a plain record after the restart does not reuse a sealed batch's numbers
    (the platform would drop it as a duplicate), and the backlog empties."""
    import paho.mqtt.client as mqtt
    from host_tools.platform.seclink import LINK_HDR
    cid = 77
    got = {"link": [], "telemetry": []}
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t-sub")
    sub.on_message = lambda c, u, m: got[m.topic.split("/")[-1]].append(bytes(m.payload))
    sub.connect(broker.host, broker.port)
    sub.subscribe([(W.topic(cid, "link"), 1), (W.topic(cid, "telemetry"), 1)])
    sub.loop_start()
    recs = next(iter(_streams(1).values()))[1][:8]
    t = Tcu(cid, broker.host, broker.port, tmp_path / "ring")
    assert _wait(lambda: t.connected)
    t.set_offline(True)
    assert [t.add(r) for r in recs[:3]] == [0, 1, 2]
    assert t.add(_link_frame(4, b"sealed batch of 4 records")) == 3
    assert [t.add(r) for r in recs[3:5]] == [7, 8]
    assert t.add(_link_frame(2, b"sealed batch of 2 records")) == 9
    t.pump()
    assert t.backlog() == 11 + 2
    t.close()                                    # the TCU restarts, still offline
    t = Tcu(cid, broker.host, broker.port, tmp_path / "ring")
    assert t.backlog() == 13, "the ring and both link frames came back from disk"
    assert t.add(recs[5]) == 11, "the next plain record does not reuse the sealed numbers 9..10"
    assert t.drain(30)
    assert _wait(lambda: len(got["link"]) >= 2)
    heads = [LINK_HDR.unpack_from(p) + (p[LINK_HDR.size:],) for p in got["link"]]
    assert [(h[0], h[2], h[3]) for h in heads[:2]] == [(3, 4, b"sealed batch of 4 records"),
                                                      (9, 2, b"sealed batch of 2 records")]
    nums = set()
    for p in got["telemetry"]:
        _, lo, _, cnt, _, _ = W.unpack_batch(p)
        nums.update(range(lo, lo + cnt))
    assert nums == {0, 1, 2, 7, 8, 11}
    assert t.ring.acked == 12 and t.backlog() == 0
    t.close()
    sub.loop_stop()
    sub.disconnect()


def test_c2_sealed_range_acknowledged_out_of_order_survives_a_restart(tmp_path):
    """A sealed batch the broker acknowledged before the plain records in
    front of it: after a TCU restart its range still counts as acknowledged,
    so once the plain records are acknowledged the ring's mark passes it
    (before, the mark stopped at the batch for good and the ring grew)."""
    recs = next(iter(_streams(1).values()))[1][:6]
    t = Tcu(5, "127.0.0.1", 9, tmp_path / "ring")     # no broker: stays offline
    for r in recs[:2]:
        t.add(r)
    t.add(_link_frame(3, b"sealed"))                  # numbers 2..4
    t.add(recs[2])                                    # 5
    t._link_acked(t.link_q[0])                        # its PUBACK (paho callback)
    assert t.ring.acked == 0 and t.backlog() == 6
    t.close()
    t = Tcu(5, "127.0.0.1", 9, tmp_path / "ring")
    assert t.backlog() == 6 and not t.link_q
    t._acked((0, 2))                                  # the plain records' PUBACK
    assert t.ring.acked == 5, "the mark passes the sealed range acknowledged before the restart"
    t.close()


def test_c2_link_log_stays_small_and_survives_a_torn_tail(tmp_path):
    """The TCU's link log is rewritten once nothing waits (a day of sealed
    batches does not pile up on its flash), keeps the numbers and the
    acknowledged ranges a restart needs, and a write cut off mid-frame
    (power cut) loses only that frame."""
    from host_tools.platform.linklog import LinkLog
    log = LinkLog(tmp_path)
    for i in range(600):
        k = log.add(10 * i, 10 * i + 10, 0, b"x" * 200)
        log.ack(k, {6000: 6010}.items())
    log.close()
    assert (tmp_path / "link.log").stat().st_size < 40_000, "rewritten (600 frames would be 149 KB)"
    log = LinkLog(tmp_path)
    assert log.next_n == 6010 and log.queued == [] and (6000, 6010) in log.done
    log.add(6010, 6012, 1, b"kept")
    log.add(6012, 6014, 1, b"torn frame")
    log.close()
    data = (tmp_path / "link.log").read_bytes()
    (tmp_path / "link.log").write_bytes(data[:-4])
    log = LinkLog(tmp_path)
    assert [e[3] for e in log.queued] == [b"kept"] and log.next_n == 6012
    log.close()
