"""Telemetry (P-6) on the host: decode, collect into SQLite, plot, summarise.

    python -m host_tools.telemetry collect tel.bin [more.bin ...] --db out.sqlite
    python -m host_tools.telemetry summary --db out.sqlite
    python -m host_tools.telemetry plot --db out.sqlite --session 1 -o plot.png
    python -m host_tools.telemetry decode tel.bin            # JSON lines

A FILE is a raw record stream: what ``FileSink`` writes, or a capture of the
board's telemetry UART.  Garbage between records (a torn record, line noise)
is skipped by resynchronising on the magic byte and the CRC.  From the SIL,
records arrive one by one as bytes (``Simulation.telemetry`` holds
``(t_ms, bytes)`` pairs): ``Collector(db).add(record_bytes)`` or
``collect(sim.telemetry, db)``.

Layouts, type names and event names are read from the firmware modules
(``firmware/diag/telemetry.py``, ``eventlog.py``): one definition.

Database (one table per record type, one row per record):

    sessions   id, charger_id, charger_type, charger_type_name, region,
               province, city, district, vin, fw_session, start, end,
               first_t_ms, last_t_ms, records
    handshake, params, demand, status, ending, events
               id, session_id, seq, t_ms, datetime, stage, <payload fields>

"not available" (-1 on the wire) is stored as NULL.  A host session is one
firmware session number of one charger; a restart of the charger's record
sequence (reboot) starts a new host session even if the number repeats.
"""
from __future__ import annotations

import argparse
import binascii
import json
import sqlite3
import struct
import sys
from pathlib import Path
from typing import Iterable, Iterator

from host_tools.eventlog import load_firmware

FW = load_firmware("telemetry")
FWR = load_firmware("telrec")      # record names and field names, decoder
EV = load_firmware("eventlog")

TABLES = {FW.T_HANDSHAKE: "handshake", FW.T_PARAMS: "params", FW.T_DEMAND: "demand",
          FW.T_STATUS: "status", FW.T_END: "ending", FW.T_EVENT: "events"}

# Header fields that are kept per record (the rest goes to ``sessions``).
REC_COLS = ("seq", "t_ms", "datetime", "stage")
NA = -1

CHARGER_TYPES = {
    0: "unknown",
    1: "DC off-board charger, integrated",
    2: "DC off-board charger, split (cabinet + dispensers)",
    3: "DC charging module",
    4: "eVTOL off-board DC charger",
}

# GB/T 2260: the first two digits name the province-level division.
PROVINCES = {
    11: "Beijing", 12: "Tianjin", 13: "Hebei", 14: "Shanxi", 15: "Inner Mongolia",
    21: "Liaoning", 22: "Jilin", 23: "Heilongjiang", 31: "Shanghai", 32: "Jiangsu",
    33: "Zhejiang", 34: "Anhui", 35: "Fujian", 36: "Jiangxi", 37: "Shandong",
    41: "Henan", 42: "Hubei", 43: "Hunan", 44: "Guangdong", 45: "Guangxi",
    46: "Hainan", 50: "Chongqing", 51: "Sichuan", 52: "Guizhou", 53: "Yunnan",
    54: "Tibet", 61: "Shaanxi", 62: "Gansu", 63: "Qinghai", 64: "Ningxia",
    65: "Xinjiang", 71: "Taiwan", 81: "Hong Kong", 82: "Macao",
}
# City (first four digits) and district names we ship; extend with --regions.
CITIES = {4403: "Shenzhen", 4401: "Guangzhou", 1101: "Beijing", 3101: "Shanghai"}
DISTRICTS = {
    440303: "Luohu", 440304: "Futian", 440305: "Nanshan", 440306: "Bao'an",
    440307: "Longgang", 440308: "Yantian", 440309: "Longhua", 440310: "Pingshan",
    440311: "Guangming", 440106: "Tianhe", 110101: "Dongcheng", 110105: "Chaoyang",
    310115: "Pudong",
}

