"""Alarm report: a text file and one PNG per alarmed session (matplotlib, files only).

Each PNG shows, for every A-1 alarm of the session, the history the rule
used (histogram of the metric over the earlier sessions of the same vehicle,
charger or fleet) with μ, μ + 3σ and the session's value, the session's
own cell-voltage spread and highest temperature over time (when its records
are given), and for an A-2 alarm the session's distribution P against the
band's reference Q.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np

from . import analytics as A


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def write(out_dir, alarms: list[dict], f: A.Features, series: dict | None = None,
          title: str = "platform alarms") -> list[Path]:
    """``series``: {(charger_id, boot, session): {"t_s", "spread_v", "temp_c"}}
    for the sessions whose records were at hand.  Returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    lines = ["%s: %d alarm(s)" % (title, len(alarms)), ""]
    by_sess: dict = {}
    for a in alarms:
        by_sess.setdefault((a["charger_id"], a["boot"], a["session"]), []).append(a)
    vins = f.cols["vin"].astype(str)
    for key, al in by_sess.items():
        a0 = al[0]
        lines.append("charger %d session %d  VIN %s  %s%s" % (
            a0["charger_id"], a0["session"], a0["vin"] or "?", _when(a0["start_ms"]),
            "  (in progress)" if a0["in_progress"] else ""))
        for a in al:
            lines.append("  %s %-16s %s" % (a["rule"], a["metric"], a["text"]))
        a1 = [a for a in al if a["rule"] == "A-1"]
        a2 = [a for a in al if a["rule"] == "A-2"]
        npan = len(a1) + len(a2) + (1 if series and key in series else 0)
        fig, axes = plt.subplots(npan, 1, figsize=(8, 2.6 * npan), squeeze=False)
        axes = axes[:, 0]
        k = 0
        for a in a1:
            ax = axes[k]
            k += 1
            met = a["metric"]
            sc = a["scope"]
            sel = np.ones(len(f), bool)
            if sc == "vehicle":
                sel = vins == a["vin"]
            elif sc == "charger":
                sel = f.cols["charger_id"] == a["charger_id"]
            sel &= f.cols["start_ms"] < a["start_ms"]
            hist = f.cols[met][sel]
            hist = hist[~np.isnan(hist)]
            if len(hist):
                ax.hist(hist, bins=30, color="#8aa", label="history (%s, n=%d)" % (sc, len(hist)))
            ax.axvline(a["mu"], color="k", ls="--", label="μ %.3g" % a["mu"])
            ax.axvline(a["threshold"], color="orange", label="μ+3σ %.3g" % a["threshold"])
            ax.axvline(a["value"], color="red", lw=2, label="this session %.3g" % a["value"])
            ax.set_title("A-1 %s (%s)" % (met, a["unit"]), fontsize=9)
            ax.legend(fontsize=7)
        for a in a2:
            ax = axes[k]
            k += 1
            x = np.arange(A.BINS) / A.BINS + 0.5 / A.BINS
            ax.bar(x - 0.02, a["p"], width=0.04, label="session P")
            ax.bar(x + 0.02, a["q"], width=0.04, label="reference Q")
            ax.set_title("A-2 normalised temperature, SOC %s: KL %.3f > %.3f" % (
                a["band"], a["value"], a["threshold"]), fontsize=9)
            ax.legend(fontsize=7)
        if series and key in series:
            s = series[key]
            ax = axes[k]
            ax.plot(s["t_s"], s["spread_v"], color="tab:blue")
            ax.set_ylabel("cell spread V", color="tab:blue")
            ax2 = ax.twinx()
            ax2.plot(s["t_s"], s["temp_c"], color="tab:red")
            ax2.set_ylabel("max temp degC", color="tab:red")
            ax.set_xlabel("s since the first status record")
            ax.set_title("session records", fontsize=9)
        fig.suptitle("charger %d session %d VIN %s" % (a0["charger_id"], a0["session"], a0["vin"]),
                     fontsize=10)
        fig.tight_layout()
        p = out / ("alarm-%d-%d-%d.png" % key)
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(p)
        lines.append("  plot: %s" % p.name)
        lines.append("")
    txt = out / "alarms.txt"
    txt.write_text("\n".join(lines) + "\n")
    js = out / "alarms.json"
    js.write_text(json.dumps(alarms, indent=1, ensure_ascii=False))
    return [txt, js] + files


def series_of(tab) -> dict:
    """Per-session time series (for the plots) from records (Arrow, wire.SCHEMA)."""
    import pyarrow.compute as pc
    st = tab.filter(pc.equal(tab.column("type"), 4))
    out = {}
    cid = np.asarray(st.column("charger_id"))
    boot = np.asarray(st.column("boot"))
    ses = np.asarray(st.column("session"))
    t = A._ts_ms(st.column("ts")).astype(np.float64)
    cmax = A._np(st.column("cell_max_v")) / 100
    cmin = A._np(st.column("cell_min_v")) / 100
    tmax = A._np(st.column("temp_max"))
    for k in set(zip(cid.tolist(), boot.tolist(), ses.tolist())):
        sel = (cid == k[0]) & (boot == k[1]) & (ses == k[2])
        o = np.argsort(t[sel])
        tt = t[sel][o]
        out[k] = {"t_s": (tt - tt[0]) / 1000.0, "spread_v": (cmax - cmin)[sel][o], "temp_c": tmax[sel][o]}
    return out
