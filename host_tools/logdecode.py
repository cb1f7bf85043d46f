"""Decode GB/T 27930 traffic in a CAN log: one readable line per message.

    python -m host_tools.logdecode FILE [FILE ...] [--json] [--rel]
                                   [--no-tp] [--tp-dt] [--only BCL,BCS]
    python -m host_tools.logdecode -i sil -c 127.0.0.1:29536     # live, any python-can interface

Reads anything python-can's ``can.LogReader`` reads (candump ``.log``,
Vector ``.asc``, ``.blf``, python-can ``.csv``, ``.trc``, ...).  Every
extended frame between the charger (0x56) and the BMS (0xF4) is decoded
with ``host_tools/gbt27930.dbc`` through cantools.  Multi-packet messages
(BRM, BCP, BCS, BMV, BMT, BSP) are reassembled from J1939-21 TP.CM (RTS/CTS
or BAM) + TP.DT frames and decoded like single frames.

How the DBC covers reassembled payloads: each multi-packet message is a DBC
message with its real J1939 parameter-group id (priority 7, PGN, DA, SA,
e.g. BRM = 0x1C0256F4) and its full payload length (BRM 49, BCP 13, BCS 9,
BMV 512, BMT 128, BSP 16), marked ``VFrameFormat = J1939PG`` - the way
Vector J1939 databases describe TP parameter groups, so CANoe/CANalyzer's
J1939 layer decodes them too.  A payload shorter than the definition (BRM
of 41 bytes, BMV of 20 cells, a 7-byte CCS) is decoded with the received
length only: signals beyond it are absent, never invented.

Library use: ``decode_file(path) -> list[dict]`` and
``decode_messages(iterable of can.Message) -> list[dict]``; each dict has
``t`` (s, log time), ``name``, ``pgn``, ``dir`` ("B->C" = BMS to charger,
"C->B"), ``src``, ``dst``, ``id``, ``len``, ``data`` (hex), ``tp`` (True if
reassembled), ``fields`` (signal -> physical value or value-table text;
plus derived text such as ``VIN``), ``warn`` (length outside the spec rule,
or None) and ``error`` (decode / transport problem, or None).
``--json`` prints these dicts as JSON lines.
"""
import argparse
import json
import sys
from pathlib import Path

import can
import cantools

DBC_PATH = Path(__file__).with_name("gbt27930.dbc")

CHARGER = 0x56
BMS = 0xF4
PGN_TPCM = 0xEC00
PGN_TPDT = 0xEB00
TP_PGNS = {0x0200: "BRM", 0x0600: "BCP", 0x1100: "BCS", 0x1500: "BMV",
           0x1600: "BMT", 0x1700: "BSP"}
TP_CTRL = {0x10: "RTS", 0x11: "CTS", 0x13: "EndOfMsgAck", 0x20: "BAM", 0xFF: "Abort"}

# Length rule per message (min, max) as the firmware applies it on receive
# (docs/protocol.md); used here only to warn, the frame is decoded anyway.
LENGTHS = {"CHM": (3, 8), "BHM": (2, 8), "CRM": (8, 8), "BRM": (8, 49), "BCP": (13, 13),
           "CTS": (7, 8), "CML": (8, 8), "BRO": (1, 8), "CRO": (1, 8), "BCL": (5, 8),
           "BCS": (9, 9), "CCS": (7, 8), "BSM": (7, 8), "BMV": (2, 512), "BMT": (1, 128),
           "BSP": (1, 16), "BST": (4, 8), "CST": (4, 8), "BSD": (7, 8), "CSD": (8, 8),
           "BEM": (4, 8), "CEM": (4, 8)}

STATUS_MSGS = ("BST", "CST", "BEM", "CEM")

_db_cache = {}


def load_db(path=None):
    """The GB/T 27930 DBC as a cantools database (cached per path).

    Loaded with ``strict=False``: cantools' strict signal-overlap check is
    quadratic in the signal count and takes seconds for BMV's 512 signals;
    tests/test_dbc.py loads the bundled file strictly once instead."""
    p = str(path or DBC_PATH)
    if p not in _db_cache:
        _db_cache[p] = cantools.database.load_file(p, strict=False)
    return _db_cache[p]


