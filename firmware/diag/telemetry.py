"""Telemetry records for the monitoring platform (P-6, seed 000 Table 1).

``Telemetry.tick(now, stage)`` runs every 50 ms (the app's records task).
Per charging stage it emits compact binary records at the Table-1
intervals (all configurable, ``CONFIG_SCHEMA``):

    type  name       stage          interval  Table-1 items
    1     handshake  1 handshake    250 ms    battery type, rated capacity,
                                              rated total voltage (BRM)
    2     params     2 parameters   500 ms    max cell V, max current, nominal
                                              energy, max total V, max temp,
                                              SOC (BCP)
    3     demand     3 charging      50 ms    demand V/I and mode (BCL) +
                                              the charger's measured output V/I
    4     status     3 charging     250 ms    measured V/I, SOC (BCS), max/min
                                              cell V and numbers, max/min temp
                                              and probe numbers (BCS/BSM/BMV)
    5     end        4 end          250 ms    final SOC, max/min cell V, max/min
                                              temp (BSD)
    6     event      any            on call   code, a, b (risk raised, stage...)

Seed 000 Table 1 lists two groups for the charging stage: BCL items at
50 ms and the measured values (GB/T 27930 11.3.2/11.3.4) at 250 ms; that
second charging group is the "fifth" 250 ms interval of requirement P-6.

Every record starts with the same 48-byte header: magic, version, type,
length, sequence number, board ms, date-time (Y-M-D h:m:s.ms), charger
id, charger type, region (GB/T 2260 six-digit code), session number,
stage, VIN (17 ASCII bytes from BRM, NUL when not received); it ends with
a CRC-16/CCITT-FALSE.  Byte tables: docs/records.md.  Values are the
scaled integers of ``gbt.bmsdata`` / ``board`` (-1 = not available).

The hot path (``tick``/``event``) allocates nothing: one preallocated
buffer, ``struct.pack_into``, memoryviews made once, no float, and every
int below 2**30 (a small int on 32-bit ports): the board ms are stamped
modulo 2**30 (MicroPython's ticks period on 32-bit ports).  The header's
date-time comes from ``diag.telclock.RecordClock`` (RTC read rarely,
carried forward from the tick clock between syncs).

``diag.telrec`` turns record bytes back into dicts (``decode``/``scan``, on
MicroPython and, through ``host_tools/telemetry.py``, on CPython: one
definition); it is not loaded with the product (heap).
"""
import struct

from micropython import const

from diag.eventlog import crc16, crc16_mv, EV_STAGE, EV_SESSION
from diag.telclock import RecordClock

try:
    from time import ticks_diff, ticks_add
except ImportError:           # CPython: the host tools import the layouts
    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

CONFIG_SCHEMA = (
    ("telemetry.enable", 1, 0, 1, "-", "Emit P-6 telemetry records (1) or not (0)"),
    ("telemetry.handshake_ms", 250, 50, 60000, "ms", "Handshake record interval (Table 1: 250 ms)"),
    ("telemetry.params_ms", 500, 50, 60000, "ms", "Parameter record interval (Table 1: 500 ms)"),
    ("telemetry.demand_ms", 50, 50, 60000, "ms", "Charging demand record interval (Table 1: 50 ms)"),
    ("telemetry.status_ms", 250, 50, 60000, "ms", "Charging status record interval (Table 1: 250 ms)"),
    ("telemetry.end_ms", 250, 50, 60000, "ms", "End record interval (Table 1: 250 ms)"),
    ("telemetry.region_code", 440305, 0, 999999, "-",
     "GB/T 2260 administrative division code (province+city+district), 0 = not set"),
    ("telemetry.charger_type", 1, 0, 255, "-",
     "Charger type code in records (docs/records.md: 1 = DC off-board integrated)"),
    ("telemetry.rtc_sync_s", 60, 1, 86400, "s", "Re-read the RTC this often; in between, the tick clock"),
)

try:
    import config
    config.register(CONFIG_SCHEMA)
except (ImportError, AttributeError):
    pass                      # host tools: layouts only

# ---- record layout ---------------------------------------------------------
MAGIC = const(0xA5)
VERSION = const(1)

T_HANDSHAKE = const(1)
T_PARAMS = const(2)
T_DEMAND = const(3)
T_STATUS = const(4)
T_END = const(5)
T_EVENT = const(6)

