"""Platform analytics: session features, the 3-sigma rule (A-1) and the KL
divergence of the temperature distribution (A-2), alarms with evidence.

Seed 000 section 5.2 (requirements A-1, A-2); docs/platform.md has the
decisions.  Everything is vectorised over sessions (numpy), so the same code
serves one live session and a fleet-year.

**Sessions.**  A session is (charger_id, boot, session number) in the
records.  Features from its ``status`` records (250 ms):

    spread_v         max over the session of (highest - lowest cell voltage)
                     at the same record, V; the first ``SPREAD_SKIP_S`` s of
                     charging are left out (the lowest cell comes from the
                     optional BMV, every 10 s: the first one is from before
                     the current ramp and is not "the same moment")
    temp_max_c       highest cell temperature, degC
    temp_rise_c      highest temperature - the first one of the session, K
    rise_rate_c_min  highest rise over any ``RATE_WINDOW_S`` window, K/min

**A-1.**  For each metric, μ and σ of the same metric over the sessions
*before* this one (expanding history, a session is never part of its own
baseline), in the most specific scope that has at least ``min_history``
sessions: the same **vehicle** (VIN), else the same **charger**, else the
**fleet** (every earlier session).  A session is abnormal when its value >
μ + 3·max(σ, floor).  The floor is the wire's resolution (0.01 V, 1 degC,
1/3 K/min over the 3-minute window): a history of whole degrees can have
σ = 0.

**A-2.**  In every SOC band (``BANDS``, by the BMS SOC of the records), the
session's temperatures (highest cell temperature) are normalised to 0..1
(min-max over the band's samples) and binned (``BINS``): the distribution
P.  The reference Q of the band is the mean distribution of reference
sessions (``build_reference``; sessions without A-1 alarms).  KL(P || Q) =
Σ P_i ln(P_i / Q_i) (Q smoothed by ``EPS``); alarm when it is above the
band's threshold: exp(μ + 3σ) of the reference sessions' own ln KL values (the same
3σ idea, taken on ln KL: KL is skewed; ``Rules.kl_sigma``).  A band is scored only with at least
``MIN_BAND_SAMPLES`` samples and a temperature range of at least
``MIN_BAND_RANGE_C`` (a flat temperature has no distribution to compare).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from host_tools.telemetry import FW

METRICS = ("spread_v", "temp_max_c", "temp_rise_c", "rise_rate_c_min")
UNITS = {"spread_v": "V", "temp_max_c": "degC", "temp_rise_c": "K", "rise_rate_c_min": "K/min"}
FLOORS = {"spread_v": 0.01, "temp_max_c": 1.0, "temp_rise_c": 1.0, "rise_rate_c_min": 1.0 / 3.0}
SCOPES = ("vehicle", "charger", "fleet")
SPREAD_SKIP_S = 20.0
RATE_WINDOW_S = 180.0
BANDS = (0, 20, 40, 60, 80, 101)
BINS = 10
EPS = 1e-3
MIN_BAND_SAMPLES = 240            # 1 min of status records
MIN_BAND_RANGE_C = 3.0
COLUMNS = ["charger_id", "boot", "session", "n", "type", "ts", "vin", "soc", "cell_max_v",
           "cell_min_v", "temp_max", "t_ms"]


@dataclass
class Features:
    """One row per session (arrays of equal length) + the band histograms."""
    cols: dict
    hist: np.ndarray                  # (sessions, bands, BINS) probabilities
    hist_ok: np.ndarray               # (sessions, bands) scored?

    def __len__(self):
        return len(self.cols["charger_id"])

    def table(self) -> pa.Table:
        d = dict(self.cols)
        nb = len(BANDS) - 1
        for b in range(nb):
            d["hist_b%d" % b] = pa.FixedSizeListArray.from_arrays(
                pa.array(self.hist[:, b, :].astype(np.float32).reshape(-1)), BINS)
            d["hist_ok_b%d" % b] = self.hist_ok[:, b]
        return pa.table(d)

    @classmethod
    def from_table(cls, t: pa.Table) -> "Features":
        nb = len(BANDS) - 1
        cols = {k: t.column(k).to_numpy(zero_copy_only=False) for k in t.column_names
                if not k.startswith("hist_")}
        hist = np.zeros((t.num_rows, nb, BINS))
        ok = np.zeros((t.num_rows, nb), bool)
        for b in range(nb):
            hist[:, b, :] = np.asarray(t.column("hist_b%d" % b).combine_chunks().flatten()).reshape(-1, BINS)
            ok[:, b] = t.column("hist_ok_b%d" % b).to_numpy(zero_copy_only=False)
        return cls(cols, hist, ok)

    def take(self, idx) -> "Features":
        return Features({k: v[idx] for k, v in self.cols.items()}, self.hist[idx], self.hist_ok[idx])

    @staticmethod
    def concat(fs) -> "Features":
        fs = [f for f in fs if len(f)]
        if not fs:
            return empty_features()
        return Features({k: np.concatenate([f.cols[k] for f in fs]) for k in fs[0].cols},
                        np.concatenate([f.hist for f in fs]), np.concatenate([f.hist_ok for f in fs]))


def empty_features() -> Features:
    nb = len(BANDS) - 1
    cols = {k: np.zeros(0, t) for k, t in (("charger_id", np.int64), ("boot", np.int64),
                                          ("session", np.int64), ("vin", object),
                                          ("start_ms", np.int64), ("end_ms", np.int64),
                                          ("status_records", np.int64), ("complete", bool),
                                          ("soc_start", np.float64), ("soc_end", np.float64))}
    for m in METRICS:
        cols[m] = np.zeros(0)
    return Features(cols, np.zeros((0, nb, BINS)), np.zeros((0, nb), bool))


def _np(col, fill=np.nan, dtype=np.float64):
    a = col.to_numpy(zero_copy_only=False) if not isinstance(col, np.ndarray) else col
    if a.dtype == object:
        a = np.array([fill if v is None else v for v in a], dtype)
    return a.astype(dtype)


def _ts_ms(col) -> np.ndarray:
    if pa.types.is_timestamp(col.type):      # DuckDB hands back microseconds
        col = col.cast(pa.timestamp("ms")).cast(pa.int64())
    c = col
    return np.asarray(c.fill_null(-1), np.int64)


def features(tab: pa.Table) -> Features:
    """Session features of the records in ``tab`` (``wire.SCHEMA`` columns,
    at least ``COLUMNS``; any order; several chargers)."""
    typ = np.asarray(tab.column("type").fill_null(0), np.int64)
    cid = np.asarray(tab.column("charger_id"), np.int64)
    boot = np.asarray(tab.column("boot").fill_null(0), np.int64)
    sess = np.asarray(tab.column("session").fill_null(0), np.int64)
    # one int64 key per (charger, boot, session)
    key = (cid << 24) | ((boot & 0xFF) << 16) | (sess & 0xFFFF)
    s = np.nonzero(typ == FW.T_STATUS)[0]
    if not len(s):
        return empty_features()
    n = np.asarray(tab.column("n"), np.int64)[s]
    ks = key[s]
    # sort the status rows by session, then record number (skip when sorted)
    if not (np.all(ks[1:] >= ks[:-1]) and np.all((n[1:] > n[:-1]) | (ks[1:] != ks[:-1]))):
        o = np.lexsort((n, ks))
        s, ks = s[o], ks[o]
    start = np.r_[True, ks[1:] != ks[:-1]]
    starts = np.nonzero(start)[0]
    ns = len(starts)
    g = np.cumsum(start) - 1
    cnt = np.diff(np.r_[starts, len(s)])
    take = pa.array(s)
    col = lambda name: _np(tab.column(name).take(take))
    soc = col("soc")
    cmax = col("cell_max_v") / 100.0
    cmin = col("cell_min_v") / 100.0
    tmax = col("temp_max")
    t = _ts_ms(tab.column("ts").take(take)).astype(np.float64)
    vin_col = tab.column("vin").take(pa.array(s[starts])).to_numpy(zero_copy_only=False)
    t0 = t[starts]
    rel = t - t0[g]
    # spread at the same record, after the ramp
    spread = np.where(rel >= SPREAD_SKIP_S * 1000, cmax - cmin, np.nan)
    spread_v = _smax(spread, starts)
    temp_max_c = _smax(tmax, starts)
    valid_t = ~np.isnan(tmax)
    tfirst = np.full(ns, np.nan)
    vi = np.nonzero(valid_t)[0]
    if len(vi):
        gv = g[vi]
        firstv = np.r_[True, gv[1:] != gv[:-1]]
        tfirst[gv[firstv]] = tmax[vi[firstv]]
    temp_rise_c = temp_max_c - tfirst
    # rise rate: T(t) - T(at or before t - window), per minute, same session
    rate = np.full(len(s), np.nan)
    if len(vi):
        kk = g[vi].astype(np.float64) * 1e13 + t[vi]
        j = np.searchsorted(kk, kk - RATE_WINDOW_S * 1000.0, side="right") - 1
        ok = (j >= 0)
        j = np.maximum(j, 0)
        ok &= g[vi][j] == g[vi]
        dtm = (t[vi] - t[vi][j]) / 60000.0
        ok &= dtm > 0
        rate[vi[ok]] = (tmax[vi][ok] - tmax[vi][j][ok]) / dtm[ok]
    rise_rate = _smax(rate, starts)
    # the VIN of a session: its first status record (BRM is before charging)
    vin = np.asarray(vin_col, object)
    soc_start = -_smax(-soc, starts)
    soc_end = _smax(soc, starts)
    start_ms = t0.astype(np.int64)
    end_ms = t[np.r_[starts[1:], len(s)] - 1].astype(np.int64)
    ended = np.isin(ks[starts], key[typ == FW.T_END])
    hist, hist_ok = _band_hist(g, soc, tmax, ns)
    cols = {"charger_id": cid[s[starts]], "boot": boot[s[starts]], "session": sess[s[starts]],
            "vin": vin, "start_ms": start_ms, "end_ms": end_ms, "status_records": cnt,
            "complete": ended, "soc_start": soc_start, "soc_end": soc_end,
            "spread_v": spread_v, "temp_max_c": temp_max_c, "temp_rise_c": temp_rise_c,
            "rise_rate_c_min": rise_rate}
    return Features(cols, hist, hist_ok)


def _smax(x, starts):
    """Max per contiguous segment (NaN ignored; all-NaN -> NaN)."""
    y = np.where(np.isnan(x), -np.inf, x)
    out = np.maximum.reduceat(y, starts) if len(starts) else np.zeros(0)
    return np.where(np.isinf(out) & (out < 0), np.nan, out)


def _band_hist(g, soc, temp, ns):
    """(sessions, bands, BINS) distributions of the normalised temperature.

    The wire's temperatures are whole degrees: each reading stands for the
    interval T +- 0.5 degC, and its mass is spread uniformly over that
    interval before binning (without it a band with a 3 K range would put
    all its mass in 4 of the 10 bins and every KL would be large)."""
    nb = len(BANDS) - 1
    ok = ~np.isnan(soc) & ~np.isnan(temp)
    gi, sc, tp = g[ok], soc[ok], temp[ok]
    band = np.clip(np.searchsorted(np.asarray(BANDS), sc, side="right") - 1, 0, nb - 1)
    seg = gi * nb + band
    o = np.argsort(seg, kind="stable")
    seg_s, tp_s = seg[o], tp[o]
    st = np.r_[True, seg_s[1:] != seg_s[:-1]] if len(seg_s) else np.zeros(0, bool)
    starts = np.nonzero(st)[0]
    ids = seg_s[starts]
    lo = np.full(ns * nb, np.inf)
    hi = np.full(ns * nb, -np.inf)
    if len(starts):
        lo[ids] = np.minimum.reduceat(tp_s, starts)
        hi[ids] = np.maximum.reduceat(tp_s, starts)
    count = np.bincount(seg, minlength=ns * nb)
    rng_ = hi - lo
    scored = (count >= MIN_BAND_SAMPLES) & (rng_ >= MIN_BAND_RANGE_C)
    width = np.where(np.isfinite(rng_), rng_ + 1.0, 1.0)         # lo-0.5 .. hi+0.5
    a = (tp - lo[seg]) / width[seg]                              # its interval starts here
    w = 1.0 / width[seg]                                          # in 0..1 units
    h = np.zeros((ns * nb, BINS))
    prev = np.zeros(len(tp))
    for k in range(1, BINS + 1):
        edge = k / BINS
        cdf = np.clip((edge - a) / w, 0.0, 1.0)                   # share of the interval below edge
        h[:, k - 1] = np.bincount(seg, weights=cdf - prev, minlength=ns * nb)
        prev = cdf
    tot = h.sum(axis=1, keepdims=True)
    hist = np.where(tot > 0, h / np.where(tot > 0, tot, 1), 0.0).reshape(ns, nb, BINS).astype(np.float32)
    return hist, scored.reshape(ns, nb)


# ---- 3 sigma ------------------------------------------------------------
def prior_stats(key: np.ndarray, time: np.ndarray, x: np.ndarray, order: np.ndarray | None = None):
    """Count, mean and standard deviation of ``x`` over the earlier rows
    (by ``time``) with the same ``key`` -- the expanding history of each row,
    itself excluded.  NaN values are not history.  ``order``: the rows
    sorted by (key, time) when the caller has it already."""
    m = len(x)
    if order is None:
        order = np.lexsort((time, key))
    k, v = key[order], x[order]
    valid = ~np.isnan(v)
    v0 = np.where(valid, v, 0.0)
    C = np.r_[0, np.cumsum(valid)]
    S = np.r_[0.0, np.cumsum(v0)]
    Q = np.r_[0.0, np.cumsum(v0 * v0)]
    start = np.r_[True, k[1:] != k[:-1]] if m else np.zeros(0, bool)
    gs = np.maximum.accumulate(np.where(start, np.arange(m), 0)) if m else np.zeros(0, np.int64)
    c = C[:-1] - C[gs]
    s = S[:-1] - S[gs]
    q = Q[:-1] - Q[gs]
    del C, S, Q, v0
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = s / c
        var = np.maximum(q / c - mu * mu, 0.0) * c / np.maximum(c - 1, 1)
    out = [np.empty(m, np.int64), np.empty(m), np.empty(m)]
    out[0][order] = c
    out[1][order] = mu
    out[2][order] = np.sqrt(var)
    return out[0], out[1], out[2]


@dataclass
class Rules:
    min_history: int = 10
    sigma: float = 3.0
    floors: dict = field(default_factory=lambda: dict(FLOORS))
    kl_sigma: float = 3.0


def three_sigma(f: Features, rules: Rules = Rules()) -> dict:
    """A-1 for every session of ``f`` against the sessions before it in ``f``.

    Returns {metric: {"alarm": bool[], "scope": str[], "n": int[], "mu", "sigma",
    "threshold", "value"}}: the scope that judged (vehicle if it has the history,
    else charger, else the fleet; "" = no scope had enough history)."""
    m = len(f)
    t = f.cols["start_ms"].astype(np.int64)
    if "vehicle_key" in f.cols:            # ids instead of VIN text (the scale bench)
        vkey = f.cols["vehicle_key"].astype(np.int64)
    else:
        vins = f.cols["vin"].astype(str)
        _, vkey = np.unique(vins, return_inverse=True)
        vkey = np.where(vins != "", vkey.reshape(-1), -1).astype(np.int64)
    keys = {"vehicle": vkey, "charger": f.cols["charger_id"].astype(np.int64),
            "fleet": np.zeros(m, np.int64)}
    orders = {sc: np.lexsort((t, keys[sc])) for sc in SCOPES}
    out = {}
    for met in METRICS:
        x = f.cols[met].astype(np.float64)
        st = {sc: prior_stats(keys[sc], t, x, orders[sc]) for sc in SCOPES}
        res = {"value": x, "alarm": np.zeros(m, bool), "scope": np.full(m, "", object),
               "n": np.zeros(m, np.int64), "mu": np.full(m, np.nan), "sigma": np.full(m, np.nan),
               "threshold": np.full(m, np.nan)}
        judged = np.zeros(m, bool)
        for sc in SCOPES:                 # the most specific history that exists
            c, mu, sd = st[sc]
            usable = (c >= rules.min_history) & ~judged
            if sc == "vehicle":
                usable &= vkey >= 0
            thr = mu + rules.sigma * np.maximum(np.nan_to_num(sd), rules.floors[met])
            for k, v in (("n", c), ("mu", mu), ("sigma", sd), ("threshold", thr)):
                res[k] = np.where(usable, v, res[k])
            res["scope"] = np.where(usable, sc, res["scope"])
            res["alarm"] |= usable & (x > thr)
            judged |= usable
        out[met] = res
    return out


# ---- KL divergence ---------------------------------------------------------
def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(P || Q) over the last axis; Q smoothed with ``EPS``; 0 ln 0 = 0."""
    q = (q + EPS) / (q + EPS).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(p / q), 0.0)
    return t.sum(axis=-1)