def _pgn(cid):
    pf = (cid >> 16) & 0xFF
    return (cid >> 8) & (0x3FF00 if pf < 240 else 0x3FFFF)


def _is_gbt(cid):
    sa, da = cid & 0xFF, (cid >> 8) & 0xFF
    return (sa, da) in ((CHARGER, BMS), (BMS, CHARGER)) or (
        sa in (CHARGER, BMS) and da == 0xFF and _pgn(cid) in (PGN_TPCM, PGN_TPDT))


def _ascii(bs):
    bs = bytes(bs).rstrip(b"\xff\x00 ")
    return "".join(chr(c) if 0x20 <= c < 0x7F else "?" for c in bs)


def _bcd(b):
    return (b >> 4) * 10 + (b & 0x0F)


def _ndigits(factor):
    s = repr(float(factor))
    return 0 if float(factor).is_integer() else len(s.split(".")[1])


class Reassembler:
    """Passive J1939-21 TP reassembly for a bus monitor.

    Keyed by (source, destination); BAM uses destination 0xFF.  A message is
    complete when every packet 1..N has been seen (retransmissions after a
    CTS simply overwrite).  A new RTS/BAM on a pair with an unfinished
    transfer, an Abort, or the end of the log reports the unfinished one."""

    def __init__(self):
        self.sessions = {}

    def control(self, t, sa, da, data):
        """Feed a TP.CM; returns a list of (t, text) problems to report."""
        out = []
        if not data:
            return out
        ctrl = data[0]
        if ctrl in (0x10, 0x20) and len(data) >= 8:
            key = (sa, da if ctrl == 0x10 else 0xFF)
            old = self.sessions.pop(key, None)
            if old:
                out.append((t, self._incomplete(old, "replaced by a new %s" % TP_CTRL[ctrl])))
            size = data[1] | (data[2] << 8)
            packets = data[3]
            if packets == 0 or size == 0 or (size + 6) // 7 != packets:
                out.append((t, "bad %s: size %d, packets %d" % (TP_CTRL[ctrl], size, packets)))
                return out
            self.sessions[key] = {"key": key,
                                  "pgn": data[5] | (data[6] << 8) | (data[7] << 16),
                                  "size": size, "packets": packets, "t0": t,
                                  "buf": bytearray(7 * packets), "got": set()}
        elif ctrl == 0xFF:
            # an Abort from either side ends the transfer of that pair
            for key in ((sa, da), (da, sa)):
                old = self.sessions.pop(key, None)
                if old:
                    out.append((t, self._incomplete(old, "aborted")))
        return out

    def data(self, t, sa, da, data):
        """Feed a TP.DT; returns (pgn, payload, None) when a message completes,
        (None, None, problem) for a stray/bad packet, else (None, None, None)."""
        s = self.sessions.get((sa, da)) or self.sessions.get((sa, 0xFF))
        if s is None:
            return None, None, "TP.DT without a transfer in progress"
        if len(data) < 2:
            return None, None, "TP.DT too short"
        seq = data[0]
        if not 1 <= seq <= s["packets"]:
            return None, None, "TP.DT sequence %d outside 1..%d" % (seq, s["packets"])
        chunk = bytes(data[1:8]).ljust(7, b"\xff")
        s["buf"][7 * (seq - 1):7 * seq] = chunk
        s["got"].add(seq)
        if len(s["got"]) == s["packets"]:
            del self.sessions[s["key"]]
            return s["pgn"], bytes(s["buf"][:s["size"]]), None
        return None, None, None

    def finish(self):
        out = [(s["t0"], self._incomplete(s, "log ended")) for s in self.sessions.values()]
        self.sessions.clear()
        return out

    @staticmethod
    def _incomplete(s, why):
        return "incomplete TP %s (PGN 0x%04X): %d of %d packets, %s" % (
            TP_PGNS.get(s["pgn"], "?"), s["pgn"], len(s["got"]), s["packets"], why)