_ST_IDLE = const(0)
_ST_HANDSHAKE = const(1)
_ST_PARAMS = const(2)
_ST_CHARGING = const(3)
_ST_END = const(4)          # (record stage names: diag.telrec.STAGE_NAMES)

# ``stage_map`` for ``gbt.session.ChargerSession.stage`` (numbers of
# ``gbt/stages.py``; tests/mp/test_telemetry.py checks them against it):
#   IDLE, CONNECTED, LOCKING -> idle      HANDSHAKE, INSULATION, RECOGNITION
#   -> handshake (BRM arrives in recognition)     PARAMETER, PRECHARGE ->
#   parameters (until CRO 0xAA)     CHARGING -> charging     REHANDSHAKE ->
#   handshake (same plug-in session)     STOPPING, STATISTICS, FINISH -> end
#   DONE -> idle
SESSION_STAGES = (0, 0, 0, 1, 1, 1, 2, 2, 3, 1, 4, 4, 4, 0)

HDR_FMT = "<BBBBHIHBBBBBHIBIHB17s"
HDR_SIZE = const(48)
_CRC_SIZE = const(2)

# Payload formats follow the header.  'i' for every value whose wire field
# is 16 bits or more (no overflow whatever a decoder lets through), 'h' for
# 1-byte wire values (temps, SOC %, numbers, mode).
P_HANDSHAKE = "<hiiii"
P_PARAMS = "<iiiihii"
P_DEMAND = "<iihiiiii"
P_STATUS = "<iihhhhhhhhhhiiiH"
P_END = "<hiihhiii"
P_EVENT = "<Hii"

# indexed by record type (names and field names: diag.telrec)
SIZES = (0,) + tuple(HDR_SIZE + struct.calcsize(p) + _CRC_SIZE for p in
                     (P_HANDSHAKE, P_PARAMS, P_DEMAND, P_STATUS, P_END, P_EVENT))
MAX_SIZE = max(SIZES)

_TMS_MASK = const(0x3FFFFFFF)  # t_ms field: board ms modulo 2**30 (a small int)


def _next(due, iv, now):
    """Next due time on the interval grid; late by a whole interval (a
    stalled loop): restart the grid at ``now``, never emit a burst."""
    # ticks_add, not +: board ticks wrap at 2**30 (12.4 days), and a sum
    # past it is a long int that ticks_diff cannot take
    due = ticks_add(due, iv)
    if ticks_diff(now, due) >= 0:
        due = ticks_add(now, iv)
    return due


def _cfg(cfg, key):
    if cfg is not None and key in cfg:
        return cfg[key]
    for e in CONFIG_SCHEMA:
        if e[0] == key:
            return e[1]
    return 1 if key == "charger.id" else 0