# Seed 000 Table 1 item -> (table, column): what ``summary`` checks.
TABLE1 = (
    ("battery type", "handshake", "batt_type"),
    ("rated capacity", "handshake", "rated_ah"),
    ("rated total voltage", "handshake", "rated_v"),
    ("max cell voltage", "params", "max_cell_v"),
    ("max charging current", "params", "max_i"),
    ("nominal energy", "params", "energy"),
    ("max total voltage", "params", "max_v"),
    ("max temperature", "params", "max_temp"),
    ("SOC (parameters)", "params", "bcp_soc"),
    ("voltage demand", "demand", "req_v"),
    ("current demand", "demand", "req_i"),
    ("charging mode", "demand", "req_mode"),
    ("measured voltage", "status", "meas_v"),
    ("measured current", "status", "meas_i"),
    ("SOC", "status", "soc"),
    ("max cell voltage (charging)", "status", "cell_max_v"),
    ("max cell voltage number", "status", "cell_max_no"),
    ("min cell voltage (charging)", "status", "cell_min_v"),
    ("min cell voltage number", "status", "cell_min_no"),
    ("max temperature (charging)", "status", "temp_max"),
    ("max temperature probe", "status", "temp_max_no"),
    ("min temperature (charging)", "status", "temp_min"),
    ("min temperature probe", "status", "temp_min_no"),
    ("final SOC", "ending", "end_soc"),
    ("final max cell voltage", "ending", "end_cell_max_v"),
    ("final min cell voltage", "ending", "end_cell_min_v"),
    ("final max temperature", "ending", "end_temp_max"),
    ("final min temperature", "ending", "end_temp_min"),
)


