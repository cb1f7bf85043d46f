"""Synthetic fleet: chargers, vehicles and a year of charging sessions, with
faults injected, as Table-1 records (the firmware's layouts, ``wire``).

    fl = Fleet(FleetSpec(chargers=20, days=30, seed=1))
    for day in range(fl.spec.days):
        sess = fl.sessions_of_day(day)          # a structured array, one row a session
        tab = fl.table(sess)                     # Arrow, wire.SCHEMA (bulk path, no bytes)
        streams = fl.streams(sess)               # {charger_id: record bytes} (the MQTT path)

The model, per session (lumped, vectorised over sessions; a coarse 5 s grid
for the thermal ODE, records at the Table-1 intervals):

* current: constant ``i0`` (the lower of the charger's and the vehicle's
  limit) up to 80 % SOC, then a taper proportional to (100 - SOC);
* SOC by coulomb counting, cell voltage = OCV(SOC) (the BMS simulator's LFP
  or NCM table) + I x r_cell;
* pack temperature: C dT/dt = I^2 R + P_fault - h (T - T_ambient); ambient
  from the season (by latitude band of the region), the hour and noise;
  the hottest probe reads T + the vehicle's hot-spot offset + noise;
* the spread between the highest and the lowest cell: the vehicle's own
  base mismatch + a current-dependent part + noise.

Every vehicle has its own capacity, chemistry, resistance, cooling, heat
capacity, mismatch and hot spot; every charger its own current limit and
region.  A vehicle charges mostly at a few "home" chargers.

Faults (``FAULTS``), injected into ``spec.fault_rate`` of the sessions, with
a severity drawn uniformly from [0.2, 1] (mild ones are meant to be hard to
see) and an onset at 20..70 % of the session:

    1 thermal     extra heat (an internal short, a cooling failure), growing
                  after onset: higher temperature, rise and rise rate
    2 imbalance   one cell falls behind (a micro-short): the cell voltage
                  spread grows after onset
    3 hotspot     a local hot spot at one probe: the hottest probe runs away
                  after onset while the bulk temperature stays normal

The ground truth (``fault``, ``severity``) stays in the session rows; the
records carry only what a charger would send.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from host_tools.bms.battery import LFP, NCM
from host_tools.telemetry import FW, EV

from . import wire as W

FAULTS = {0: "clean", 1: "thermal", 2: "imbalance", 3: "hotspot"}
STATUS_MS = 250
DEMAND_MS = 50
GRID_S = 5.0
EPOCH = dt.date(2026, 1, 1)
REGIONS = np.array([440305, 440106, 110105, 310115, 320102, 510104, 330106, 230102], np.int64)
REGION_LAT = np.array([22.5, 23.1, 39.9, 31.2, 32.0, 30.6, 30.3, 45.8])


@dataclass
class FleetSpec:
    chargers: int = 100
    days: int = 365
    sessions_per_day: float = 4.0       # per charger (Poisson)
    vehicles_per_charger: float = 6.0
    fault_rate: float = 0.01            # of the sessions
    seed: int = 1
    start: dt.date = EPOCH
    first_charger_id: int = 100001
    min_minutes: float = 8.0
    demand: bool = False                # 50 ms demand records too (store size, ingest)


SESSION_DT = np.dtype([
    ("sid", "<i8"), ("charger", "<i4"), ("vehicle", "<i4"), ("charger_id", "<i8"),
    ("start_ms", "<i8"), ("n_status", "<i4"), ("soc0", "<f4"), ("soc1", "<f4"),
    ("i0", "<f4"), ("ambient", "<f4"), ("fault", "<i1"), ("severity", "<f4"),
    ("onset", "<f4"), ("session_no", "<i4")])


def _ocv_table(chem):
    xs = np.array([p[0] for p in chem.ocv], np.float64)
    ys = np.array([p[1] for p in chem.ocv], np.float64)
    return xs, ys


_OCV = (_ocv_table(LFP), _ocv_table(NCM))


def vin_of(vehicle: np.ndarray) -> np.ndarray:
    return np.char.add("LSYNV", np.char.zfill(np.asarray(vehicle).astype(str), 12))


class Fleet:
    def __init__(self, spec: FleetSpec):
        self.spec = s = spec
        rng = np.random.default_rng(s.seed)
        nc = s.chargers
        nv = max(1, int(round(nc * s.vehicles_per_charger)))
        self.n_vehicles = nv
        self.charger_ids = s.first_charger_id + np.arange(nc, dtype=np.int64)
        self.charger_region = rng.integers(0, len(REGIONS), nc)
        self.charger_imax = rng.choice([125.0, 200.0, 250.0], nc, p=[0.3, 0.4, 0.3])
        self.charger_type = rng.choice([1, 2, 3], nc, p=[0.5, 0.3, 0.2]).astype(np.int64)
        self.charger_t0 = rng.integers(0, 1 << 30, nc)          # board ms at day 0
        # vehicles
        self.v_chem = (rng.random(nv) < 0.35).astype(np.int8)     # 0 LFP, 1 NCM
        self.v_cap = rng.choice([100.0, 150.0, 200.0, 280.0], nv)
        self.v_cells = np.where(self.v_chem == 1, 96, 104).astype(np.int64)
        self.v_imax = np.minimum(self.v_cap * 1.5, 400.0) * rng.uniform(0.8, 1.0, nv)
        r_mohm_ah = np.where(self.v_chem == 1, NCM.r_mohm_ah, LFP.r_mohm_ah)
        self.v_rcell = r_mohm_ah / self.v_cap / 1000.0 * rng.uniform(0.85, 1.15, nv)
        kg = np.where(self.v_chem == 1, NCM.kg_per_ah, LFP.kg_per_ah)
        self.v_heatcap = self.v_cells * self.v_cap * kg * 1000.0 * rng.uniform(0.9, 1.1, nv)
        self.v_cool = rng.uniform(25.0, 60.0, nv)                  # W/K
        self.v_spread = rng.uniform(0.01, 0.035, nv)               # V, base mismatch
        self.v_hot = rng.uniform(0.0, 3.0, nv)                     # degC, hottest probe
        # each vehicle charges mostly at up to 3 home chargers
        self.v_home = rng.integers(0, nc, (nv, 3))
        self.v_of_charger = [[] for _ in range(nc)]
        for v in range(nv):
            for c in set(self.v_home[v].tolist()):
                self.v_of_charger[c].append(v)
        for c in range(nc):
            if not self.v_of_charger[c]:
                self.v_of_charger[c].append(int(rng.integers(0, nv)))
        self.v_of_charger = [np.array(x, np.int64) for x in self.v_of_charger]
        self.vins = vin_of(np.arange(nv))
        self.next_session = np.zeros(nc, np.int64)
        self.next_n = np.zeros(nc, np.int64)                  # TCU record numbers
        self.next_seq = np.zeros(nc, np.int64)
        self._sid = 0

    # ---- sessions -----------------------------------------------------------
    def sessions_of_day(self, day: int) -> np.ndarray:
        """The sessions starting on ``day`` (0-based), in start order per charger."""
        s = self.spec
        rng = np.random.default_rng([s.seed, 7, day])
        nc = s.chargers
        k = rng.poisson(s.sessions_per_day, nc)
        n = int(k.sum())
        out = np.zeros(n, SESSION_DT)
        if n == 0:
            return out
        ch = np.repeat(np.arange(nc), k)
        # vehicle: from the charger's home set (90 %) or any vehicle (visitors)
        pick = np.array([self.v_of_charger[c][i % len(self.v_of_charger[c])]
                         for c, i in zip(ch.tolist(), rng.integers(0, 1 << 30, n).tolist())])
        visitor = rng.random(n) < 0.1
        veh = np.where(visitor, rng.integers(0, self.n_vehicles, n), pick)
        # start times: spread over the day, sorted per charger, sessions do not overlap
        hours = np.sort(rng.uniform(6.0, 23.0, n) + ch * 100.0) - ch * 100.0
        day0_ms = int((s.start - dt.date(1970, 1, 1)).days + day) * 86_400_000
        start_ms = day0_ms + (hours * 3_600_000).astype(np.int64)
        soc0 = rng.uniform(8.0, 55.0, n)
        soc1 = np.minimum(100.0, soc0 + rng.uniform(25.0, 70.0, n))
        i0 = np.minimum(self.charger_imax[ch], self.v_imax[veh])
        cap = self.v_cap[veh]
        # duration from the SOC window (CC to 80 %, exponential taper above)
        k_cc = i0 / (36.0 * cap)                      # %/s
        t_cc = np.maximum(0.0, np.minimum(soc1, 80.0) - soc0) / k_cc
        tau = 20.0 / k_cc
        top = np.maximum(soc1, 80.0)
        t_tp = np.where(soc1 > 80.0, -tau * np.log(np.maximum(1e-3, (100.0 - np.minimum(top, 99.0)) / 20.0)), 0.0)
        dur_s = np.maximum(s.min_minutes * 60.0, t_cc + t_tp)
        dur_s = np.minimum(dur_s, 3 * 3600.0)
        # keep the sessions of a charger apart (next start after the previous end + 5 min)
        order = np.lexsort((start_ms, ch))
        start_ms, ch, veh, soc0, soc1, i0, dur_s = (a[order] for a in (start_ms, ch, veh, soc0, soc1, i0, dur_s))
        visitor = visitor[order]
        for j in range(1, n):
            if ch[j] == ch[j - 1]:
                end = start_ms[j - 1] + int(dur_s[j - 1] * 1000) + 300_000
                if start_ms[j] < end:
                    start_ms[j] = end
        lat = REGION_LAT[self.charger_region[ch]]
        doy = (day + (s.start - dt.date(s.start.year, 1, 1)).days) % 365
        season = np.cos(2 * np.pi * (doy - 200) / 365.0)        # +1 in July
        hour = (start_ms % 86_400_000) / 3_600_000.0
        amb = (28.0 - 0.45 * (lat - 22.0)) + (6.0 + 0.3 * (lat - 22.0)) * season \
            + 3.0 * np.cos(2 * np.pi * (hour - 15.0) / 24.0) + rng.normal(0.0, 1.5, n)
        fault = np.where(rng.random(n) < s.fault_rate, rng.integers(1, 4, n), 0)
        out["sid"] = self._sid + np.arange(n)
        self._sid += n
        out["charger"] = ch
        out["vehicle"] = veh
        out["charger_id"] = self.charger_ids[ch]
        out["start_ms"] = start_ms
        out["n_status"] = (dur_s * 1000 // STATUS_MS).astype(np.int64)
        out["soc0"], out["soc1"], out["i0"], out["ambient"] = soc0, soc1, i0, amb
        out["fault"] = fault
        out["severity"] = np.where(fault > 0, rng.uniform(0.2, 1.0, n), 0.0)
        out["onset"] = rng.uniform(0.2, 0.7, n)
        # session numbers per charger, in order
        sn = np.zeros(n, np.int64)
        for j in range(n):
            c = ch[j]
            self.next_session[c] += 1
            sn[j] = self.next_session[c]
        out["session_no"] = sn
        return out

    def all_sessions(self) -> np.ndarray:
        return np.concatenate([self.sessions_of_day(d) for d in range(self.spec.days)])

    # ---- time series ----------------------------------------------------------
    def profiles(self, sess: np.ndarray, seed: int = 0) -> dict:
        """Status-rate (250 ms) samples of every session, flat arrays in
        session order: ``row_session`` (index into ``sess``), ``t_s``, ``soc``,
        ``i``, ``v``, ``cell_max``, ``cell_min`` (V), ``temp_max``,
        ``temp_min`` (degC, floats before the wire's quantisation)."""
        rng = np.random.default_rng([self.spec.seed, 11, seed, int(sess["sid"][0]) if len(sess) else 0])
        m = len(sess)
        veh = sess["vehicle"].astype(np.int64)
        cap, i0 = self.v_cap[veh], sess["i0"].astype(np.float64)
        soc0, soc1 = sess["soc0"].astype(np.float64), sess["soc1"].astype(np.float64)
        ns = sess["n_status"].astype(np.int64)
        dur = ns * STATUS_MS / 1000.0
        # coarse grid: thermal ODE
        G = int(np.ceil(dur.max() / GRID_S)) + 2 if m else 1
        tg = np.arange(G) * GRID_S
        k_cc = i0 / (36.0 * cap)
        soc_g = self._soc(soc0[:, None], soc1[:, None], k_cc[:, None], tg[None, :])
        i_g = np.where(soc_g < 80.0, 1.0, np.clip((100.0 - soc_g) / 20.0, 0.05, 1.0)) * i0[:, None]
        i_g = np.where(soc_g >= soc1[:, None] - 1e-6, np.minimum(i_g, 0.05 * i0[:, None]), i_g)
        cells = self.v_cells[veh].astype(np.float64)
        R = self.v_rcell[veh] * cells
        C = self.v_heatcap[veh]
        h = self.v_cool[veh]
        amb = sess["ambient"].astype(np.float64)
        fault = sess["fault"]
        sev = sess["severity"].astype(np.float64)
        onset_s = sess["onset"] * dur
        T = np.empty((m, G))
        T[:, 0] = amb + rng.uniform(0.0, 3.0, m)      # parked pack a little above ambient
        base_heat = i0 * i0 * R
        for g in range(1, G):
            t = tg[g - 1]
            p = i_g[:, g - 1] ** 2 * R
            after = (fault == 1) & (t >= onset_s)
            p = p + np.where(after, sev * base_heat * 1.5 * (1.0 + (t - onset_s) / 600.0), 0.0)
            T[:, g] = T[:, g - 1] + GRID_S * (p - h * (T[:, g - 1] - amb)) / C
        # status samples
        row = np.repeat(np.arange(m), ns)
        first = np.repeat(np.cumsum(ns) - ns, ns)
        k = np.arange(len(row)) - first
        t_s = k * (STATUS_MS / 1000.0)
        gi = np.minimum((t_s / GRID_S).astype(np.int64), G - 2)
        fr = t_s / GRID_S - gi
        lerp = lambda A: A[row, gi] * (1 - fr) + A[row, gi + 1] * fr
        soc = lerp(soc_g)
        cur = lerp(i_g)
        temp = lerp(T)
        chem = self.v_chem[veh][row]
        ocv = np.where(chem == 1, np.interp(soc, *_OCV[1]), np.interp(soc, *_OCV[0]))
        rcell = self.v_rcell[veh][row]
        vmax_cell = ocv + cur * rcell * 1.04 + 0.003 + rng.normal(0, 0.002, len(row))
        spread = self.v_spread[veh][row] * (0.6 + 0.4 * cur / np.maximum(i0[row], 1.0)) \
            + rng.normal(0.0, 0.003, len(row))
        rel = t_s - onset_s[row]
        fr_ = fault[row]
        sv = sev[row]
        spread = spread + np.where((fr_ == 2) & (rel > 0), sv * 0.09 * np.minimum(1.0, rel / 300.0), 0.0)
        hot = self.v_hot[veh][row] + rng.normal(0.0, 0.35, len(row))
        hot = hot + np.where((fr_ == 3) & (rel > 0), sv * 7.0 * np.minimum(1.0, rel / 240.0), 0.0)
        out = {"row_session": row, "t_s": t_s, "soc": soc, "i": cur,
               "v": ocv * cells[row] + cur * R[row], "cell_max": vmax_cell,
               "cell_min": vmax_cell - np.maximum(spread, 0.0), "temp_max": temp + hot,
               "temp_min": temp - 1.0 - 0.5 * self.v_hot[veh][row] + rng.normal(0, 0.35, len(row))}
        return out

    @staticmethod
    def _soc(soc0, soc1, k, t):
        t80 = np.maximum(0.0, 80.0 - soc0) / k
        cc = soc0 + k * t
        tp = 100.0 - (100.0 - np.maximum(soc0, 80.0)) * np.exp(-(k / 20.0) * (t - t80))
        s = np.where(t <= t80, cc, tp)
        return np.minimum(s, soc1)

    # ---- records ---------------------------------------------------------------
    def records(self, sess: np.ndarray, demand: bool | None = None) -> dict:
        """Table-1 records of the sessions: {type: structured array (wire.TYPE_DT)}
        plus ``"order"``: (n, type, index) of every record in emission order per
        charger.  Assigns the per-charger record numbers ``n``."""
        demand = self.spec.demand if demand is None else demand
        if not len(sess):
            raise ValueError("no sessions")
        P = self.profiles(sess)
        row = P["row_session"]
        m = len(sess)
        veh = sess["vehicle"].astype(np.int64)
        ch = sess["charger"].astype(np.int64)
        parts = {}

        def header(t, rows, ms_rel, stage):
            a = np.zeros(len(rows), W.TYPE_DT[t])
            a["magic"], a["version"], a["type"], a["length"] = FW.MAGIC, FW.VERSION, t, FW.SIZES[t]
            absms = sess["start_ms"][rows] + ms_rel
            a["t_ms"] = (self.charger_t0[ch[rows]] + absms - self.spec_start_ms()) & 0x3FFFFFFF
            d = (absms // 86_400_000).astype("datetime64[D]")
            y = d.astype("datetime64[Y]")
            mo = d.astype("datetime64[M]")
            a["year"] = y.astype(np.int64) + 1970
            a["month"] = mo.astype(np.int64) % 12 + 1
            a["day"] = (d - mo.astype("datetime64[D]")).astype(np.int64) + 1
            sod = absms % 86_400_000
            a["hour"], a["minute"] = sod // 3_600_000, sod // 60_000 % 60
            a["second"], a["ms"] = sod // 1000 % 60, sod % 1000
            a["charger_id"] = sess["charger_id"][rows]
            a["charger_type"] = self.charger_type[ch[rows]]
            a["region"] = REGIONS[self.charger_region[ch[rows]]]
            a["session"] = sess["session_no"][rows] & 0xFFFF
            a["stage"] = stage
            a["vin"] = self.vins[veh[rows]].astype("S17")
            return a, absms

        one = np.arange(m)
        # event "session" at -3 s, handshake at -2.5 s, params at -1 s, status, end
        ev, ev_t = header(FW.T_EVENT, one, np.full(m, -3000), 1)
        ev["code"], ev["a"], ev["b"] = EV.EV_SESSION, sess["session_no"] & 0xFFFF, 0
        ev["vin"] = b""
        hs, hs_t = header(FW.T_HANDSHAKE, one, np.full(m, -2500), 1)
        chem = self.v_chem[veh]
        hs["batt_type"] = np.where(chem == 1, NCM.battery_type, LFP.battery_type)
        hs["rated_ah"] = (self.v_cap[veh] * 10).astype(np.int64)
        nom = np.where(chem == 1, NCM.nominal_v, LFP.nominal_v)
        hs["rated_v"] = (nom * self.v_cells[veh] * 10).astype(np.int64)
        maxc = np.where(chem == 1, NCM.max_v, LFP.max_v)
        hs["bhm_max_v"] = (maxc * self.v_cells[veh] * 10).astype(np.int64)
        hs["brm_version"] = 0x000101
        pr, pr_t = header(FW.T_PARAMS, one, np.full(m, -1000), 2)
        pr["max_cell_v"] = (maxc * 100).astype(np.int64)
        pr["max_i"] = (self.v_imax[veh] * 10).astype(np.int64)
        pr["energy"] = (self.v_cap[veh] * nom * self.v_cells[veh] / 100).astype(np.int64)
        pr["max_v"] = hs["bhm_max_v"]
        pr["max_temp"] = 55
        pr["bcp_soc"] = (sess["soc0"] * 10).astype(np.int64)
        pr["bcp_v"] = -1
        ms_rel = (P["t_s"] * 1000).astype(np.int64)
        st, st_t = header(FW.T_STATUS, row, ms_rel, 3)
        st["meas_v"] = np.round(P["v"] * 10)
        st["meas_i"] = np.round(P["i"] * 10)
        st["soc"] = np.floor(P["soc"])
        st["cell_max_v"] = np.round(P["cell_max"] * 100)
        st["cell_max_no"] = 1 + (veh[row] * 7) % 96
        st["cell_min_v"] = np.round(P["cell_min"] * 100)
        st["cell_min_no"] = 1 + (veh[row] * 13) % 96
        st["temp_max"] = np.round(P["temp_max"])
        st["temp_max_no"] = 1 + veh[row] % 8
        st["temp_min"] = np.round(P["temp_min"])
        st["temp_min_no"] = 1 + (veh[row] + 3) % 8
        st["remain_min"] = -1
        st["out_v"] = st["meas_v"] + 5
        st["out_i"] = st["meas_i"]
        st["bsm_flags"] = 1 << 12
        last = np.cumsum(sess["n_status"]) - 1
        en, en_t = header(FW.T_END, one, ms_rel[last] + 500, 4)
        en["end_soc"] = st["soc"][last]
        en["end_cell_min_v"], en["end_cell_max_v"] = st["cell_min_v"][last], st["cell_max_v"][last]
        en["end_temp_min"], en["end_temp_max"] = st["temp_min"][last], st["temp_max"][last]
        en["bst_reason"], en["bst_fault"], en["bst_error"] = 1, 0, 0
        parts = {FW.T_EVENT: (ev, ev_t), FW.T_HANDSHAKE: (hs, hs_t), FW.T_PARAMS: (pr, pr_t),
                 FW.T_STATUS: (st, st_t), FW.T_END: (en, en_t)}
        if demand:
            k = 5                                         # demand every 50 ms
            drow = np.repeat(np.arange(len(row)), k)
            dms = ms_rel[drow] + np.tile(np.arange(k) * DEMAND_MS, len(row))
            de, de_t = header(FW.T_DEMAND, row[drow], dms, 3)
            de["req_v"] = st["meas_v"][drow] + 20
            de["req_i"] = np.round(sess["i0"][row[drow]] * 10)
            de["req_mode"] = 2
            de["out_v"] = st["out_v"][drow]
            de["out_i"] = st["out_i"][drow]
            de["set_v"], de["set_i"] = de["req_v"], de["out_i"]
            de["pwr_v"] = de["out_v"]
            parts[FW.T_DEMAND] = (de, de_t)
        # emission order per charger: by charger, then time; numbers n and seq
        types = np.concatenate([np.full(len(a), t, np.int8) for t, (a, _) in parts.items()])
        idx = np.concatenate([np.arange(len(a)) for a, _ in parts.values()])
        tt = np.concatenate([ta for _, ta in parts.values()])
        cid = np.concatenate([a["charger_id"] for a, _ in parts.values()])
        order = np.lexsort((tt, cid))
        cid_o = cid[order]
        ci = np.searchsorted(self.charger_ids, cid_o)
        first = np.r_[0, np.nonzero(np.diff(cid_o))[0] + 1]
        cnt = np.diff(np.r_[first, len(cid_o)])
        rank = np.arange(len(cid_o)) - np.repeat(first, cnt)
        n_o = self.next_n[ci] + rank
        seq_o = (self.next_seq[ci] + rank) & 0xFFFF
        np.add.at(self.next_n, ci[first], cnt)
        np.add.at(self.next_seq, ci[first], cnt)
        ns = np.empty(len(order), np.int64)
        ns[order] = n_o
        sq = np.empty(len(order), np.int64)
        sq[order] = seq_o
        off = 0
        out = {}
        for t, (a, _) in parts.items():
            a["seq"] = sq[off:off + len(a)]
            a["crc"] = W.crc_rows(a.view(np.uint8).reshape(len(a), -1)[:, :a.dtype.itemsize - 2])
            out[t] = (a, ns[off:off + len(a)])
            off += len(a)
        out["order"] = (cid_o, n_o, types[order], idx[order])
        return out

    def spec_start_ms(self) -> int:
        return (self.spec.start - dt.date(1970, 1, 1)).days * 86_400_000

    def table(self, sess: np.ndarray, demand: bool | None = None) -> pa.Table:
        """The sessions' records as the store's rows (``wire.SCHEMA``), no bytes."""
        R = self.records(sess, demand)
        tabs = []
        for t, v in R.items():
            if t == "order":
                continue
            a, ns = v
            buf = a.tobytes()
            offs = np.arange(len(a), dtype=np.int64) * a.dtype.itemsize
            tab, bad = W.decode_columns(buf, ns, offs=offs, types=np.full(len(a), t, np.int8),
                                        check_crc=False)
            assert bad == 0
            tabs.append(tab)
        return pa.concat_tables(tabs)

    def streams(self, sess: np.ndarray, demand: bool | None = None) -> dict:
        """{charger_id: (first n, [record bytes...])}: what each charger's
        telemetry channel emits, in order."""
        R = self.records(sess, demand)
        cid_o, n_o, t_o, i_o = R["order"]
        raw = {t: v[0].view(np.uint8).reshape(len(v[0]), -1) for t, v in R.items() if t != "order"}
        out = {}
        for c in np.unique(cid_o):
            sel = np.nonzero(cid_o == c)[0]
            out[int(c)] = (int(n_o[sel[0]]), [raw[int(t_o[j])][i_o[j]].tobytes() for j in sel])
        return out


def truth(sess: np.ndarray, fleet: Fleet) -> pa.Table:
    """Ground truth of the sessions, joinable to the analytics' sessions on
    (charger_id, session_no)."""
    return pa.table({"charger_id": sess["charger_id"], "session": (sess["session_no"] & 0xFFFF).astype(np.int32),
                     "vin": fleet.vins[sess["vehicle"]], "fault": sess["fault"].astype(np.int8),
                     "fault_name": np.array([FAULTS[int(f)] for f in sess["fault"]], object).astype(str),
                     "severity": sess["severity"]})