class Telemetry:
    """P-6 record producer.

    cfg        configuration dict (``telemetry.*``, ``charger.id``)
    clock      the app clock (kept for callers that stamp ``now`` from it)
    bms        ``gbt.bmsdata.BmsData``; inp/out: ``board.Inputs``/``Outputs``
    sink       an object with ``write(memoryview)`` (UART, ``FileSink``) or a
               callable taking the memoryview (the SIL ``board.send_record``)
    rtc        callable -> seconds since the firmware epoch 2020-01-01
               (``rt.calendar``; the app's ``rtc_s``), or None (date-time
               zero); a negative value = clock not set (date-time zero)
    stage_map  session stage -> telemetry stage (0 idle .. 4 end): None =
               identity, a dict/tuple/list indexed by the session's stage,
               or a callable returning an int.  Stages that map outside
               0..4 count as idle (no records).
    session    first session number (e.g. restored from the event log)
    """

    def __init__(self, cfg, clock, bms, inp, out, sink, rtc=None, stage_map=None,
                 session=0):
        self.clock = clock
        self.bms = bms
        self.inp = inp
        self.out = out
        w = getattr(sink, "write", None)
        self._w = w if w is not None else sink        # bound once
        self.enabled = bool(_cfg(cfg, "telemetry.enable"))
        self.iv_hs = _cfg(cfg, "telemetry.handshake_ms")
        self.iv_par = _cfg(cfg, "telemetry.params_ms")
        self.iv_dem = _cfg(cfg, "telemetry.demand_ms")
        self.iv_sta = _cfg(cfg, "telemetry.status_ms")
        self.iv_end = _cfg(cfg, "telemetry.end_ms")
        self.region = _cfg(cfg, "telemetry.region_code")
        self.ctype = _cfg(cfg, "telemetry.charger_type") & 0xFF
        self.charger_id = _cfg(cfg, "charger.id") & 0xFFFFFFFF
        # stage mapping: a lookup table (stages 0..255; those past its end
        # map to _ST_IDLE, as unmapped ones do: sized to the highest mapped
        # stage, not 256 bytes of heap), or a callable
        self._map_fn = None
        if stage_map is None:
            self._map = bytearray(range(5))
        elif callable(stage_map) and not isinstance(stage_map, (dict, tuple, list)):
            self._map_fn = stage_map
            self._map = bytearray(0)
        else:
            keys = stage_map.keys() if isinstance(stage_map, dict) else range(len(stage_map))
            ok = [k for k in keys if 0 <= k < 256 and 0 <= stage_map[k] <= _ST_END]
            self._map = m = bytearray(max(ok) + 1 if ok else 0)
            for k in ok:
                m[k] = stage_map[k]
        self.buf = bytearray(MAX_SIZE)
        mv = memoryview(self.buf)
        self._mvs = tuple(mv[:n] for n in SIZES)
        # the CRC'd part of each record type (all but the CRC itself)
        self._crc_mvs = tuple(mv[:n - _CRC_SIZE if n > _CRC_SIZE else 0] for n in SIZES)
        self.stage = _ST_IDLE
        self.session = session
        self.seq = 0
        self.records = 0
        self.errors = 0           # sink write failures (record dropped)
        self.counts = [0] * len(SIZES)
        self._d_hs = self._d_par = self._d_dem = self._d_sta = self._d_end = 0
        # the date-time of the header (diag/telclock.py)
        self.time = RecordClock(rtc, _cfg(cfg, "telemetry.rtc_sync_s") * 1000)

    # the header's date-time, as the records carry it (tests, console)
    year = property(lambda self: self.time.year)
    month = property(lambda self: self.time.month)
    day = property(lambda self: self.time.day)
    hour = property(lambda self: self.time.hour)
    minute = property(lambda self: self.time.minute)
    second = property(lambda self: self.time.second)

    @property
    def sync_ms(self):
        """RTC re-read interval (ms; telemetry.rtc_sync_s), adjustable live."""
        return self.time.sync_ms

    @sync_ms.setter
    def sync_ms(self, v):
        self.time.sync_ms = v

    # ---- records -----------------------------------------------------------
    def _emit(self, typ, now):
        """Header + CRC around a payload already packed at HDR_SIZE."""
        n = SIZES[typ]
        buf = self.buf
        tc = self.time
        tc.stamp(now)
        struct.pack_into(HDR_FMT, buf, 0, MAGIC, VERSION, typ, n, self.seq & 0xFFFF,
                         now & _TMS_MASK, tc.year, tc.month, tc.day, tc.hour,
                         tc.minute, tc.second, tc.msec, self.charger_id,
                         self.ctype, self.region, self.session & 0xFFFF, self.stage,
                         self.bms.vin)
        crc = crc16_mv(self._crc_mvs[typ])
        buf[n - 2] = crc & 0xFF
        buf[n - 1] = crc >> 8
        self.seq += 1
        try:
            self._w(self._mvs[typ])
        except Exception:
            self.errors += 1      # a dead channel never stops charging
            return
        self.records += 1
        self.counts[typ] += 1

    def _handshake(self, now):
        b = self.bms
        struct.pack_into(P_HANDSHAKE, self.buf, HDR_SIZE, b.batt_type, b.rated_ah,
                         b.rated_v, b.bhm_max_v, b.brm_version)
        self._emit(T_HANDSHAKE, now)

    def _params(self, now):
        b = self.bms
        struct.pack_into(P_PARAMS, self.buf, HDR_SIZE, b.max_cell_v, b.max_i, b.energy,
                         b.max_v, b.max_temp, b.bcp_soc, b.bcp_v)
        self._emit(T_PARAMS, now)

    def _demand(self, now):
        b = self.bms
        i = self.inp
        o = self.out
        struct.pack_into(P_DEMAND, self.buf, HDR_SIZE, b.req_v, b.req_i, b.req_mode,
                         i.v_outside, i.i_out, o.v_set, o.i_set, i.v_inside)
        self._emit(T_DEMAND, now)

    def _status(self, now):
        b = self.bms
        i = self.inp
        flags = ((b.st_cell_v & 3) | ((b.st_soc & 3) << 2) | ((b.st_oc & 3) << 4)
                 | ((b.st_ot & 3) << 6) | ((b.st_ins & 3) << 8) | ((b.st_conn & 3) << 10)
                 | ((b.permit & 1) << 12))
        c = b.cells
        struct.pack_into(P_STATUS, self.buf, HDR_SIZE, b.meas_v, b.meas_i, b.soc,
                         b.cell_max_v, b.cell_max_no, b.cell_max_group, c.cell_min_v,
                         c.cell_min_no, b.temp_max, b.temp_max_no, b.temp_min,
                         b.temp_min_no, b.remain_min, i.v_outside, i.i_out, flags)
        self._emit(T_STATUS, now)

    def _end(self, now):
        e = self.bms.end
        struct.pack_into(P_END, self.buf, HDR_SIZE, e.end_soc, e.end_cell_min_v,
                         e.end_cell_max_v, e.end_temp_min, e.end_temp_max,
                         e.bst_reason, e.bst_fault, e.bst_error)
        self._emit(T_END, now)

    def _event(self, now, code, a, b):
        struct.pack_into(P_EVENT, self.buf, HDR_SIZE, code & 0xFFFF, a, b)
        self._emit(T_EVENT, now)

    def event(self, now, code, a=0, b=0):
        """A telemetry event now (risk raised: code EV_RISK_RAISED, a = check
        number, b = level; codes are ``diag.eventlog`` EV_*).  a/b: int32."""
        if not self.enabled:
            return
        if self.time.rtc is not None:
            self.time.sync(now)
        self._event(now, code, a, b)

    # ---- the 50 ms tick ------------------------------------------------------
    def tick(self, now, stage):
        """Emit the records that are due.  ``stage``: the session's stage."""
        if not self.enabled:
            return
        if self._map_fn is not None:
            st = self._map_fn(stage)
            if not 0 <= st <= _ST_END:
                st = _ST_IDLE
        elif 0 <= stage < len(self._map):
            st = self._map[stage]
        else:
            st = _ST_IDLE
        if self.time.rtc is not None:
            self.time.sync(now)
        prev = self.stage
        if st != prev:
            if st != _ST_IDLE and (prev == _ST_IDLE or (prev == _ST_END and st != _ST_END)):
                self.session += 1
                self.stage = st
                self._event(now, EV_SESSION, self.session, self.bms.vin_len)
            self.stage = st
            self._event(now, EV_STAGE, st, prev)
            self._d_hs = self._d_par = self._d_dem = self._d_sta = self._d_end = now
        if st == _ST_CHARGING:
            if ticks_diff(now, self._d_dem) >= 0:
                self._demand(now)
                self._d_dem = _next(self._d_dem, self.iv_dem, now)
            if ticks_diff(now, self._d_sta) >= 0:
                self._status(now)
                self._d_sta = _next(self._d_sta, self.iv_sta, now)
        elif st == _ST_HANDSHAKE:
            if ticks_diff(now, self._d_hs) >= 0:
                self._handshake(now)
                self._d_hs = _next(self._d_hs, self.iv_hs, now)
        elif st == _ST_PARAMS:
            if ticks_diff(now, self._d_par) >= 0:
                self._params(now)
                self._d_par = _next(self._d_par, self.iv_par, now)
        elif st == _ST_END:
            if ticks_diff(now, self._d_end) >= 0:
                self._end(now)
                self._d_end = _next(self._d_end, self.iv_end, now)


class FileSink:
    """Append records to ``path``; at ``max_bytes`` the file moves to
    ``path + '.1'`` (replacing the older one) and a new one starts, so the
    pair never exceeds 2 * max_bytes.  Buffered: call ``flush()``/``close()``
    before reading.  For tests and bench logging; on a board the channel is
    a UART (pass the ``machine.UART`` object: it has ``write``)."""

    def __init__(self, path, max_bytes=65536):
        import os
        self.path = path
        self.max_bytes = max_bytes
        try:
            self.size = os.stat(path)[6]
        except OSError:
            self.size = 0
        self.rotations = 0
        self.f = open(path, "ab")

    def write(self, mv):
        n = len(mv)
        if self.size + n > self.max_bytes and self.size:
            self._rotate()
        self.f.write(mv)
        self.size += n

    def _rotate(self):
        import os
        self.f.close()
        old = self.path + ".1"
        try:
            os.remove(old)
        except OSError:
            pass
        os.rename(self.path, old)
        self.f = open(self.path, "ab")
        self.size = 0
        self.rotations += 1

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()
