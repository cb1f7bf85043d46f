"""diag.telemetry on the real micropython: Table-1 items at their intervals,
stamps, decoding, and an allocation-free tick.

Also usable as a record generator for the host tests:
    micropython -c "import test_telemetry as t; t.generate('out.bin')"
"""
import micropython

import mptest
from board import Inputs, Outputs
from gbt.bmsdata import BmsData, NA
from rt.clock import SimClock
from diag import telemetry as T
from diag import telrec as R
from diag import eventlog as E

# RTC values are seconds since the firmware epoch 2020-01-01 (rt.calendar):
# Unix seconds - 1577836800
EPOCH = 170928000             # 2025-06-01 08:00:00 (RTC holds local time)
VIN = b"LSVAB4BR0MN123456"

# scenario (sim ms): idle, handshake, params, charging, end, idle
T_HS = 1000
T_PAR = 3000
T_CHG = 5000
T_END = 25000
T_IDLE = 27000
T_STOP = 28000


class Ring:
    """In-memory record channel: copies into a preallocated buffer, so it
    can run under heap_lock."""

    def __init__(self, size=200000):
        self.buf = bytearray(size)
        self.n = 0
        self.calls = 0

    def write(self, mv):
        b = self.buf
        o = self.n
        n = len(mv)
        if o + n > len(b):
            return
        for i in range(n):
            b[o + i] = mv[i]
        self.n = o + n
        self.calls += 1

    def records(self, typ=None):
        """Decoded records (of one type), streaming: a 20 s session is
        ~500 records, too many dicts to hold at once on a small heap."""
        sk = [0]
        out = list(R.iter_records(memoryview(self.buf)[:self.n], sk, typ or 0))
        mptest.eq(sk[0], 0, "no garbage between records")
        return out

    def times(self, typ):
        return [r["t_ms"] for r in R.iter_records(memoryview(self.buf)[:self.n], None, typ)]

    def pick(self, typ, idx):
        """The idx-th record of a type (negative: from the end)."""
        return self.records(typ)[idx]


def make(sink=None, stage_map=None, rtc=True, cfg=None, epoch=EPOCH):
    clock = SimClock()
    bms = BmsData()
    inp = Inputs()
    out = Outputs()
    sink = sink if sink is not None else Ring()
    c = {"charger.id": 12345678, "telemetry.region_code": 440305,
         "telemetry.charger_type": 1}
    if cfg:
        c.update(cfg)
    r = R.SimRtc(clock, epoch) if rtc else None
    tel = T.Telemetry(c, clock, bms, inp, out, sink, r, stage_map)
    return clock, tel, sink, bms, inp, out


def stage_at(t):
    if t < T_HS:
        return 0
    if t < T_PAR:
        return 1
    if t < T_CHG:
        return 2
    if t < T_END:
        return 3
    if t < T_IDLE:
        return 4
    return 0


def plant(t, bms, inp, out):
    """A plausible vehicle and power stage, in scaled integers."""
    if t == T_HS:
        bms.bhm_max_v = 4500
    if t == T_HS + 500:
        bms.brm_version = 0x000101
        bms.batt_type = 3
        bms.rated_ah = 1500
        bms.rated_v = 3500
        for i in range(17):
            bms.vin[i] = VIN[i]
        bms.vin_len = 17
    if t == T_PAR:
        bms.max_cell_v = 420
        bms.max_i = 2000
        bms.energy = 525
        bms.max_v = 4100
        bms.max_temp = 55
        bms.bcp_soc = 305
        bms.bcp_v = 3600
    if T_CHG <= t < T_END:
        k = t - T_CHG
        ramp = k // 10 if k < 10000 else 1000          # 0.1 A: 0 -> 100 A in 10 s
        bms.req_v = 4000
        bms.req_i = 1000
        bms.req_mode = 2
        out.v_set = 4000
        out.i_set = ramp
        inp.v_inside = 3600 + k // 200
        inp.v_outside = inp.v_inside
        inp.i_out = ramp
        bms.meas_v = inp.v_outside - 5
        bms.meas_i = ramp - 3 if ramp > 3 else 0
        bms.soc = 30 + k // 6000
        bms.cell_max_v = 372 + k // 6000
        bms.cell_max_no = 17
        bms.cell_max_group = 1
        bms.cells.cell_min_v = 366 + k // 6000
        bms.cells.cell_min_no = 42
        bms.temp_max = 28 + k // 10000
        bms.temp_max_no = 5
        bms.temp_min = 24
        bms.temp_min_no = 2
        bms.remain_min = 60 - k // 1000
    if t == T_END:
        out.i_set = 0
        inp.i_out = 0
        bms.end.end_soc = 40
        bms.end.end_cell_min_v = 368
        bms.end.end_cell_max_v = 381
        bms.end.end_temp_min = 24
        bms.end.end_temp_max = 34
        bms.end.bst_reason = 1


