"""Telemetry records read back: ``decode``/``scan`` turn the bytes
``diag.telemetry`` writes into dicts; ``SimRtc``, the SIL date-time.

Not loaded with the product (the firmware only writes records; this code
would take heap for nothing): tests, the console's tools and, on CPython,
``host_tools/telemetry.py`` (one definition) import it.  Not on a hot
path: everything here allocates.
"""
import struct

from diag.eventlog import crc16, name as event_name
from diag.telemetry import (MAGIC, VERSION, HDR_FMT, HDR_SIZE, SIZES, T_EVENT,
                            P_HANDSHAKE, P_PARAMS, P_DEMAND, P_STATUS, P_END, P_EVENT)

_CRC_SIZE = 2

STAGE_NAMES = ("idle", "handshake", "params", "charging", "end")

HDR_FIELDS = ("magic", "version", "type", "length", "seq", "t_ms", "year", "month",
              "day", "hour", "minute", "second", "ms", "charger_id", "charger_type",
              "region", "session", "stage", "vin")

# Payload field names (formats: ``diag.telemetry.P_*``).
F_HANDSHAKE = ("batt_type", "rated_ah", "rated_v", "bhm_max_v", "brm_version")
F_PARAMS = ("max_cell_v", "max_i", "energy", "max_v", "max_temp", "bcp_soc", "bcp_v")
F_DEMAND = ("req_v", "req_i", "req_mode", "out_v", "out_i", "set_v", "set_i", "pwr_v")
F_STATUS = ("meas_v", "meas_i", "soc", "cell_max_v", "cell_max_no", "cell_max_group",
            "cell_min_v", "cell_min_no", "temp_max", "temp_max_no", "temp_min",
            "temp_min_no", "remain_min", "out_v", "out_i", "bsm_flags")
F_END = ("end_soc", "end_cell_min_v", "end_cell_max_v", "end_temp_min", "end_temp_max",
         "bst_reason", "bst_fault", "bst_error")
F_EVENT = ("code", "a", "b")

# indexed by record type
TYPE_NAMES = ("?", "handshake", "params", "demand", "status", "end", "event")
LAYOUTS = (None, (P_HANDSHAKE, F_HANDSHAKE), (P_PARAMS, F_PARAMS),
           (P_DEMAND, F_DEMAND), (P_STATUS, F_STATUS), (P_END, F_END),
           (P_EVENT, F_EVENT))


class SimRtc:
    """SIL date-time: ``rtc0`` (the configured start, seconds since the
    firmware epoch 2020-01-01) + simulated seconds."""

    def __init__(self, clock, rtc0):
        self.clock = clock
        self.rtc0 = rtc0

    def __call__(self):
        return self.rtc0 + self.clock.ticks_ms() // 1000


def check(data, off=0):
    """Length of a valid record at ``data[off]`` (magic, version, known type,
    consistent length, CRC), else 0."""
    if off + HDR_SIZE + _CRC_SIZE > len(data) or data[off] != MAGIC:
        return 0
    if data[off + 1] != VERSION:
        return 0
    typ = data[off + 2]
    n = data[off + 3]
    if not 0 < typ < len(SIZES) or n != SIZES[typ] or off + n > len(data):
        return 0
    crc = data[off + n - 2] | (data[off + n - 1] << 8)
    if crc16(data, off, off + n - _CRC_SIZE) != crc:
        return 0
    return n


def decode(data, off=0):
    """One record -> dict (header fields + payload fields), or None if the
    bytes at ``off`` are not a valid record.  -1 = not available."""
    if not check(data, off):
        return None
    h = struct.unpack_from(HDR_FMT, data, off)
    d = {}
    for i in range(len(HDR_FIELDS)):
        d[HDR_FIELDS[i]] = h[i]
    v = h[18]
    n = 0
    while n < 17 and v[n]:
        n += 1
    s = ""
    for i in range(n):
        c = v[i]
        s += chr(c) if 32 <= c < 127 else "?"
    d["vin"] = s
    typ = h[2]
    d["type_name"] = TYPE_NAMES[typ]
    fmt, fields = LAYOUTS[typ]
    p = struct.unpack_from(fmt, data, off + HDR_SIZE)
    for i in range(len(fields)):
        d[fields[i]] = p[i]
    if typ == T_EVENT:
        d["event"] = event_name(d["code"])
    return d


def iter_records(data, skipped=None, typ=0):
    """Yield the valid records of a byte stream as dicts, resynchronising on
    the magic byte after garbage or a torn record.  ``skipped``: an optional
    one-element list that receives the count of skipped bytes; ``typ``: only
    records of this type (0 = all)."""
    off = 0
    bad = 0
    n = len(data)
    while off < n:
        k = check(data, off)
        if k:
            if not typ or data[off + 2] == typ:
                yield decode(data, off)
            off += k
        else:
            off += 1
            bad += 1
    if skipped is not None:
        skipped[0] = bad


def scan(data):
    """All valid records in a byte stream -> ``(list of dicts, skipped)``."""
    sk = [0]
    out = list(iter_records(data, sk))
    return out, sk[0]