def build_reference(f: Features, exclude: np.ndarray | None = None, kl_sigma: float = 3.0) -> dict:
    """The reference distribution of every SOC band and its KL threshold,
    from the sessions of ``f`` (those in ``exclude`` left out)."""
    use = np.ones(len(f), bool) if exclude is None else ~exclude
    nb = len(BANDS) - 1
    q = np.zeros((nb, BINS))
    thr = np.full(nb, np.inf)
    nref = np.zeros(nb, np.int64)
    kmu = np.full(nb, np.nan)
    ksd = np.full(nb, np.nan)
    for b in range(nb):
        sel = use & f.hist_ok[:, b]
        nref[b] = sel.sum()
        if nref[b] < 5:
            q[b] = 1.0 / BINS
            continue
        q[b] = f.hist[sel, b, :].mean(axis=0)
        # KL values are skewed (bounded below by 0, long right tail): the
        # 3-sigma threshold is taken on ln KL
        k = np.log(np.maximum(kl(f.hist[sel, b, :], q[b][None, :]), 1e-9))
        kmu[b], ksd[b] = k.mean(), k.std(ddof=1)
        thr[b] = float(np.exp(kmu[b] + kl_sigma * ksd[b]))
    return {"bands": list(BANDS), "bins": BINS, "q": q.tolist(), "threshold": thr.tolist(),
            "ln_kl_mean": kmu.tolist(), "ln_kl_std": ksd.tolist(), "sessions": nref.tolist(),
            "eps": EPS, "kl_sigma": kl_sigma}