def run(clock, tel, bms, inp, out, until=T_STOP, step=50):
    t = 0
    while t <= until:
        clock.advance_to(t)
        plant(t, bms, inp, out)
        tel.tick(t, stage_at(t))
        t += step


def generate(path, max_bytes=1000000):
    """Write the whole scenario's records to a file (host tests)."""
    sink = T.FileSink(path, max_bytes)
    clock, tel, _, bms, inp, out = make(sink)
    run(clock, tel, bms, inp, out)
    tel.event(T_STOP, E.EV_RISK_RAISED, 7, 3)
    sink.close()
    print("RECORDS", tel.records)


def _spacing(ts, iv, what):
    mptest.true(len(ts) >= 2, what + ": at least two records")
    for i in range(1, len(ts)):
        mptest.eq(ts[i] - ts[i - 1], iv, what + " interval")


def test_every_table1_item_at_its_interval():
    clock, tel, sink, bms, inp, out = make()
    run(clock, tel, bms, inp, out)
    mptest.eq(tel.errors, 0, "no write errors")
    hs = sink.times(T.T_HANDSHAKE)
    par = sink.times(T.T_PARAMS)
    dem = sink.times(T.T_DEMAND)
    sta = sink.times(T.T_STATUS)
    end = sink.times(T.T_END)
    _spacing(hs, 250, "handshake")
    _spacing(par, 500, "params")
    _spacing(dem, 50, "demand")
    _spacing(sta, 250, "status")
    _spacing(end, 250, "end")
    mptest.eq(len(hs), 8, "2 s of handshake at 250 ms")
    mptest.eq(len(par), 4, "2 s of params at 500 ms")
    mptest.eq(len(dem), 400, "20 s of charging at 50 ms")
    mptest.eq(len(sta), 80, "20 s of charging at 250 ms")
    mptest.eq(len(end), 8, "2 s of end at 250 ms")
    mptest.eq(hs[0], T_HS, "first handshake record at stage entry")
    mptest.eq(dem[0], T_CHG, "first demand record at stage entry")
    mptest.eq(sta[0], T_CHG, "first status record at stage entry")
    # values: Table-1 items carry the BMS data
    h = sink.pick(T.T_HANDSHAKE, -1)
    mptest.eq((h["batt_type"], h["rated_ah"], h["rated_v"]), (3, 1500, 3500), "BRM items")
    mptest.eq(sink.pick(T.T_HANDSHAKE, 0)["batt_type"], NA, "before BRM: not available")
    p = sink.pick(T.T_PARAMS, 0)
    mptest.eq((p["max_cell_v"], p["max_i"], p["energy"], p["max_v"], p["max_temp"],
               p["bcp_soc"]), (420, 2000, 525, 4100, 55, 305), "BCP items")
    d = sink.pick(T.T_DEMAND, 300)                                # 15 s into charging
    mptest.eq((d["req_v"], d["req_i"], d["req_mode"]), (4000, 1000, 2), "BCL items")
    mptest.eq((d["out_v"], d["out_i"]), (3600 + 15000 // 200, 1000), "measured output")
    s = sink.pick(T.T_STATUS, 60)                                 # 15 s into charging
    mptest.eq((s["meas_v"], s["meas_i"], s["soc"]), (3670, 997, 32), "BCS items")
    mptest.eq((s["cell_max_v"], s["cell_max_no"], s["cell_min_v"], s["cell_min_no"]),
              (374, 17, 368, 42), "cell extremes and numbers")
    mptest.eq((s["temp_max"], s["temp_max_no"], s["temp_min"], s["temp_min_no"]),
              (29, 5, 24, 2), "temperature extremes and probes")
    e = sink.pick(T.T_END, 0)
    mptest.eq((e["end_soc"], e["end_cell_max_v"], e["end_cell_min_v"], e["end_temp_max"],
               e["end_temp_min"]), (40, 381, 368, 34, 24), "BSD items")
    # nothing in idle except the stage events
    for r in R.iter_records(memoryview(sink.buf)[:sink.n]):
        if r["t_ms"] < T_HS or r["t_ms"] > T_IDLE:
            mptest.eq(r["type"], T.T_EVENT, "idle: events only")


def test_stamps_on_every_record():
    clock, tel, sink, bms, inp, out = make()
    run(clock, tel, bms, inp, out)
    seq = -1
    first = None
    for r in R.iter_records(memoryview(sink.buf)[:sink.n]):
        if first is None:
            first = r
        mptest.eq(r["version"], 1, "version")
        mptest.eq(r["charger_id"], 12345678, "charger id")
        mptest.eq(r["charger_type"], 1, "charger type")
        mptest.eq(r["region"], 440305, "region code")
        mptest.eq(r["seq"], seq + 1, "sequence without gaps")
        seq = r["seq"]
        t = r["t_ms"]
        # 2025-06-01 08:00:00 + t
        sec = t // 1000
        mptest.eq((r["year"], r["month"], r["day"]), (2025, 6, 1), "date")
        mptest.eq((r["hour"], r["minute"], r["second"], r["ms"]),
                  (8, sec // 60, sec % 60, t % 1000), "time of day at %d" % t)
        if t >= T_HS + 500 and r["stage"]:
            mptest.eq(r["vin"], VIN.decode(), "VIN once BRM is in")
        if T.T_HANDSHAKE <= r["type"] <= T.T_END:
            mptest.eq(r["session"], 1, "session number")
    mptest.eq(first["vin"], "", "no VIN before BRM")


def test_stage_and_session_events():
    clock, tel, sink, bms, inp, out = make()
    run(clock, tel, bms, inp, out)
    ev = [(r["t_ms"], r["code"], r["a"], r["b"]) for r in sink.records(T.T_EVENT)]
    mptest.eq(ev, [(T_HS, E.EV_SESSION, 1, 0), (T_HS, E.EV_STAGE, 1, 0),
                   (T_PAR, E.EV_STAGE, 2, 1), (T_CHG, E.EV_STAGE, 3, 2),
                   (T_END, E.EV_STAGE, 4, 3), (T_IDLE, E.EV_STAGE, 0, 4)], "events")
    tel.event(T_STOP, E.EV_RISK_RAISED, 8, 2)
    r = sink.records()[-1]
    mptest.eq((r["type_name"], r["event"], r["a"], r["b"]), ("event", "risk-raised", 8, 2),
              "risk event names the anomaly")


def test_tick_is_allocation_free():
    # RTC re-read every second and midnight crossed under the lock: the
    # rare paths (sync, edge seek, calendar) are allocation-free too
    sink = Ring()
    clock, tel, _, bms, inp, out = make(sink, cfg={"telemetry.rtc_sync_s": 1},
                                        epoch=157852790)      # 2024-12-31 23:59:50
    for i in range(17):
        bms.vin[i] = VIN[i]
    bms.vin_len = 17
    n = 0
    t = 0
    # one warm-up pass through every stage (first RTC read, caches)
    for st in (1, 2, 3, 4, 0):
        for _ in range(30):
            clock.advance_to(t)
            tel.tick(t, st)
            t += 50
    before = tel.records
    micropython.heap_lock()
    try:
        for st in (1, 2, 3, 4, 0, 3):
            for _ in range(40):
                clock.advance_to(t)
                tel.tick(t, st)
                t += 50
        tel.event(t, E.EV_RISK_RAISED, 1, 2)
        n = tel.records - before
    finally:
        micropython.heap_unlock()
    mptest.true(n > 100, "records were produced under heap_lock (%d)" % n)
    mptest.eq(tel.errors, 0, "no write errors")
    last = sink.records(T.T_EVENT)[-1]
    mptest.eq((last["year"], last["month"], last["day"]), (2025, 1, 1), "crossed midnight")


def test_stage_map_dict_and_callable():
    # the session's own numbering: 10 handshake, 20 params, 30 charging, 40 end
    m = {10: 1, 11: 1, 20: 2, 30: 3, 40: 4}
    clock, tel, sink, bms, inp, out = make(stage_map=m)
    for i, st in enumerate((0, 10, 11, 20, 30, 40, 99, 0)):
        tel.tick(i * 1000, st)
    types = [r["type"] for r in sink.records() if r["type"] != T.T_EVENT]
    mptest.eq(types, [1, 1, 2, 3, 4, 5], "mapped stages; unknown 99 = idle")
    clock, tel, sink, bms, inp, out = make(stage_map=lambda s: s - 100)
    tel.tick(0, 103)
    tel.tick(50, 7)               # maps to -93: idle
    types = [r["type"] for r in sink.records() if r["type"] != T.T_EVENT]
    mptest.eq(types, [3, 4], "callable map")


def test_session_stage_map_matches_gbt_stages():
    from gbt import stages as S
    want = {S.IDLE: 0, S.CONNECTED: 0, S.LOCKING: 0, S.HANDSHAKE: 1, S.INSULATION: 1,
            S.RECOGNITION: 1, S.PARAMETER: 2, S.PRECHARGE: 2, S.CHARGING: 3,
            S.REHANDSHAKE: 1, S.STOPPING: 4, S.STATISTICS: 4, S.FINISH: 4, S.DONE: 0}
    mptest.eq(len(T.SESSION_STAGES), len(S.STAGE_NAMES), "one entry per session stage")
    for k, v in want.items():
        mptest.eq(T.SESSION_STAGES[k], v, S.STAGE_NAMES[k])
    # a plug-in with a re-handshake is one session; DONE -> next plug-in is another
    clock, tel, sink, bms, inp, out = make(stage_map=T.SESSION_STAGES)
    seq = (S.IDLE, S.CONNECTED, S.HANDSHAKE, S.RECOGNITION, S.PARAMETER, S.CHARGING,
           S.REHANDSHAKE, S.RECOGNITION, S.PARAMETER, S.PRECHARGE, S.CHARGING,
           S.STOPPING, S.STATISTICS, S.DONE, S.CONNECTED, S.HANDSHAKE)
    for i, st in enumerate(seq):
        tel.tick(i * 1000, st)
    starts = [r["a"] for r in sink.records(T.T_EVENT) if r["code"] == E.EV_SESSION]
    mptest.eq(starts, [1, 2], "two sessions")


def test_date_rolls_over_midnight_and_year():
    clock, tel, sink, bms, inp, out = make(epoch=157852798)    # 2024-12-31 23:59:58
    for t in range(0, 4001, 50):
        clock.advance_to(t)
        tel.tick(t, 3)
    recs = sink.records(T.T_STATUS)
    first = recs[0]
    mptest.eq((first["year"], first["month"], first["day"], first["hour"], first["minute"],
               first["second"]), (2024, 12, 31, 23, 59, 58), "start")
    last = recs[-1]
    mptest.eq(last["t_ms"], 4000, "last status")
    mptest.eq((last["year"], last["month"], last["day"], last["hour"], last["minute"],
               last["second"], last["ms"]), (2025, 1, 1, 0, 0, 2, 0), "after new year")


def test_rtc_resync_and_unset_clock():
    clock = SimClock()
    # an RTC that runs 1 s fast after 30 s
    state = [EPOCH]

    def rtc():
        return state[0] + clock.ms // 1000 + (1 if clock.ms >= 30000 else 0)
    bms = BmsData()
    sink = Ring()
    tel = T.Telemetry({"telemetry.rtc_sync_s": 10}, clock,
                      bms, Inputs(), Outputs(), sink, rtc)
    for t in range(0, 45001, 50):
        clock.advance_to(t)
        tel.tick(t, 3)
    recs = sink.records(T.T_STATUS)
    r0 = recs[0]
    mptest.eq((r0["year"], r0["month"], r0["day"], r0["hour"]), (2025, 6, 1, 8), "firmware epoch")
    r = recs[-1]
    mptest.eq(r["t_ms"], 45000, "last")
    mptest.eq((r["minute"], r["second"], r["ms"]), (0, 46, 0), "resync picked up the RTC step")
    # a clock that is not set (before 2020: negative) gives no date, and
    # a date again once it is set
    state[0] = -631152000 + 5
    sink.n = 0
    for t in range(45050, 60001, 50):
        clock.advance_to(t)
        tel.tick(t, 3)
    mptest.eq(sink.records(T.T_STATUS)[-1]["year"], 0, "unset clock: no date")
    state[0] = EPOCH
    sink.n = 0
    for t in range(60050, 75001, 50):
        clock.advance_to(t)
        tel.tick(t, 3)
    mptest.eq(sink.records(T.T_STATUS)[-1]["year"], 2025, "set again")


def test_no_rtc_gives_zero_date_and_disabled_emits_nothing():
    clock, tel, sink, bms, inp, out = make(rtc=False)
    tel.tick(0, 3)
    r = sink.records()[-1]
    mptest.eq((r["year"], r["month"], r["day"], r["hour"]), (0, 0, 0, 0), "no date")
    clock, tel, sink, bms, inp, out = make(cfg={"telemetry.enable": 0})
    tel.tick(0, 3)
    tel.event(0, E.EV_TRIP, 1, 2)
    mptest.eq(sink.n, 0, "disabled: nothing written")


def test_custom_intervals_and_no_burst_after_stall():
    clock, tel, sink, bms, inp, out = make(cfg={"telemetry.demand_ms": 100,
                                                "telemetry.status_ms": 1000})
    for t in list(range(0, 1001, 50)) + [5000, 5050, 5100]:
        tel.tick(t, 3)
    dem = [r["t_ms"] for r in sink.records() if r["type"] == T.T_DEMAND]
    mptest.eq(dem, [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 5000, 5100],
              "100 ms grid, one record after a 4 s stall, no catch-up burst")
    sta = [r["t_ms"] for r in sink.records() if r["type"] == T.T_STATUS]
    mptest.eq(sta, [0, 1000, 5000], "status at 1 s")


def test_broken_sink_counts_errors():
    def bad(mv):
        raise OSError(5)
    clock, tel, sink, bms, inp, out = make(sink=bad)
    tel.tick(0, 3)
    tel.tick(50, 3)
    mptest.eq(tel.errors, 5, "session + stage events, demand + status, demand: dropped, counted")
    mptest.eq(tel.records, 0, "nothing counted as sent")


def test_decode_rejects_corruption_and_resyncs():
    clock, tel, sink, bms, inp, out = make()
    tel.tick(0, 3)
    good = bytes(sink.buf[:sink.n])
    recs, skipped = R.scan(good)
    mptest.eq([r["type"] for r in recs], [T.T_EVENT, T.T_EVENT, T.T_DEMAND, T.T_STATUS],
              "types")
    n0 = 2 * T.SIZES[T.T_EVENT]
    bad = bytearray(good)
    bad[n0 + 20] ^= 0x01                          # flip a bit in the demand record
    recs, skipped = R.scan(b"\x00\xa5garbage" + bytes(bad) + good[:30])
    mptest.eq([r["type"] for r in recs], [T.T_EVENT, T.T_EVENT, T.T_STATUS],
              "corrupt record skipped")
    mptest.eq(R.decode(bad, n0), None, "decode: bad CRC -> None")
    mptest.eq(R.decode(good[:20]), None, "decode: short -> None")
    v2 = bytearray(good)
    v2[1] = 2
    mptest.eq(R.decode(v2), None, "unknown version -> None")
    mptest.eq(T.SIZES[T.T_STATUS] <= 250, True, "fits a SIL telemetry packet")


def test_file_sink_rotates():
    import os
    path = "/tmp/_mp_tel_%d.bin" % id(make)
    for p in (path, path + ".1"):
        try:
            os.remove(p)
        except OSError:
            pass
    sink = T.FileSink(path, 1000)
    clock, tel, _, bms, inp, out = make(sink)
    for t in range(0, 2000, 50):
        tel.tick(t, 3)
    sink.close()
    a = open(path + ".1", "rb").read()
    b = open(path, "rb").read()
    mptest.true(len(a) <= 1000 and len(b) <= 1000, "bounded files")
    ra, sa = R.scan(a)
    rb, sb = R.scan(b)
    mptest.eq((sa, sb), (0, 0), "whole records only")
    mptest.eq(rb[-1]["t_ms"], 1950, "newest in the current file")
    mptest.eq(rb[0]["seq"], ra[-1]["seq"] + 1, "continuous across the rotation")
    os.remove(path)
    os.remove(path + ".1")


if __name__ == "__main__":
    mptest.main(globals())