class LogDecoder:
    """Turns can.Message objects into decoded record dicts (see module doc)."""

    def __init__(self, db=None, tp_cm=True, tp_dt=False):
        self.db = db or load_db()
        self.tp_cm = tp_cm
        self.tp_dt = tp_dt
        self.tp = Reassembler()
        self.by_key = {}
        for m in self.db.messages:
            cid = m.frame_id
            self.by_key[(_pgn(cid), cid & 0xFF)] = m
        self.skipped = 0

    def _record(self, t, cid, name, data, tp=False):
        sa = cid & 0xFF
        pf = (cid >> 16) & 0xFF
        da = (cid >> 8) & 0xFF if pf < 240 else 0xFF
        return {"t": t, "name": name, "pgn": _pgn(cid),
                "dir": "C->B" if sa == CHARGER else "B->C" if sa == BMS else "?",
                "src": sa, "dst": da, "id": cid, "len": len(data),
                "data": bytes(data).hex(" ").upper(), "tp": tp, "fields": {},
                "warn": None, "error": None}

    def _decode_into(self, rec, msg, data):
        try:
            raw = msg.decode(bytes(data), decode_choices=True, allow_truncated=True,
                             allow_excess=True)
        except Exception as e:  # cantools raises several types; report, go on
            rec["error"] = "decode: %s" % e
            return
        fields = {}
        for sig in msg.signals:
            if sig.name not in raw:
                continue
            v = raw[sig.name]
            if not isinstance(v, (int, float)):
                v = str(v)
            elif isinstance(v, float):
                v = round(v, _ndigits(sig.scale))
                if v.is_integer() and float(sig.scale).is_integer():
                    v = int(v)
            fields[sig.name] = v
        rec["fields"] = _derive(msg.name, fields, bytes(data))
        rule = LENGTHS.get(msg.name)
        n = len(data)
        if rule and not rule[0] <= n <= rule[1]:
            rec["warn"] = "length %d outside %d..%d" % (n, rule[0], rule[1])
        elif msg.name == "BMV" and n % 2:
            rec["warn"] = "odd BMV length %d" % n

    def feed(self, m):
        """Decode one can.Message; returns a list of 0..n records."""
        if m.is_error_frame or m.is_remote_frame or not m.is_extended_id:
            self.skipped += 1
            return []
        cid = m.arbitration_id
        if not _is_gbt(cid):
            self.skipped += 1
            return []
        t = float(m.timestamp)
        data = bytes(m.data[:m.dlc]) if m.dlc <= len(m.data) else bytes(m.data)
        pgn = _pgn(cid)
        sa = cid & 0xFF
        da = (cid >> 8) & 0xFF
        out = []
        if pgn == PGN_TPCM:
            for tt, problem in self.tp.control(t, sa, da, data):
                r = self._record(tt, cid, "TP", b"")
                r["error"] = problem
                out.append(r)
            if self.tp_cm:
                r = self._record(t, cid, "TP.CM", data)
                msg = self.by_key.get((pgn, sa))
                if msg is not None:
                    self._decode_into(r, msg, data)
                    p = r["fields"]
                    for k in list(p):
                        if k.endswith("_PGN") and isinstance(p[k], int):
                            p[k] = "0x%04X %s" % (p[k], TP_PGNS.get(p[k], ""))
                out.append(r)
            return out
        if pgn == PGN_TPDT:
            tpgn, payload, problem = self.tp.data(t, sa, da, data)
            if self.tp_dt or problem:
                r = self._record(t, cid, "TP.DT", data)
                r["error"] = problem
                if data:
                    r["fields"] = {"Sequence": data[0]}
                out.append(r)
            if tpgn is not None:
                # the parameter group's own id: prio 7 (all TP messages of
                # the catalogue), PGN, destination (PDU1), source
                pcid = (7 << 26) | (tpgn << 8) | sa
                if ((tpgn >> 8) & 0xFF) < 240:
                    pcid |= da << 8
                msg = self.by_key.get((tpgn, sa))
                r = self._record(t, pcid, msg.name if msg else "?", payload, tp=True)
                if msg is None:
                    r["error"] = "unknown PGN 0x%04X" % tpgn
                else:
                    self._decode_into(r, msg, payload)
                out.append(r)
            return out
        msg = self.by_key.get((pgn, sa))
        r = self._record(t, cid, msg.name if msg else "?", data)
        if msg is None:
            r["error"] = "unknown PGN 0x%04X" % pgn
        else:
            self._decode_into(r, msg, data)
        out.append(r)
        return out

    def finish(self):
        out = []
        for t, problem in self.tp.finish():
            r = self._record(t, 0, "TP", b"")
            r["dir"] = "?"
            r["error"] = problem
            out.append(r)
        return out