def kl_check(f: Features, ref: dict) -> dict:
    """A-2: {"kl": (sessions, bands), "alarm": (sessions, bands) bool, "threshold": (bands,)}."""
    q = np.asarray(ref["q"])
    thr = np.array([math.inf if v is None else v for v in ref["threshold"]], np.float64)
    k = kl(f.hist, q[None, :, :])
    k = np.where(f.hist_ok, k, np.nan)
    return {"kl": k, "alarm": f.hist_ok & (k > thr[None, :]), "threshold": thr}


def save_reference(ref: dict, path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(ref, indent=1, default=lambda v: None if v != v else v)
                 .replace("Infinity", "null").replace("NaN", "null"))


def load_reference(path) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.exists() else None


# ---- alarms -----------------------------------------------------------------------
def alarms(f: Features, a1: dict, a2: dict | None, ref: dict | None = None) -> list[dict]:
    """Alarm list with the evidence of each (one per session x rule x metric/band)."""
    out = []
    base = lambda i: {"charger_id": int(f.cols["charger_id"][i]), "boot": int(f.cols["boot"][i]),
                      "session": int(f.cols["session"][i]), "vin": str(f.cols["vin"][i]),
                      "start_ms": int(f.cols["start_ms"][i]), "end_ms": int(f.cols["end_ms"][i]),
                      "in_progress": not bool(f.cols["complete"][i])}
    for met in METRICS:
        r = a1[met]
        for i in np.nonzero(r["alarm"])[0]:
            sd = float(r["sigma"][i])
            d = base(i)
            d.update(rule="A-1", check="3sigma", metric=met, unit=UNITS[met], scope=str(r["scope"][i]),
                     value=round(float(r["value"][i]), 4), mu=round(float(r["mu"][i]), 4),
                     sigma=round(sd, 4), n_history=int(r["n"][i]),
                     threshold=round(float(r["threshold"][i]), 4),
                     z=round((float(r["value"][i]) - float(r["mu"][i])) / max(sd, FLOORS[met]), 2))
            d["text"] = "%s %.3g %s > μ+3σ = %.3g (μ %.3g, σ %.3g over %d earlier sessions of the %s)" % (
                met, d["value"], d["unit"], d["threshold"], d["mu"], sd, d["n_history"], d["scope"])
            out.append(d)
    if a2 is not None:
        nb = len(BANDS) - 1
        for i, b in zip(*np.nonzero(a2["alarm"])):
            d = base(i)
            d.update(rule="A-2", check="kl", metric="temp_distribution", unit="nat", scope="reference",
                     band="%d-%d %%" % (BANDS[b], min(BANDS[b + 1], 100)),
                     value=round(float(a2["kl"][i, b]), 4), threshold=round(float(a2["threshold"][b]), 4),
                     p=[round(float(v), 4) for v in f.hist[i, b]],
                     q=[round(float(v), 4) for v in (ref["q"][b] if ref else [])])
            d["text"] = "KL(P||Q) %.3f > %.3f in SOC band %s" % (d["value"], d["threshold"], d["band"])
            out.append(d)
    out.sort(key=lambda d: (d["start_ms"], d["charger_id"], d["rule"], d["metric"]))
    return out


def session_alarm_mask(f: Features, a1: dict, a2: dict | None) -> np.ndarray:
    m = np.zeros(len(f), bool)
    for met in METRICS:
        m |= a1[met]["alarm"]
    if a2 is not None:
        m |= a2["alarm"].any(axis=1)
    return m


def analyse(f: Features, ref: dict | None = None, rules: Rules = Rules(),
            build_ref: bool = True) -> tuple[list, dict, dict | None, dict | None]:
    """A-1 then A-2 (a reference built from ``f``'s sessions without A-1
    alarms when none is given).  -> (alarms, a1, a2, reference)"""
    a1 = three_sigma(f, rules)
    if ref is None and build_ref:
        ref = build_reference(f, exclude=session_alarm_mask(f, a1, None), kl_sigma=rules.kl_sigma)
    a2 = kl_check(f, ref) if ref is not None else None
    return alarms(f, a1, a2, ref), a1, a2, ref
