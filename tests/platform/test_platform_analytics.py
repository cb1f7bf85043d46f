"""Platform analytics (issue 14, part 3): A-1 (per-metric μ/σ over a
vehicle's and a charger's history, 3σ rule on cell-voltage spread, max cell
temperature, max temperature rise and rise rate) and A-2 (KL divergence of a
session's normalised temperature distribution against the reference of its
SOC band), alarms with their evidence, the report with plots."""
import math

import numpy as np
import pyarrow as pa
import pytest

from host_tools.platform import analytics as A
from host_tools.platform import report as R
from host_tools.platform import wire as W

DAY = 86_400_000
T0 = 1_767_225_600_000          # 2026-01-01


def records(sessions):
    """Status records (wire.SCHEMA) + an end record per session from
    ``sessions``: dicts with cid, session, vin, start_ms, soc, temp, cmax,
    cmin (arrays at 250 ms)."""
    cols = {k: [] for k in W.SCHEMA.names}
    n = {}
    for s in sessions:
        m = len(s["temp"])
        for k in range(m + 1):
            end = k == m
            j = min(k, m - 1)
            row = dict.fromkeys(W.SCHEMA.names)
            row.update(charger_id=s["cid"], boot=0, n=n.setdefault(s["cid"], 0), type=5 if end else 4,
                       seq=0, t_ms=0, ts=s["start_ms"] + 250 * k, charger_type=1, region=440305,
                       session=s["session"], stage=4 if end else 3, vin=s["vin"])
            n[s["cid"]] += 1
            if not end:
                row.update(soc=int(s["soc"][j]), temp_max=int(round(s["temp"][j])),
                           cell_max_v=int(round(s["cmax"][j] * 100)), cell_min_v=int(round(s["cmin"][j] * 100)))
            for c in cols:
                cols[c].append(row[c])
    cols["ts"] = pa.array(cols["ts"], pa.timestamp("ms"))
    return pa.table(cols, schema=W.SCHEMA)


def session(cid, no, vin, day, minutes=20, spread=0.03, rise=8.0, soc0=30, soc1=60, shape=None, seed=0):
    rng = np.random.default_rng(seed + 1000 * no + cid)
    m = int(minutes * 240)
    x = np.linspace(0, 1, m)
    temp = 25 + rise * (x if shape is None else shape(x)) + rng.normal(0, 0.3, m)
    cmax = 3.35 + 0.1 * x
    return {"cid": cid, "session": no, "vin": vin, "start_ms": T0 + day * DAY + 3_600_000,
            "soc": soc0 + (soc1 - soc0) * x, "temp": temp, "cmax": cmax,
            "cmin": cmax - spread - rng.normal(0, 0.004, m).clip(-0.004, 0.004)}


def history(extra=(), n=16, vin="LTESTVEHICLE00001", cid=7):
    ss = [session(cid, k + 1, vin, k, spread=0.03 + 0.01 * (k % 3), rise=7 + (k % 4), seed=k)
          for k in range(n)]
    return ss + list(extra)


def test_a1_features_of_a_session():
    """A-1 metrics from the records: cell-voltage spread (same record, after
    the ramp), max temperature, max rise, max rise rate over 3 minutes."""
    s = session(1, 1, "V1", 0, minutes=20, spread=0.05, rise=12)
    f = A.features(records([s]))
    assert len(f) == 1
    assert f.cols["spread_v"][0] == pytest.approx(0.05, abs=0.011)
    assert f.cols["temp_max_c"][0] == pytest.approx(37, abs=1)
    assert f.cols["temp_rise_c"][0] == pytest.approx(12, abs=1.5)
    # the steepest 3-minute window of whole-degree readings: at least the
    # mean slope, at most 2 K (rounding, noise) more per 3 minutes
    assert 12 / 20 - 0.1 <= f.cols["rise_rate_c_min"][0] <= 12 / 20 + 2 / 3 + 0.1
    assert f.cols["complete"][0] and f.cols["vin"][0] == "V1"


def test_a1_three_sigma_over_the_vehicle_history_with_evidence():
    """A-1: the 3σ rule judges a session against μ/σ of the same metric over
    the vehicle's earlier sessions; the alarm carries the evidence."""
    bad = session(7, 17, "LTESTVEHICLE00001", 17, spread=0.12)
    f = A.features(records(history([bad])))
    a1 = A.three_sigma(f)
    r = a1["spread_v"]
    i = int(np.nonzero(f.cols["session"] == 17)[0][0])
    assert r["alarm"][i] and r["scope"][i] == "vehicle" and r["n"][i] == 16
    prior = f.cols["spread_v"][f.cols["session"] < 17]
    assert r["mu"][i] == pytest.approx(prior.mean())
    assert r["sigma"][i] == pytest.approx(prior.std(ddof=1))
    assert r["threshold"][i] == pytest.approx(prior.mean() + 3 * max(prior.std(ddof=1), 0.01))
    assert not r["alarm"][:i].any()           # the history itself is clean
    al = [x for x in A.alarms(f, a1, None) if x["rule"] == "A-1"]
    assert [(x["session"], x["metric"], x["scope"]) for x in al] == [(17, "spread_v", "vehicle")]
    assert al[0]["n_history"] == 16 and "μ+3σ" in al[0]["text"]


