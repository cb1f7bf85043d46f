"""What travels over MQTT, and the vectorised decoder of Table-1 records.

Topics (``PREFIX`` = ``evc`` by default, ``<id>`` = the charger id in decimal):

    evc/<id>/telemetry   charger -> platform   QoS 1   a batch of records (below)
    evc/<id>/state       charger -> platform   QoS 1, retained   JSON {"online": bool, ...} (LWT: offline)
    evc/<id>/cmd/stop    platform -> charger   QoS 1   JSON stop command (PLAIN: not authenticated yet)
    evc/<id>/cmd/result  charger -> platform   QoS 1   JSON: what the charger did with the command

Telemetry batch (little-endian):

    off size
     0   2   magic b"TB"
     2   1   version (1)
     3   1   flags: bit 0 = catch-up (sent from the ring after an offline period)
     4   4   u32 charger_id
     8   8   u64 first_n: sequence number of the first record (per charger, from 0, never wraps)
    16   4   u32 boot: the TCU's count of charger restarts (record seq went backwards)
    20   2   u16 count
    22   ..  ``count`` Table-1 records, concatenated as the firmware wrote them
             (each with its own magic, length and CRC; docs/records.md)

Records n = first_n .. first_n + count - 1.  ``n`` is what makes delivery
exactly-once: the TCU numbers every record it takes from the charger, the
platform stores each n of a charger once (``store.Ranges``).  The record's
own 16-bit ``seq`` (wraps every 45 min of charging) stays in the record.
"""
from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa

from host_tools.telemetry import FW, FWR

PREFIX = "evc"
BATCH_MAGIC = b"TB"
BATCH_VERSION = 1
BATCH_HDR = struct.Struct("<2sBBIQIH")
BATCH_HDR_SIZE = BATCH_HDR.size          # 22
F_CATCHUP = 1
PLAIN_AUTH = "none (plain topic: the charger obeys it only when its sec.policy is not require)"


def topic(charger_id: int, kind: str, prefix: str = PREFIX) -> str:
    return "%s/%d/%s" % (prefix, charger_id, kind)


def charger_of(topic_name: str) -> int:
    return int(topic_name.split("/")[1])


def pack_batch(charger_id: int, first_n: int, boot: int, records: list[bytes],
               catchup: bool = False) -> bytes:
    return BATCH_HDR.pack(BATCH_MAGIC, BATCH_VERSION, F_CATCHUP if catchup else 0,
                          charger_id, first_n, boot, len(records)) + b"".join(records)


def unpack_batch(payload: bytes) -> tuple[int, int, int, int, int, memoryview]:
    """-> (charger_id, first_n, boot, count, flags, records bytes).  ValueError if malformed."""
    if len(payload) < BATCH_HDR_SIZE:
        raise ValueError("short batch")
    magic, ver, flags, cid, n0, boot, count = BATCH_HDR.unpack_from(payload, 0)
    if magic != BATCH_MAGIC or ver != BATCH_VERSION:
        raise ValueError("not a telemetry batch")
    return cid, n0, boot, count, flags, memoryview(payload)[BATCH_HDR_SIZE:]


# ---- vectorised record decoding ---------------------------------------------
_NP = {"B": "u1", "b": "i1", "H": "<u2", "h": "<i2", "I": "<u4", "i": "<i4"}


def _dtype(fmt: str, names) -> np.dtype:
    fmt = fmt.lstrip("<")
    out, k = [], 0
    for ch in fmt:
        if ch.isdigit():
            k = k * 10 + int(ch)
            continue
        if ch == "s":
            out.append((names[len(out)], "S%d" % k))
        else:
            out.append((names[len(out)], _NP[ch]))
        k = 0
    return np.dtype(out)


HDR_DT = _dtype(FW.HDR_FMT, FWR.HDR_FIELDS)
TYPE_DT = {}
for _t in range(1, len(FWR.LAYOUTS)):
    _fmt, _names = FWR.LAYOUTS[_t]
    _p = _dtype(_fmt, _names)
    TYPE_DT[_t] = np.dtype(HDR_DT.descr + _p.descr + [("crc", "<u2")])
    assert TYPE_DT[_t].itemsize == FW.SIZES[_t], (_t, TYPE_DT[_t].itemsize)

# every payload field of every type, in a stable order: the store's columns
PAYLOAD_FIELDS = []
for _t in range(1, len(FWR.LAYOUTS)):
    for _f in FWR.LAYOUTS[_t][1]:
        if _f not in PAYLOAD_FIELDS:
            PAYLOAD_FIELDS.append(_f)
PAYLOAD_FIELDS = tuple(PAYLOAD_FIELDS)

SCHEMA = pa.schema(
    [("charger_id", pa.int64()), ("boot", pa.int32()), ("n", pa.int64()), ("type", pa.int8()),
     ("seq", pa.int32()), ("t_ms", pa.int64()), ("ts", pa.timestamp("ms")),
     ("charger_type", pa.int16()), ("region", pa.int32()), ("session", pa.int32()),
     ("stage", pa.int8()), ("vin", pa.string())]
    + [(f, pa.int32()) for f in PAYLOAD_FIELDS])

# CRC-16/CCITT-FALSE table (binascii.crc_hqx), for the vectorised check
_T = np.zeros(256, np.uint16)
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else (_c << 1)
    _T[_i] = _c & 0xFFFF