def region_names(code: int, extra: dict | None = None) -> tuple:
    """(province, city, district) for a GB/T 2260 code; None where unknown."""
    if extra and str(code) in extra:
        p, c, d = (list(extra[str(code)]) + [None] * 3)[:3]
        return p, c, d
    return (PROVINCES.get(code // 10000), CITIES.get(code // 100),
            DISTRICTS.get(code))


# ---- decoding -------------------------------------------------------------
def _check(data, off: int) -> int:
    """Length of a valid record at data[off], else 0 (C-speed CRC)."""
    if off + FW.HDR_SIZE + 2 > len(data) or data[off] != FW.MAGIC or data[off + 1] != FW.VERSION:
        return 0
    typ, n = data[off + 2], data[off + 3]
    if not 0 < typ < len(FW.SIZES) or n != FW.SIZES[typ] or off + n > len(data):
        return 0
    crc = data[off + n - 2] | (data[off + n - 1] << 8)
    return n if binascii.crc_hqx(bytes(data[off:off + n - 2]), 0xFFFF) == crc else 0


def split_stream(data: bytes, stats: dict | None = None) -> Iterator[bytes]:
    """Raw record bytes out of a stream; garbage skipped (counted in
    ``stats['skipped']``)."""
    off, skipped, n = 0, 0, len(data)
    while off < n:
        k = _check(data, off)
        if k:
            yield bytes(data[off:off + k])
            off += k
        else:
            # jump to the next magic byte
            nxt = data.find(bytes((FW.MAGIC,)), off + 1)
            nxt = n if nxt < 0 else nxt
            skipped += nxt - off
            off = nxt
    if stats is not None:
        stats["skipped"] = stats.get("skipped", 0) + skipped


def decode_record(rec: bytes) -> dict:
    """One record -> dict of header and payload fields.

    Adds ``type_name``, ``datetime`` (ISO text, None if the board had no
    date), ``charger_type_name``, ``province``/``city``/``district`` and for
    events ``event``.  Payload values of -1 (not available) become None.
    Raises ValueError on a record that fails magic/length/CRC."""
    rec = bytes(rec)
    if not _check(rec, 0) or FW.SIZES[rec[2]] != len(rec):
        raise ValueError("not a valid telemetry record (%d bytes)" % len(rec))
    h = struct.unpack_from(FW.HDR_FMT, rec, 0)
    d = dict(zip(FWR.HDR_FIELDS, h))
    d["vin"] = h[-1].split(b"\0", 1)[0].decode("ascii", "replace")
    typ = d["type"]
    d["type_name"] = FWR.TYPE_NAMES[typ]
    fmt, fields = FWR.LAYOUTS[typ]
    vals = struct.unpack_from(fmt, rec, FW.HDR_SIZE)
    for k, v in zip(fields, vals):
        d[k] = None if (v == NA and typ != FW.T_EVENT) else v
    if typ == FW.T_EVENT:
        d["event"] = EV.name(d["code"])
    d["datetime"] = ("%04d-%02d-%02d %02d:%02d:%02d.%03d" % (
        d["year"], d["month"], d["day"], d["hour"], d["minute"], d["second"], d["ms"])
        if d["year"] else None)
    d["charger_type_name"] = CHARGER_TYPES.get(d["charger_type"], "code %d" % d["charger_type"])
    d["province"], d["city"], d["district"] = region_names(d["region"])
    return d


def _records_of(item) -> Iterator[bytes]:
    """An item of ``collect``'s iterable: record bytes, a stream chunk, or a
    SIL ``(t_ms, bytes)`` pair."""
    if isinstance(item, tuple):
        item = item[-1]
    yield from split_stream(bytes(item))


# ---- collecting -------------------------------------------------------------
class Collector:
    """Accumulates records into an SQLite database (see module doc)."""

    def __init__(self, db_path=":memory:", regions: dict | None = None):
        self.db = sqlite3.connect(str(db_path))
        self.regions = regions or {}
        self.stats = {"records": 0, "invalid": 0, "skipped": 0, "duplicates": 0}
        self._cur = {}          # charger_id -> (host session id, fw_session, last seq)
        self._schema()

    def _schema(self):
        c = self.db
        c.execute("""CREATE TABLE IF NOT EXISTS sessions (
            id INTEGER PRIMARY KEY, charger_id INTEGER, charger_type INTEGER,
            charger_type_name TEXT, region INTEGER, province TEXT, city TEXT,
            district TEXT, vin TEXT, fw_session INTEGER, start TEXT, "end" TEXT,
            first_t_ms INTEGER, last_t_ms INTEGER, records INTEGER)""")
        for typ, table in TABLES.items():
            cols = ", ".join('"%s" INTEGER' % f for f in FWR.LAYOUTS[typ][1])
            extra = ", event TEXT" if typ == FW.T_EVENT else ""
            c.execute("""CREATE TABLE IF NOT EXISTS %s (
                id INTEGER PRIMARY KEY, session_id INTEGER, seq INTEGER, t_ms INTEGER,
                datetime TEXT, stage INTEGER, %s%s)""" % (table, cols, extra))
            c.execute("CREATE INDEX IF NOT EXISTS %s_s ON %s(session_id, t_ms)" % (table, table))
        # every record stored once: collecting the same file (or an overlapping
        # pull of the board's telemetry files) again adds nothing
        # (a replay inside one run, e.g. the same records after a reboot in
        # one stream, is kept: only records an earlier run stored are skipped)
        c.execute("CREATE TABLE IF NOT EXISTS seen (digest BLOB, run INTEGER)")
        c.execute("CREATE INDEX IF NOT EXISTS seen_d ON seen(digest)")
        self.run = (c.execute("SELECT MAX(run) FROM seen").fetchone()[0] or 0) + 1

    def _session(self, d: dict) -> int | None:
        cid = d["charger_id"]
        cur = self._cur.get(cid)
        if d["session"] == 0:
            return None                     # idle before the first session
        if cur is None:
            # a later collect run: go on with this charger's last session
            row = self.db.execute("SELECT id, fw_session FROM sessions WHERE charger_id = ? "
                                  "ORDER BY id DESC LIMIT 1", (cid,)).fetchone()
            if row is not None and row[1] == d["session"]:
                cur = (row[0], row[1], d["seq"])
        restarted = cur is not None and ((d["seq"] - cur[2]) & 0xFFFF) > 0x8000
        if cur is None or cur[1] != d["session"] or restarted:
            p, c, dd = region_names(d["region"], self.regions)
            sid = self.db.execute(
                """INSERT INTO sessions (charger_id, charger_type, charger_type_name, region,
                   province, city, district, vin, fw_session, start, "end", first_t_ms,
                   last_t_ms, records) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,0)""",
                (cid, d["charger_type"], d["charger_type_name"], d["region"], p, c, dd,
                 d["vin"] or None, d["session"], d["datetime"], d["datetime"], d["t_ms"],
                 d["t_ms"])).lastrowid
            cur = (sid, d["session"], d["seq"])
        self._cur[cid] = (cur[0], cur[1], d["seq"])
        self.db.execute(
            """UPDATE sessions SET "end" = ?, last_t_ms = ?, records = records + 1,
               vin = COALESCE(NULLIF(?, ''), vin) WHERE id = ?""",
            (d["datetime"], d["t_ms"], d["vin"], cur[0]))
        return cur[0]

    def add(self, record: bytes) -> dict | None:
        """Store one record (bytes of exactly one record).  Returns the
        decoded dict, or None (counted in ``stats['invalid']``)."""
        try:
            d = decode_record(record)
        except ValueError:
            self.stats["invalid"] += 1
            return None
        import hashlib
        digest = hashlib.sha1(bytes(record)).digest()
        if self.db.execute("SELECT 1 FROM seen WHERE digest = ? AND run < ?",
                           (digest, self.run)).fetchone():
            self.stats["duplicates"] += 1
            return None
        self.db.execute("INSERT INTO seen (digest, run) VALUES (?, ?)", (digest, self.run))
        sid = self._session(d)
        typ = d["type"]
        fields = FWR.LAYOUTS[typ][1]
        cols = ("session_id",) + REC_COLS + fields + (("event",) if typ == FW.T_EVENT else ())
        vals = [sid] + [d[c] for c in REC_COLS] + [d[f] for f in fields]
        if typ == FW.T_EVENT:
            vals.append(d["event"])
        self.db.execute('INSERT INTO %s (%s) VALUES (%s)' % (
            TABLES[typ], ", ".join('"%s"' % c for c in cols), ",".join("?" * len(cols))), vals)
        self.stats["records"] += 1
        return d

    def add_stream(self, data: bytes) -> int:
        n = 0
        for rec in split_stream(data, self.stats):
            if self.add(rec):
                n += 1
        return n

    def add_file(self, path) -> int:
        return self.add_stream(Path(path).read_bytes())

    def commit(self):
        self.db.commit()

    def close(self):
        self.db.commit()
        self.db.close()


def collect(records: Iterable, db_path=":memory:", regions: dict | None = None) -> sqlite3.Connection:
    """Collect records (bytes / stream chunks / SIL ``(t_ms, bytes)``) into
    SQLite; returns the open connection."""
    col = Collector(db_path, regions)
    for item in records:
        for rec in _records_of(item):
            col.add(rec)
    col.commit()
    return col.db


# ---- reporting --------------------------------------------------------------
def intervals(db: sqlite3.Connection, table: str, session: int) -> list[int]:
    """Differences of consecutive t_ms of one record type in one session."""
    ts = [r[0] for r in db.execute(
        "SELECT t_ms FROM %s WHERE session_id = ? ORDER BY seq, id" % table, (session,))]
    return [b - a for a, b in zip(ts, ts[1:])]


def summary(db: sqlite3.Connection) -> list[dict]:
    out = []
    cur = db.execute("SELECT * FROM sessions ORDER BY id")
    names = [c[0] for c in cur.description]
    for row in cur.fetchall():
        s = dict(zip(names, row))
        s["counts"] = {}
        s["median_interval_ms"] = {}
        for table in TABLES.values():
            s["counts"][table] = db.execute(
                "SELECT COUNT(*) FROM %s WHERE session_id = ?" % table, (s["id"],)).fetchone()[0]
            iv = sorted(intervals(db, table, s["id"]))
            if iv and table != "events":
                s["median_interval_ms"][table] = iv[len(iv) // 2]
        s["missing_items"] = [
            name for name, table, col in TABLE1
            if db.execute('SELECT COUNT("%s") FROM %s WHERE session_id = ?' % (col, table),
                          (s["id"],)).fetchone()[0] == 0]
        r = db.execute("SELECT end_soc FROM ending WHERE session_id = ? AND end_soc IS NOT NULL "
                       "ORDER BY seq DESC LIMIT 1", (s["id"],)).fetchone()
        s["final_soc"] = r[0] if r else None
        s["alarms"] = [e[0] for e in db.execute(
            "SELECT DISTINCT event FROM events WHERE session_id = ? AND event NOT IN "
            "('stage', 'session')", (s["id"],))]
        out.append(s)
    return out


def print_summary(db: sqlite3.Connection, out=sys.stdout) -> None:
    rows = summary(db)
    if not rows:
        print("no sessions", file=out)
    for s in rows:
        place = ", ".join(x for x in (s["province"], s["city"], s["district"]) if x) or "?"
        print("session %d: charger %d (%s), region %06d %s, VIN %s" % (
            s["id"], s["charger_id"], s["charger_type_name"], s["region"], place,
            s["vin"] or "-"), file=out)
        print("  %s .. %s  (%.1f s)  final SOC %s %%" % (
            s["start"], s["end"], (s["last_t_ms"] - s["first_t_ms"]) / 1000.0,
            s["final_soc"] if s["final_soc"] is not None else "?"), file=out)
        for t, n in s["counts"].items():
            iv = s["median_interval_ms"].get(t)
            print("  %-9s %6d records%s" % (t, n, "  every %d ms" % iv if iv else ""), file=out)
        if s["missing_items"]:
            print("  Table-1 items never available: %s" % ", ".join(s["missing_items"]), file=out)
        if s["alarms"]:
            print("  events: %s" % ", ".join(s["alarms"]), file=out)


def plot(db: sqlite3.Connection, session: int, path) -> Path:
    """Session plot: V and I demand vs measured, SOC, cell V, temperatures."""
    row = db.execute("SELECT first_t_ms, vin, charger_id FROM sessions WHERE id = ?",
                     (session,)).fetchone()
    if row is None:
        raise ValueError("no session %d" % session)
    t0, vin, cid = row
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(table, cols, scale):
        rows = db.execute("SELECT t_ms, %s FROM %s WHERE session_id = ? ORDER BY seq, id" % (
            ", ".join('"%s"' % c for c in cols), table), (session,)).fetchall()
        t = [(r[0] - t0) / 1000.0 for r in rows]
        return t, [[None if r[i + 1] is None else r[i + 1] * scale for r in rows]
                   for i in range(len(cols))]

    fig, ax = plt.subplots(5, 1, sharex=True, figsize=(10, 12))
    td, (req_v, out_v, req_i, out_i) = series("demand", ("req_v", "out_v", "req_i", "out_i"), 0.1)
    ts, (meas_v, meas_i) = series("status", ("meas_v", "meas_i"), 0.1)
    ax[0].plot(td, req_v, label="demand (BCL)")
    ax[0].plot(td, out_v, label="charger output")
    ax[0].plot(ts, meas_v, ".", ms=3, label="BMS measured (BCS)")
    ax[0].set_ylabel("voltage [V]")
    ax[1].plot(td, req_i, label="demand (BCL)")
    ax[1].plot(td, out_i, label="charger output")
    ax[1].plot(ts, meas_i, ".", ms=3, label="BMS measured (BCS)")
    ax[1].set_ylabel("current [A]")
    ts, (soc,) = series("status", ("soc",), 1)
    ax[2].plot(ts, soc, label="SOC (BCS)")
    ax[2].set_ylabel("SOC [%]")
    ts, (cmax, cmin) = series("status", ("cell_max_v", "cell_min_v"), 0.01)
    ax[3].plot(ts, cmax, label="max cell")
    ax[3].plot(ts, cmin, label="min cell")
    ax[3].set_ylabel("cell [V]")
    ts, (tmax, tmin) = series("status", ("temp_max", "temp_min"), 1)
    ax[4].plot(ts, tmax, label="max temp")
    ax[4].plot(ts, tmin, label="min temp")
    ax[4].set_ylabel("temperature [°C]")
    ax[4].set_xlabel("time since session start [s]")
    # stage bands (from the stage-change events) and alarm markers
    colours = {1: "#ddeeff", 2: "#eeffdd", 4: "#ffeedd"}
    st = db.execute("SELECT t_ms, a FROM events WHERE session_id = ? AND event = 'stage' "
                    "ORDER BY seq", (session,)).fetchall()
    last = db.execute("SELECT last_t_ms FROM sessions WHERE id = ?", (session,)).fetchone()[0]
    for (t, stage), nxt in zip(st, [x[0] for x in st[1:]] + [last]):
        if stage in colours:
            for a in ax:
                a.axvspan((t - t0) / 1000.0, (nxt - t0) / 1000.0, color=colours[stage], lw=0)
    for t, ev in db.execute("SELECT t_ms, event FROM events WHERE session_id = ? AND event "
                            "NOT IN ('stage', 'session')", (session,)):
        for a in ax:
            a.axvline((t - t0) / 1000.0, color="r", lw=0.8)
        ax[0].annotate(ev, ((t - t0) / 1000.0, 1), xycoords=("data", "axes fraction"),
                       color="r", fontsize=7, rotation=90, va="top")
    for a in ax:
        a.grid(True, alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(loc="upper left", fontsize=7)
    fig.suptitle("session %d, charger %d, VIN %s" % (session, cid, vin or "-"))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.96, bottom=0.05, hspace=0.12)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.telemetry",
                                 description="Telemetry records (P-6): collect, summary, plot.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="record stream files -> SQLite")
    c.add_argument("files", nargs="+")
    c.add_argument("--db", required=True)
    c.add_argument("--regions", help="JSON {code: [province, city, district]}")
    s = sub.add_parser("summary", help="sessions, record counts, intervals, missing items")
    s.add_argument("--db", required=True)
    p = sub.add_parser("plot", help="PNG of one session")
    p.add_argument("--db", required=True)
    p.add_argument("--session", type=int, required=True)
    p.add_argument("-o", "--output", required=True)
    d = sub.add_parser("decode", help="print records as JSON lines")
    d.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "collect":
        regions = json.loads(Path(a.regions).read_text()) if a.regions else None
        col = Collector(a.db, regions)
        for f in a.files:
            d0 = col.stats["duplicates"]
            n = col.add_file(f)
            dup = col.stats["duplicates"] - d0
            print("%s: %d records%s" % (f, n, (" (%d already in %s, not added again)" % (dup, a.db))
                                        if dup else ""))
        if col.stats["skipped"] or col.stats["invalid"]:
            print("skipped %d bytes of garbage / torn records" % col.stats["skipped"],
                  file=sys.stderr)
        col.close()
        return 0
    if a.cmd == "decode":
        for f in a.files:
            for rec in split_stream(Path(f).read_bytes()):
                print(json.dumps(decode_record(rec)))
        return 0
    if not Path(a.db).exists():
        print("no database %s" % a.db, file=sys.stderr)
        return 2
    db = sqlite3.connect(a.db)
    if a.cmd == "summary":
        print_summary(db)
        return 0
    try:
        out = plot(db, a.session, a.output)
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    from host_tools import clitools
    clitools.run(main)