def test_a1_no_baseline_without_history_and_never_its_own():
    """A-1: a session is never part of its own baseline; with fewer than
    ``min_history`` earlier sessions in every scope there is no judgement."""
    ss = history(n=5)
    f = A.features(records(ss))
    a1 = A.three_sigma(f)
    for m in A.METRICS:
        assert not a1[m]["alarm"].any() and (a1[m]["scope"] == "").all()
    c, mu, sd = A.prior_stats(np.zeros(4, np.int64), np.arange(4.0), np.array([1.0, 2.0, 3.0, 100.0]))
    assert c.tolist() == [0, 1, 2, 3]
    assert mu[3] == pytest.approx(2.0) and sd[3] == pytest.approx(1.0) and np.isnan(mu[0])


def test_a1_charger_history_when_the_vehicle_is_new():
    """A-1: a vehicle without history is judged against the charger's
    history (other vehicles at the same charger)."""
    ss = [session(9, k + 1, "LOTHER%011d" % k, k, rise=8 + (k % 3)) for k in range(12)]
    hot = session(9, 13, "LNEWVEHICLE000001", 13, rise=30)
    f = A.features(records(ss + [hot]))
    a1 = A.three_sigma(f)
    i = len(f) - 1
    assert a1["temp_rise_c"]["alarm"][i] and a1["temp_rise_c"]["scope"][i] == "charger"
    assert a1["temp_max_c"]["alarm"][i]


def test_a2_kl_divergence_per_soc_band():
    """A-2: a session's temperature in a SOC band, normalised to 0..1, as a
    distribution P; KL(P||Q) against the band's reference Q; alarm above the
    band's threshold.  A late runaway (flat, then a steep rise) differs
    from the steady rise of the reference sessions; a steady one does not."""
    ref_sessions = [session(3, k + 1, "LREF%013d" % k, k, rise=8 + k % 3, soc0=40, soc1=59, seed=k)
                    for k in range(30)]
    late = session(3, 31, "LREF%013d" % 0, 31, rise=9, soc0=40, soc1=59,
                   shape=lambda x: np.where(x < 0.8, 0.1 * x, 0.08 + (x - 0.8) * 4.6))
    steady = session(3, 32, "LREF%013d" % 1, 32, rise=9, soc0=40, soc1=59, seed=99)
    f = A.features(records(ref_sessions + [late, steady]))
    band = 2                                        # 40..60 %
    assert f.hist_ok[:, band].all() and not f.hist_ok[:, 0].any()
    ref = A.build_reference(f.take(np.arange(30)))
    q = np.asarray(ref["q"][band])
    assert q.sum() == pytest.approx(1.0) and ref["sessions"][band] == 30
    a2 = A.kl_check(f, ref)
    # KL by hand for the late session
    p = f.hist[30, band]
    qq = (q + A.EPS) / (q + A.EPS).sum()
    by_hand = sum(pi * math.log(pi / qi) for pi, qi in zip(p, qq) if pi > 0)
    assert a2["kl"][30, band] == pytest.approx(by_hand)
    assert a2["alarm"][30, band] and not a2["alarm"][31].any()
    assert np.isnan(a2["kl"][30, 0])                # a band the session did not visit
    al = [x for x in A.alarms(f, A.three_sigma(f), a2, ref) if x["rule"] == "A-2"]
    got = {x["session"]: x for x in al}
    assert 31 in got and got[31]["band"] == "40-60 %" and 32 not in got
    assert len(got[31]["p"]) == A.BINS and got[31]["value"] > got[31]["threshold"]


def test_report_writes_plots(tmp_path):
    bad = session(7, 17, "LTESTVEHICLE00001", 17, spread=0.12)
    tab = records(history([bad]))
    f = A.features(tab)
    al, a1, a2, ref = A.analyse(f)
    files = R.write(tmp_path, al, f, R.series_of(tab))
    names = sorted(p.name for p in files)
    assert "alarms.txt" in names and "alarm-7-0-17.png" in names
    assert (tmp_path / "alarm-7-0-17.png").stat().st_size > 10_000
    assert "spread_v" in (tmp_path / "alarms.txt").read_text()