def crc_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT-FALSE of every row of a 2-D uint8 array."""
    crc = np.full(rows.shape[0], 0xFFFF, np.uint16)
    for j in range(rows.shape[1]):
        crc = (crc << 8) ^ _T[((crc >> 8) ^ rows[:, j]) & 0xFF]
    return crc


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (vectorised)."""
    y = np.asarray(y, np.int64) - (np.asarray(m) <= 2)
    m = np.asarray(m, np.int64)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + np.asarray(d, np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def record_offsets(buf, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and types of concatenated records (a TCU batch: no garbage
    between records; a record whose header is wrong, or that the batch cuts
    short, ends the walk: ``Store.add_batch`` counts the rest invalid)."""
    mv = memoryview(buf)
    n = len(mv)
    offs, types = [], []
    off = 0
    sizes = FW.SIZES
    magic = FW.MAGIC
    while off + 4 <= n:
        t = mv[off + 2]
        if mv[off] != magic or not 0 < t < len(sizes) or mv[off + 3] != sizes[t] \
                or off + sizes[t] > n:
            break
        offs.append(off)
        types.append(t)
        off += sizes[t]
        if count is not None and len(offs) == count:
            break
    return np.asarray(offs, np.int64), np.asarray(types, np.int8)


def decode_columns(buf, ns: np.ndarray, charger_ids=None, boots=None,
                   offs=None, types=None, check_crc: bool = True) -> tuple[pa.Table, int]:
    """Records in ``buf`` (concatenated) -> an Arrow table in ``SCHEMA``.

    ``ns``: the sequence number of every record (same length as the walk).
    Records that fail the CRC (or a wrong charger id) are dropped; returns
    (table, number dropped).  -1 ("not available") becomes null.
    ``check_crc=False``: records made on the host (the fleet generator)."""
    if offs is None:
        offs, types = record_offsets(buf)
    ns = np.asarray(ns, np.int64)[:len(offs)]
    raw = np.frombuffer(buf, np.uint8)
    m = len(offs)
    cols = {f: np.full(m, -1, np.int64) for f in PAYLOAD_FIELDS}
    valid_payload = {f: np.zeros(m, bool) for f in PAYLOAD_FIELDS}
    hdr = {k: np.zeros(m, np.int64) for k in ("seq", "t_ms", "year", "month", "day", "hour",
                                               "minute", "second", "ms", "charger_id",
                                               "charger_type", "region", "session", "stage")}
    vin = np.empty(m, object)
    ok = np.zeros(m, bool)
    for t, dt in TYPE_DT.items():
        sel = np.nonzero(types == t)[0]
        if not len(sel):
            continue
        size = dt.itemsize
        if len(sel) == m and len(raw) == m * size and offs[0] == 0 and \
                (m == 1 or (offs[-1] == (m - 1) * size and np.all(np.diff(offs) == size))):
            rows = raw.reshape(m, size)            # one type, back to back: a view
        else:
            rows = raw[offs[sel, None] + np.arange(size)]
        rec = rows.view(dt).reshape(-1)
        good = crc_rows(rows[:, :size - 2]) == rec["crc"] if check_crc else True
        ok[sel] = good
        for k in hdr:
            hdr[k][sel] = rec[k]
        # VINs change per session: unique over the runs, not every row
        vv = rec["vin"]
        run = np.r_[True, vv[1:] != vv[:-1]] if len(vv) else np.zeros(0, bool)
        u, inv_run = np.unique(vv[run], return_inverse=True)
        inv = inv_run.reshape(-1)[np.cumsum(run) - 1]
        names = np.array([v.split(b"\0", 1)[0].decode("ascii", "replace") for v in u], object)
        vin[sel] = names[inv.reshape(-1)]
        for f in FWR.LAYOUTS[t][1]:
            v = rec[f].astype(np.int64)
            cols[f][sel] = v
            # -1 = not available (event a/b are plain values)
            valid_payload[f][sel] = True if t == FW.T_EVENT else (v != -1)
    if charger_ids is not None:
        ok &= hdr["charger_id"] == np.asarray(charger_ids)
    keep = np.nonzero(ok)[0]
    dropped = m - len(keep)
    year = hdr["year"][keep]
    has_date = year > 0
    # civil date-time -> ms since 1970 (no zone: the charger's civil time)
    y = np.where(has_date, year, 1970).astype("int64")
    mo = np.where(has_date, hdr["month"][keep], 1)
    d = np.where(has_date, hdr["day"][keep], 1)
    days = days_from_civil(y, mo, d)
    ts = (days * 86400000 + hdr["hour"][keep] * 3600000 + hdr["minute"][keep] * 60000
          + hdr["second"][keep] * 1000 + hdr["ms"][keep])
    arrays = {
        "charger_id": pa.array(hdr["charger_id"][keep], pa.int64()),
        "boot": pa.array(np.broadcast_to(np.asarray(boots if boots is not None else 0), (m,))[keep]
                         .astype(np.int32)),
        "n": pa.array(ns[keep]),
        "type": pa.array(types[keep]),
        "seq": pa.array(hdr["seq"][keep].astype(np.int32)),
        "t_ms": pa.array(hdr["t_ms"][keep]),
        "ts": pa.array(ts, pa.timestamp("ms"), mask=~has_date),
        "charger_type": pa.array(hdr["charger_type"][keep].astype(np.int16)),
        "region": pa.array(hdr["region"][keep].astype(np.int32)),
        "session": pa.array(hdr["session"][keep].astype(np.int32)),
        "stage": pa.array(hdr["stage"][keep].astype(np.int8)),
        "vin": pa.array(vin[keep], pa.string()).dictionary_encode().cast(pa.string()),
    }
    for f in PAYLOAD_FIELDS:
        arrays[f] = pa.array(cols[f][keep].astype(np.int32), pa.int32(),
                             mask=~valid_payload[f][keep])
    return pa.table(arrays, schema=SCHEMA), dropped
