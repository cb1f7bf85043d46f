"""Verdicts on what the charger did, from what the simulator saw and sent.

The simulator fills a ``Recorder`` (charger frames received, BMS frames sent,
transport transfers, and events such as "BST sent" or "BCL drop started");
``evaluate()`` turns it into ``CheckResult``s with a verdict each:

    PASS     measured value within the limit
    FAIL     measured value outside the limit (``measured`` says by how much)
    NOT RUN  the run never produced the situation the check needs

All times are in the simulator's milliseconds (simulated or wall-clock).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from . import codec
from .params import BmsParams

PASS, FAIL, NOT_RUN = "PASS", "FAIL", "NOT RUN"

# Charger-side receive timeouts (spec section 4.2, charger table) and the event that
# starts each timer when the message has never been received.
CHARGER_TIMEOUTS = {"BRM": 5000, "BCP": 5000, "BRO": 5000, "BCL": 1000, "BCS": 5000,
                    "BST": 5000, "BSD": 10000}
_TIMER_START = {"BRM": ("CRM", 0x00), "BCP": ("CRM", 0xAA), "BRO": ("CML", None),
                "BCL": ("CRO", 0xAA), "BCS": ("CRO", 0xAA), "BST": ("CST", None), "BSD": ("CST", None)}


@dataclass
class CheckResult:
    name: str
    verdict: str
    measured: str = ""
    limit: str = ""
    detail: str = ""

    def __str__(self) -> str:
        return "%-8s %-28s %s%s" % (self.verdict, self.name, self.measured,
                                    (" (limit %s)" % self.limit) if self.limit else "")


@dataclass
class Frame:
    t: float
    name: str
    data: bytes
    cid: int = 0

    @property
    def dlc(self) -> int:
        return len(self.data)


@dataclass
class Recorder:
    rx: Dict[str, List[Frame]] = field(default_factory=dict)    # charger frames by name
    tx: Dict[str, List[Frame]] = field(default_factory=dict)    # BMS messages sent by name
    events: List[Tuple[float, str, Dict[str, Any]]] = field(default_factory=list)
    transfers: list = field(default_factory=list)               # tp.TransferRecord
    unknown_rx: int = 0

    def on_rx(self, t: float, name: str, data: bytes, cid: int = 0) -> None:
        self.rx.setdefault(name, []).append(Frame(t, name, bytes(data), cid))

    def on_tx(self, t: float, name: str, data: bytes, cid: int = 0) -> None:
        self.tx.setdefault(name, []).append(Frame(t, name, bytes(data), cid))

    def event(self, t: float, kind: str, **info) -> None:
        self.events.append((t, kind, info))

    def first_event(self, kind: str, after: float = -1e18, **match) -> Optional[Tuple[float, Dict[str, Any]]]:
        for t, k, info in self.events:
            if k == kind and t >= after and all(info.get(a) == b for a, b in match.items()):
                return t, info
        return None

    def events_of(self, kind: str):
        return [(t, info) for t, k, info in self.events if k == kind]


def _fmt_ms(x: float) -> str:
    return "%.0f ms" % x


def _decoded(frames: List[Frame], name: str):
    return [(f.t, codec.decode(name, f.data), f) for f in frames]


# ------------------------------------------------------------------ per-message checks
def _check_dlc(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    out = []
    for name in codec.CHARGER_MESSAGES:
        want = p.checks.ccs_dlc if name == "CCS" else codec.MESSAGES[name].length
        frames = rec.rx.get(name, [])
        if not frames:
            out.append(CheckResult("dlc." + name, NOT_RUN, "not received", str(want)))
            continue
        bad = [f for f in frames if f.dlc != want]
        seen = sorted({f.dlc for f in frames})
        out.append(CheckResult("dlc." + name, FAIL if bad else PASS,
                               "DLC %s (%d/%d wrong)" % (",".join(map(str, seen)), len(bad), len(frames)),
                               str(want)))
    return out


def _check_periods(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    out = []
    lim = p.checks
    for name in codec.CHARGER_MESSAGES:
        nominal = codec.MESSAGES[name].period_ms
        tol = max(nominal * lim.period_tol_pct / 100.0, lim.period_tol_ms)
        # A gap longer than this is the charger deliberately pausing the message
        # (stage change, re-handshake), not a period error.
        brk = max(4 * nominal, 1000)
        ts = [f.t for f in rec.rx.get(name, [])]
        gaps = [b - a for a, b in zip(ts, ts[1:]) if b - a <= brk]
        limit = "%d +-%.1f ms" % (nominal, tol)
        if not gaps:
            out.append(CheckResult("period." + name, NOT_RUN, "%d frame(s)" % len(ts), limit))
            continue
        bad = [g for g in gaps if abs(g - nominal) > tol]
        worst = max(gaps, key=lambda g: abs(g - nominal))
        meas = "mean %.1f min %.1f max %.1f ms (n=%d, %d out)" % (
            sum(gaps) / len(gaps), min(gaps), max(gaps), len(gaps), len(bad))
        out.append(CheckResult("period." + name, FAIL if bad else PASS, meas, limit,
                               "worst interval %.1f ms" % worst))
    return out


def _check_content(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    out = []
    rx = rec.rx
    # CHM version
    chm = _decoded(rx.get("CHM", []), "CHM")
    want = p.version_int()
    if chm:
        bad = [d for _, d, _ in chm if d.get("version") != want]
        out.append(CheckResult("content.CHM", FAIL if bad else PASS,
                               "version %s" % codec.hexs(chm[0][2].data), codec.hexs(want.to_bytes(3, "little"))))
    else:
        out.append(CheckResult("content.CHM", NOT_RUN, "no CHM"))
    # CRM 0x00 then 0xAA only after a complete BRM
    crm = _decoded(rx.get("CRM", []), "CRM")
    if crm:
        vals = [d.get("result") for _, d, _ in crm]
        errs = []
        if any(v not in (0x00, 0xAA) for v in vals):
            errs.append("value not 00/AA")
        if vals[0] != 0x00:
            errs.append("first CRM is %02X" % vals[0])
        first_aa = next((t for t, d, _ in crm if d.get("result") == 0xAA), None)
        brm_done = next((r.ended_ms for r in rec.transfers if r.pgn == codec.MESSAGES["BRM"].pgn
                         and r.result == "ok"), None)
        meas = "first AA at %s, BRM complete at %s" % (
            "-" if first_aa is None else _fmt_ms(first_aa), "-" if brm_done is None else _fmt_ms(brm_done))
        if first_aa is not None and (brm_done is None or first_aa < brm_done):
            errs.append("CRM AA before a complete BRM")
        out.append(CheckResult("content.CRM", FAIL if errs else PASS, meas, "00 then AA after BRM",
                               "; ".join(errs)))
    else:
        out.append(CheckResult("content.CRM", NOT_RUN, "no CRM"))
    # CML limits are consistent
    cml = _decoded(rx.get("CML", []), "CML")
    if cml:
        d = cml[-1][1]
        ok = bool(d) and d["max_voltage_v"] >= d["min_voltage_v"] and d["max_current_a"] >= d["min_current_a"] >= 0
        meas = ("%.1f..%.1f V, %.1f..%.1f A" % (d["min_voltage_v"], d["max_voltage_v"], d["min_current_a"],
                                                d["max_current_a"])) if d else "short frame"
        out.append(CheckResult("content.CML", PASS if ok else FAIL, meas, "max >= min, current >= 0"))
    else:
        out.append(CheckResult("content.CML", NOT_RUN, "no CML"))
    # CRO 0xAA only after BRO 0xAA
    cro = _decoded(rx.get("CRO", []), "CRO")
    if cro:
        first_aa = next((t for t, d, _ in cro if d.get("value") == 0xAA), None)
        bro_aa = next((f.t for f in rec.tx.get("BRO", []) if f.data[:1] == b"\xaa"), None)
        errs = []
        if any(d.get("value") not in (0x00, 0xAA) for _, d, _ in cro):
            errs.append("value not 00/AA")
        if first_aa is not None and (bro_aa is None or first_aa < bro_aa):
            errs.append("CRO AA before BRO AA")
        meas = "first AA at %s, BRO AA at %s" % ("-" if first_aa is None else _fmt_ms(first_aa),
                                                 "-" if bro_aa is None else _fmt_ms(bro_aa))
        out.append(CheckResult("content.CRO", FAIL if errs else PASS, meas, "AA only after BRO AA", "; ".join(errs)))
    else:
        out.append(CheckResult("content.CRO", NOT_RUN, "no CRO"))
    out += _check_ccs(rec, p)
    out.append(_check_cst_content(rec))
    return out


def _check_ccs(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    ccs = [(t, d) for t, d, _ in _decoded(rec.rx.get("CCS", []), "CCS") if "current_a" in d]
    if not ccs:
        return [CheckResult(n, NOT_RUN, "no CCS") for n in ("ccs.current_le_cml", "ccs.voltage_le_bcp",
                                                            "ccs.follows_bcl")]
    out = []
    cml = [d for _, d, _ in _decoded(rec.rx.get("CML", []), "CML") if d]
    imax = max(d["current_a"] for _, d in ccs)
    if cml:
        lim = cml[-1]["max_current_a"]
        out.append(CheckResult("ccs.current_le_cml", PASS if imax <= lim + 0.1 else FAIL,
                               "max %.1f A" % imax, "%.1f A" % lim))
    else:
        out.append(CheckResult("ccs.current_le_cml", NOT_RUN, "no CML"))
    vmax = max(d["voltage_v"] for _, d in ccs)
    vlim = p.max_voltage_v * 1.005
    out.append(CheckResult("ccs.voltage_le_bcp", PASS if vmax <= vlim else FAIL, "max %.1f V" % vmax,
                           "%.1f V (BCP +0.5 %%)" % vlim))
    # Current follows the demand: never above the largest BCL demand of the last window.
    lim = p.checks
    bcl = [(f.t, codec._cur_phys(int.from_bytes(f.data[2:4], "little"))) for f in rec.tx.get("BCL", [])
           if len(f.data) >= 4]
    if not bcl:
        out.append(CheckResult("ccs.follows_bcl", NOT_RUN, "no BCL sent"))
        return out
    worst, worst_t = -1e9, None
    # Sliding-window maximum of the demand (monotonic deque): linear in the
    # number of frames, so an hour-long session is checked in milliseconds.
    from collections import deque
    bcl.sort(key=lambda x: x[0])
    win: deque = deque()
    j = 0
    for t, d in sorted(ccs, key=lambda x: x[0]):
        while j < len(bcl) and bcl[j][0] <= t:
            while win and win[-1][1] <= bcl[j][1]:
                win.pop()
            win.append(bcl[j])
            j += 1
        while win and win[0][0] < t - lim.current_follow_ms:
            win.popleft()
        if not win:
            continue
        dem = win[0][1]
        excess = d["current_a"] - (dem + max(lim.current_follow_tol_a, dem * lim.current_follow_tol_pct / 100))
        if excess > worst:
            worst, worst_t = excess, t
    if worst_t is None:
        out.append(CheckResult("ccs.follows_bcl", NOT_RUN, "no CCS during BCL"))
    else:
        out.append(CheckResult("ccs.follows_bcl", FAIL if worst > 0 else PASS,
                               "max excess %+.1f A over demand+tol" % worst,
                               "<= max BCL demand of last %d ms" % lim.current_follow_ms))
    return out


def _check_cst_content(rec: Recorder) -> CheckResult:
    cst = _decoded(rec.rx.get("CST", []), "CST")
    if not cst:
        return CheckResult("content.CST", NOT_RUN, "no CST")
    errs = []
    for _, d, f in cst:
        if len(f.data) >= 4 and ((f.data[3] & 0xF0) != 0xF0 or (f.data[2] & 0xF0) != 0xF0):
            errs.append("reserved bits not 1 (%s)" % codec.hexs(f.data))
            break
    bst = rec.first_event("bst", initiator="bms")
    if bst:
        after = [(t, d) for t, d, _ in cst if t >= bst[0]]
        if after and not all(d.get("reason", 0) & 0xC0 == 0x40 for _, d in after):
            errs.append("CST after BST without reason 'BMS stopped'")
    meas = codec.hexs(cst[0][2].data)
    return CheckResult("content.CST", FAIL if errs else PASS, "first " + meas,
                       "reserved=1; 'BMS stopped' after BST", "; ".join(errs))


# ------------------------------------------------------------------ reactions
def _ccs_after(rec: Recorder, t0: float):
    return [(f.t, codec.decode("CCS", f.data)) for f in rec.rx.get("CCS", []) if f.t >= t0]


def _first_cst(rec: Recorder, after: float) -> Optional[float]:
    return next((f.t for f in rec.rx.get("CST", []) if f.t >= after), None)


def _check_reactions(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    lim = p.checks
    out = []
    bst = rec.first_event("bst", initiator="bms")
    if bst:
        t_bst = bst[0]
        t_cst = _first_cst(rec, t_bst)
        if t_cst is None:
            out.append(CheckResult("reaction.cst_after_bst", FAIL, "no CST", _fmt_ms(lim.cst_after_bst_ms)))
        else:
            dt = t_cst - t_bst
            out.append(CheckResult("reaction.cst_after_bst", PASS if dt <= lim.cst_after_bst_ms else FAIL,
                                   _fmt_ms(dt), _fmt_ms(lim.cst_after_bst_ms)))
        before = [f for f in rec.rx.get("CCS", []) if f.t <= t_bst]
        i0 = codec.decode("CCS", before[-1].data).get("current_a", 0.0) if before else 0.0
        after = _ccs_after(rec, t_bst)
        if i0 <= lim.stop_current_a or not after:
            out.append(CheckResult("reaction.current_ramp_after_bst", NOT_RUN,
                                   "current %.1f A at BST, %d CCS after" % (i0, len(after))))
        else:
            allowed = (i0 - lim.stop_current_a) / lim.min_ramp_a_per_s * 1000.0 + 100.0
            low = next((t for t, d in after if d.get("current_a", 1e9) <= lim.stop_current_a), None)
            if low is None:
                out.append(CheckResult("reaction.current_ramp_after_bst", NOT_RUN,
                                       "CCS stopped before current <= %.0f A" % lim.stop_current_a, _fmt_ms(allowed)))
            else:
                dt = low - t_bst
                out.append(CheckResult("reaction.current_ramp_after_bst", PASS if dt <= allowed else FAIL,
                                       "%s from %.1f A" % (_fmt_ms(dt), i0), _fmt_ms(allowed)))
    else:
        out.append(CheckResult("reaction.cst_after_bst", NOT_RUN, "BMS never initiated a stop"))
    cst = rec.rx.get("CST", [])
    if cst:
        t_cst = cst[0].t
        after = _ccs_after(rec, t_cst)
        low = next((t for t, d in after if d.get("current_a", 1e9) <= lim.stop_current_a), None)
        if not after:
            out.append(CheckResult("reaction.current_after_cst", NOT_RUN, "no CCS after CST",
                                   _fmt_ms(lim.current_after_cst_ms)))
        elif low is None:
            out.append(CheckResult("reaction.current_after_cst", FAIL, "current stays > %.0f A" % lim.stop_current_a,
                                   _fmt_ms(lim.current_after_cst_ms)))
        else:
            dt = low - t_cst
            out.append(CheckResult("reaction.current_after_cst", PASS if dt <= lim.current_after_cst_ms else FAIL,
                                   _fmt_ms(dt), _fmt_ms(lim.current_after_cst_ms)))
    for t_f, info in rec.events_of("bsm_abnormal"):
        t_cst = _first_cst(rec, t_f)
        dt = None if t_cst is None else t_cst - t_f
        out.append(CheckResult("reaction.stop_on_bsm_%s" % info.get("what", "fault"),
                               PASS if dt is not None and dt <= lim.bsm_fault_stop_ms else FAIL,
                               "no CST" if dt is None else _fmt_ms(dt), _fmt_ms(lim.bsm_fault_stop_ms)))
    for t_p, info in rec.events_of("pause"):
        end = info.get("end")
        ccs = [(t, d) for t, d in _ccs_after(rec, t_p) if end is None or t < end]
        low = next((t for t, d in ccs if d.get("current_a", 1e9) <= lim.stop_current_a), None)
        stopped = _first_cst(rec, t_p)
        if stopped is not None and (end is None or stopped < end):
            out.append(CheckResult("reaction.pause", FAIL, "charger ended the session (CST) during a pause",
                                   "pause, not stop"))
        elif low is None:
            out.append(CheckResult("reaction.pause", FAIL if ccs else NOT_RUN,
                                   "current stays > %.0f A" % lim.stop_current_a, _fmt_ms(lim.pause_current_ms)))
        else:
            out.append(CheckResult("reaction.pause", PASS if low - t_p <= lim.pause_current_ms else FAIL,
                                   _fmt_ms(low - t_p), _fmt_ms(lim.pause_current_ms)))
    for t_r, info in rec.events_of("resume"):
        up = next((t for t, d in _ccs_after(rec, t_r) if d.get("current_a", 0) > lim.stop_current_a), None)
        if up is None:
            out.append(CheckResult("reaction.resume", FAIL if rec.rx.get("CCS") and rec.rx["CCS"][-1].t > t_r
                                   + lim.resume_current_ms else NOT_RUN, "no current after resume",
                                   _fmt_ms(lim.resume_current_ms)))
        else:
            out.append(CheckResult("reaction.resume", PASS if up - t_r <= lim.resume_current_ms else FAIL,
                                   _fmt_ms(up - t_r), _fmt_ms(lim.resume_current_ms)))
    return out


def _check_cem(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    """CEM after a dropped message within the charger timeout +- tolerance; no other CEM."""
    lim = p.checks
    out = []
    cems = [(f.t, codec.decode("CEM", f.data).get("bits", 0)) for f in rec.rx.get("CEM", [])]
    expected = set()
    for t_drop, info in rec.events_of("drop_start"):
        name = info["message"]
        if name not in CHARGER_TIMEOUTS:
            continue
        expected.add(name)
        bit = codec.CEM_BITS[name]
        first = next((t for t, b in cems if t >= t_drop and b & (bit * 3) == bit), None)
        sent = [f.t for f in rec.tx.get(name, []) if f.t < t_drop]
        if codec.MESSAGES[name].tp:
            done = [r.ended_ms for r in rec.transfers if r.pgn == codec.MESSAGES[name].pgn and r.result == "ok"
                    and r.ended_ms is not None and r.ended_ms < t_drop]
            sent = done
        if sent:
            ref = sent[-1]
        else:
            start_msg, val = _TIMER_START[name]
            cand = [f.t for f in rec.rx.get(start_msg, []) if val is None or f.data[:1] == bytes([val])]
            ref = cand[0] if cand else None
        timeout = CHARGER_TIMEOUTS[name]
        lo = timeout * (1 - lim.cem_tol_pct / 100) - lim.cem_tol_ms
        hi = timeout * (1 + lim.cem_tol_pct / 100) + lim.cem_tol_ms
        limit = "%.0f..%.0f ms" % (lo, hi)
        if first is None:
            end = info.get("end")
            short = end is not None and ref is not None and end - ref < lo
            out.append(CheckResult("reaction.cem_%s" % name, NOT_RUN if short else FAIL,
                                   "no CEM (%s)" % name + (" - drop shorter than the timeout" if short else ""), limit))
        elif ref is None:
            out.append(CheckResult("reaction.cem_%s" % name, NOT_RUN, "CEM at %s, no timer start" % _fmt_ms(first)))
        else:
            dt = first - ref
            out.append(CheckResult("reaction.cem_%s" % name, PASS if lo <= dt <= hi else FAIL, _fmt_ms(dt), limit))
    allowed = 0
    for n in expected:
        allowed |= codec.CEM_BITS[n]
    unexpected = [(t, b) for t, b in cems if b & ~allowed & 0x55555555 & _defined_cem_mask()]
    if rec.events_of("tp_fault"):
        # A transport fault may legitimately lead to a BRM/BCP/BCS timeout.
        unexpected = [(t, b) for t, b in unexpected
                      if b & ~(allowed | codec.CEM_BITS["BRM"] | codec.CEM_BITS["BCP"] | codec.CEM_BITS["BCS"])
                      & 0x55555555 & _defined_cem_mask()]
    if unexpected:
        t, b = unexpected[0]
        names = [n for n, m in codec.CEM_BITS.items() if b & (m * 3) == m]
        out.append(CheckResult("cem.unexpected", FAIL, "CEM %s at %s" % ("/".join(names) or "%08X" % b, _fmt_ms(t)),
                               "none"))
    else:
        out.append(CheckResult("cem.unexpected", PASS, "none" if not cems else "only expected bits", "none"))
    return out


def _defined_cem_mask() -> int:
    m = 0
    for v in codec.CEM_BITS.values():
        m |= v * 3
    return m


def _check_tp(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    out = []
    rts = [r for r in rec.transfers if not r.bam]
    with_cts = [r for r in rts if r.cts and (r.fault is None or r.fault.kind not in ("abort", "stall")
                                             or r.fault.packet > 0)]
    if with_cts:
        worst = max(r.cts[0][0] - r.started_ms for r in with_cts)
        out.append(CheckResult("tp.cts_response", PASS if worst <= p.checks.cts_response_ms else FAIL,
                               "max %s (n=%d)" % (_fmt_ms(worst), len(with_cts)), _fmt_ms(p.checks.cts_response_ms)))
    else:
        out.append(CheckResult("tp.cts_response", NOT_RUN, "no CTS"))
    clean = [r for r in rts if r.fault is None and r.eoma is not None]
    if clean:
        bad = [r for r in clean if r.eoma != (r.size, r.packets)]
        out.append(CheckResult("tp.eoma", FAIL if bad else PASS,
                               "%d/%d EndOfMsgAck with wrong size/count" % (len(bad), len(clean)), "echo RTS"))
    else:
        out.append(CheckResult("tp.eoma", NOT_RUN, "no EndOfMsgAck"))
    for r in rts:
        if r.fault is None:
            continue
        f = r.fault
        name = codec.BY_PGN[r.pgn].name if r.pgn in codec.BY_PGN else "%04X" % r.pgn
        if f.kind == "missing":
            rerequested = any(nxt <= f.packet < nxt + cnt for _, cnt, nxt in r.cts[1:])
            corrupt = not rerequested
        elif f.kind == "size":
            npk = (r.size + (1 if f.value is None else f.value) + 6) // 7
            corrupt = npk != r.packets
        elif f.kind in ("duplicate", "swap"):
            corrupt = False          # recoverable by the sequence numbers
        else:
            corrupt = True
        if r.result == "ok":
            what = "EndOfMsgAck after %d CTS" % len(r.cts)
        elif r.result == "peer_abort":
            what = "charger Abort (reason %s)" % r.abort_reason
        else:
            what = r.result
        verdict = FAIL if (corrupt and r.result == "ok") else PASS
        out.append(CheckResult("tp.%s_%s" % (name, f.kind), verdict, what,
                               "no acceptance of a corrupt transfer"))
    return out


def _check_session(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    out = []
    bsd = rec.tx.get("BSD", [])
    csd = rec.rx.get("CSD", [])
    if not bsd:
        out.append(CheckResult("session.statistics", NOT_RUN, "end stage not reached"))
    else:
        ok = any(f.t >= bsd[0].t for f in csd)
        out.append(CheckResult("session.statistics", PASS if ok else FAIL,
                               "CSD received" if ok else "no CSD after BSD", "CSD after BSD"))
    bems = rec.events_of("bem")
    induced = {info.get("induced") for _, info in bems}
    real = [(t, info) for t, info in bems if not info.get("induced")]
    if real:
        t, info = real[0]
        out.append(CheckResult("session.no_bem", FAIL, "BMS timeout %s at %s" % (info.get("what"), _fmt_ms(t)),
                               "charger never times out the BMS"))
    else:
        out.append(CheckResult("session.no_bem", PASS, "none" if not induced - {None} else "only induced"))
    return out


# Checks that PASS on the absence of something: without a single charger
# frame they prove nothing, so they are NOT RUN then (a run against a silent
# or absent charger must never PASS).
_ABSENCE = ("cem.unexpected", "session.no_bem")


def evaluate(rec: Recorder, p: BmsParams) -> List[CheckResult]:
    out = (_check_dlc(rec, p) + _check_periods(rec, p) + _check_content(rec, p)
           + _check_reactions(rec, p) + _check_cem(rec, p) + _check_tp(rec, p) + _check_session(rec, p))
    if not any(rec.rx.values()):
        for r in out:
            if r.name in _ABSENCE and r.verdict == PASS:
                r.verdict, r.measured = NOT_RUN, "no charger frame received"
    return out


def junit_xml(results: List[CheckResult], suite: str = "gbt27930.charger") -> str:
    """The verdicts as a JUnit XML report (CI test viewers): one testcase per
    check, FAIL as <failure>, NOT RUN as <skipped>."""
    from xml.sax.saxutils import quoteattr, escape
    n_fail = sum(1 for r in results if r.verdict == FAIL)
    n_skip = sum(1 for r in results if r.verdict == NOT_RUN)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<testsuites name=%s tests="%d" failures="%d" skipped="%d">' % (
                 quoteattr(suite), len(results), n_fail, n_skip),
             '  <testsuite name=%s tests="%d" failures="%d" errors="0" skipped="%d">' % (
                 quoteattr(suite), len(results), n_fail, n_skip)]
    for r in results:
        cls = "%s.%s" % (suite, r.name.split(".", 1)[0])
        text = " ".join(x for x in (r.measured, r.limit and "limit " + r.limit, r.detail) if x)
        head = '    <testcase classname=%s name=%s time="0"' % (quoteattr(cls), quoteattr(r.name))
        if r.verdict == FAIL:
            lines += [head + ">", "      <failure message=%s>%s</failure>" % (quoteattr(text), escape(text)),
                      "    </testcase>"]
        elif r.verdict == NOT_RUN:
            lines += [head + ">", "      <skipped message=%s/>" % quoteattr(text), "    </testcase>"]
        else:
            lines += [head + ">", "      <system-out>%s</system-out>" % escape(text), "    </testcase>"]
    lines += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(lines)


def overall(results: List[CheckResult]) -> str:
    if any(r.verdict == FAIL for r in results):
        return FAIL
    return PASS if any(r.verdict == PASS for r in results) else NOT_RUN