def _derive(name, f, data):
    """Human fields the DBC cannot express: text, dates, BMV/BMT summaries."""
    if name in ("CHM", "BRM") and "VersionMajor" in f:
        major = f.pop("VersionMajor")
        minor = f.pop("VersionMinor", None)
        f["Version"] = "V%d.%d" % (major, minor) if minor is not None else "V%d" % major
    if name == "CRM" and len(data) >= 8:
        f["RegionCode"] = _ascii(data[5:8])
    if name == "BRM":
        if len(data) >= 12:
            f["Manufacturer"] = _ascii(data[8:12])
        if len(data) > 24:
            for k in range(1, 18):
                f.pop("VIN_%02d" % k, None)
            f["VIN"] = _ascii(data[24:41])
        if "SwVersion" in f:
            f["SwVersion"] = data[41:49].hex(" ").upper()
    if name == "CTS" and len(data) >= 7:
        d = [_bcd(b) for b in data[:7]]
        f = {"DateTime": "%02d%02d-%02d-%02d %02d:%02d:%02d" % (d[6], d[5], d[4], d[3],
                                                               d[2], d[1], d[0])}
    if name == "BMV":
        v, g = [], []
        for k in range(len(data) // 2):
            w = data[2 * k] | (data[2 * k + 1] << 8)
            v.append(None if (w & 0xFFF) == 0xFFF else round((w & 0xFFF) * 0.01, 2))
            g.append(w >> 12)
        valid = [(x, i + 1) for i, x in enumerate(v) if x is not None]
        f = {"cells": len(v)}
        if valid:
            lo, hi = min(valid), max(valid, key=lambda p: (p[0], -p[1]))
            f.update(min_V=lo[0], min_no=lo[1], max_V=hi[0], max_no=hi[1])
        f.update(voltages_V=v, groups=g)
    if name == "BMT":
        temps = [None if b == 0xFF else b - 50 for b in data]
        valid = [x for x in temps if x is not None]
        f = {"probes": len(temps)}
        if valid:
            f.update(min_degC=min(valid), max_degC=max(valid))
        f["temps_degC"] = temps
    if name == "BSP":
        f = {"bytes": data.hex(" ").upper()}
    return f


def decode_messages(messages, db=None, tp_cm=True, tp_dt=False):
    """Decode an iterable of can.Message into record dicts (see module doc)."""
    dec = LogDecoder(db, tp_cm=tp_cm, tp_dt=tp_dt)
    out = []
    for m in messages:
        out.extend(dec.feed(m))
    out.extend(dec.finish())
    return out


def decode_file(path, db=None, tp_cm=True, tp_dt=False):
    """Decode a CAN log file (any format can.LogReader reads)."""
    reader = can.LogReader(str(path))
    try:
        return decode_messages(reader, db, tp_cm=tp_cm, tp_dt=tp_dt)
    finally:
        stop = getattr(reader, "stop", None)
        if stop:
            stop()


def _units(db):
    u = {}
    for m in db.messages:
        for s in m.signals:
            if s.unit:
                u[(m.name, s.name)] = s.unit
    return u


def format_record(rec, t0=0.0, units=None):
    """One line: time, direction, name, TP marker, fields, warnings/errors."""
    units = units or {}
    parts = ["%12.6f" % (rec["t"] - t0), "%-4s" % rec["dir"], "%-5s" % rec["name"]]
    if rec["tp"]:
        parts.append("[TP %dB]" % rec["len"])
    name = rec["name"]
    fields = rec["fields"]
    if name in STATUS_MSGS:
        # 2-bit status messages: only what is not "normal" is news
        fields = {k: v for k, v in fields.items() if v != "normal"}
        if not fields:
            parts.append("(all normal)")
    for k, v in fields.items():
        if k in ("voltages_V", "groups", "temps_degC"):
            continue
        if isinstance(v, str) and (" " in v or not v):
            v = '"%s"' % v
        unit = units.get((name, k))
        parts.append("%s=%s%s" % (k, v, (" " + unit) if unit and unit != "BCD" else ""))
    if name in ("TP.CM", "TP.DT", "?") and rec["data"]:
        parts.append("[%s]" % rec["data"])
    if rec["warn"]:
        parts.append("WARN: " + rec["warn"])
    if rec["error"]:
        parts.append("ERROR: " + rec["error"])
    return " ".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m host_tools.logdecode",
        description="Decode GB/T 27930 frames in CAN logs, or live from any python-can interface.",
        epilog="live: python -m host_tools.logdecode -i sil -c 127.0.0.1:29536 "
               "(or -i socketcan -c can0, -i pcan -c PCAN_USBBUS1 ...); Ctrl-C stops.")
    ap.add_argument("files", nargs="*", metavar="FILE",
                    help="candump .log, .asc, .blf, .csv (anything can.LogReader reads)")
    ap.add_argument("-i", "--interface", help="decode live from this python-can interface instead of files")
    ap.add_argument("-c", "--channel", help="python-can channel of --interface")
    ap.add_argument("--bitrate", type=int, default=250000, help="bit rate for --interface (not for sil)")
    ap.add_argument("--duration", type=float, help="live: stop after this many seconds")
    ap.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    ap.add_argument("--rel", action="store_true", help="times relative to the first frame")
    ap.add_argument("--no-tp", action="store_true", help="hide TP.CM control frames")
    ap.add_argument("--tp-dt", action="store_true", help="also show TP.DT data frames")
    ap.add_argument("--only", default="", help="comma list of names to show, e.g. BCL,BCS")
    ap.add_argument("--dbc", default=None, help="DBC file (default: the bundled one)")
    a = ap.parse_args(argv)
    if bool(a.files) == bool(a.interface):
        ap.error("give log FILEs or a live --interface (with --channel), not both or neither")
    db = load_db(a.dbc)
    units = _units(db)
    only = set(x.strip().upper() for x in a.only.split(",") if x.strip())
    known = {m.name.upper() for m in db.messages} | {"TP", "TP.CM", "TP.DT", "?"}
    bad = sorted(only - known)
    if bad:
        ap.error("--only: unknown message name(s) %s (known: %s)" % (
            ", ".join(bad), ", ".join(sorted(n for n in known if n != "?"))))

    def show(recs, t0):
        for r in recs:
            if only and r["name"].upper() not in only:
                continue
            if a.json:
                print(json.dumps(r))
            else:
                print(format_record(r, t0, units))

    if a.interface:
        return _live(a, db, show)
    rc = 0
    for path in a.files:
        try:
            recs = decode_file(path, db, tp_cm=not a.no_tp, tp_dt=a.tp_dt)
        except (OSError, ValueError, NotImplementedError) as e:
            print("%s: cannot read: %s" % (path, e), file=sys.stderr)
            rc = 1
            continue
        show(recs, recs[0]["t"] if (recs and a.rel) else 0.0)
    return rc


def _live(a, db, show):
    """Decode frames as they arrive on a python-can bus (a bus monitor)."""
    import time
    kw = {} if a.interface in ("sil", "virtual") else {"bitrate": a.bitrate}
    try:
        bus = can.Bus(interface=a.interface, channel=a.channel, **kw)
    except Exception as e:  # python-can raises many types for a missing adapter
        print("cannot open bus %s/%s: %s" % (a.interface, a.channel, e), file=sys.stderr)
        return 2
    dec = LogDecoder(db, tp_cm=not a.no_tp, tp_dt=a.tp_dt)
    t0 = None
    end = time.monotonic() + a.duration if a.duration else None
    try:
        while end is None or time.monotonic() < end:
            m = bus.recv(0.2)
            if m is None:
                continue
            recs = dec.feed(m)
            if recs and t0 is None:
                t0 = recs[0]["t"] if a.rel else 0.0
            show(recs, t0 or 0.0)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        bus.shutdown()
    show(dec.finish(), t0 or 0.0)
    return 0


if __name__ == "__main__":
    from host_tools import clitools
    clitools.run(main)
