"""VIN lockout (3 x same warning per calendar day -> 12 h), cap mode,
needs-confirmation for SOC anomalies, persistence through reboot."""
import mptest
import os
import random
from board import Inputs, Outputs
from gbt.bmsdata import BmsData, NA
from rt.clock import SimClock
from safety.lockout import Lockout, OK, LOCKED, CAPPED, CONFIRM, vin_key
from safety.lockout import L_ESTOP, L_CONTACTOR
from safety import lockout as LK
from safety.supervisor import Supervisor
from gbt.stages import CHARGING
from safety import risk
from store import Store
from doubles import SupervisorBoard, MemStore

VIN = b"LSVAB4BR5EN123456"
VIN2 = b"LFV2A21K6A4000001"
# 2024-03-01 10:00 local (UTC+8), 02:00 UTC, in firmware seconds (since
# 2020-01-01 UTC, rt.calendar; Unix 1709258400)
T0 = 131421600
DAY = 86400


def test_three_times_same_day_locks_12h():
    lk = Lockout({})
    mptest.eq(lk.note(VIN, 5, T0), 0, "1st")
    mptest.eq(lk.note(VIN, 5, T0 + 3600), 0, "2nd")
    mptest.eq(lk.status(VIN, T0 + 3600)[0], OK, "not yet")
    mptest.eq(lk.note(VIN, 5, T0 + 7200), 3, "3rd locks")
    st, chk, until = lk.status(VIN, T0 + 7200)
    mptest.eq((st, chk, until), (LOCKED, 5, T0 + 7200 + 12 * 3600), "locked 12 h")
    mptest.eq(lk.status(VIN2, T0 + 7200)[0], OK, "other VIN free")
    mptest.eq(lk.status(VIN, T0 + 7200 + 12 * 3600 - 1)[0], LOCKED, "still at 11:59:59")
    mptest.eq(lk.status(VIN, T0 + 7200 + 12 * 3600)[0], OK, "free after 12 h")


def test_calendar_day_boundary_local_time():
    lk = Lockout({})
    # 2024-03-01 23:30 and 23:50 local, then 2024-03-02 00:10 local
    d1 = T0 + 13 * 3600 + 30 * 60
    lk.note(VIN, 2, d1)
    lk.note(VIN, 2, d1 + 20 * 60)
    mptest.eq(lk.note(VIN, 2, d1 + 40 * 60), 0, "third falls on the next local day")
    mptest.eq(lk.status(VIN, d1 + 40 * 60)[0], OK, "not locked")
    lk2 = Lockout({"lockout.tz_min": 0})
    lk2.note(VIN, 2, d1)
    lk2.note(VIN, 2, d1 + 20 * 60)
    mptest.eq(lk2.note(VIN, 2, d1 + 40 * 60), 3, "same UTC day: locked")


def test_different_checks_and_vins_do_not_add_up():
    lk = Lockout({})
    lk.note(VIN, 1, T0)
    lk.note(VIN, 2, T0)
    lk.note(VIN2, 1, T0)
    lk.note(VIN, 1, T0)
    mptest.eq(lk.status(VIN, T0)[0], OK, "2 x S-1, 1 x S-2")


def test_no_vin_not_counted_and_fill_stripped():
    lk = Lockout({})
    for k in range(5):
        mptest.eq(lk.note(b"", 1, T0), 0, "empty")
        mptest.eq(lk.note(b"\xff" * 17, 1, T0), 0, "all fill")
    mptest.eq(len(lk.entries), 0, "nothing stored")
    mptest.eq(vin_key(b"ABC\x00\x00"), b"ABC", "strip 0 fill")
    mptest.eq(vin_key(bytearray(b"ABC\xff")), b"ABC", "strip FF fill")


def test_cap_mode():
    lk = Lockout({"lockout.mode": "cap", "lockout.cap_dA": 300})
    for k in range(3):
        lk.note(VIN, 8, T0)
    mptest.eq(lk.status(VIN, T0)[0], CAPPED, "capped")


def test_eviction_keeps_locks():
    lk = Lockout({"lockout.slots": 4})
    for k in range(3):
        lk.note(VIN, 1, T0)
    for n in range(10):
        lk.note(b"VIN%014d" % n, 2, T0 + n)
    mptest.eq(len(lk.entries), 4, "bounded")
    mptest.eq(lk.status(VIN, T0 + 100)[0], LOCKED, "lock survived eviction")


def test_pack_unpack_roundtrip_and_garbage():
    lk = Lockout({})
    for k in range(3):
        lk.note(VIN, 5, T0)
    lk.note(VIN2, 7, T0)
    lk.set_confirm(VIN2, 13, T0)
    lk.set_latch(1)
    data = lk.pack()
    lk2 = Lockout({})
    mptest.eq(lk2.unpack(data), None, "ok")
    mptest.eq(lk2.pack(), data, "roundtrip")
    mptest.eq(lk2.status(VIN, T0)[0], LOCKED, "lock")
    mptest.eq(lk2.status(VIN2, T0)[0], CONFIRM, "confirm")
    random.seed(3)
    for n in range(300):
        g = bytearray(data)
        for j in range(1 + random.getrandbits(2)):
            g[random.getrandbits(10) % len(g)] = random.getrandbits(8)
        if n % 3 == 0:
            g = g[:random.getrandbits(10) % (len(g) + 1)]
        lk3 = Lockout({})
        err = lk3.unpack(bytes(g))
        mptest.true(err is None or isinstance(err, str), "defined result")
        if err:
            mptest.eq((lk3.entries, lk3.latched, lk3.confirm), ([], 0, 0), "defaults on error")


def _v1(lk, base_s, base_days):
    """``lk`` packed as an older firmware did (record version 1): u32 times
    and days in the board's old epoch (``base_s``/``base_days`` after 1970
    or 2000 at the firmware epoch)."""
    import struct
    out = bytearray(lk.pack())
    out[0] = 1
    o = struct.calcsize(LK._HDR)
    ct = lk.confirm_t
    struct.pack_into("<I", out, o + 18, ct + base_s if ct else 0)
    o += struct.calcsize(LK._CONF)
    for e in lk.entries:
        struct.pack_into("<II", out, o + 20, e[3] + base_days, e[4] + base_s if e[4] else 0)
        o += struct.calcsize(LK._ENT)
    return bytes(out)


def test_clock_not_set_negative_times_still_lock_and_expire():
    # an RTC that restarted at 2000-01-01 reads about -631152000 (before the
    # firmware epoch): entries without a lock must not look locked, and a
    # lock made then still runs its 12 h
    w = -631152000 + 3600
    lk = Lockout({})
    lk.note(VIN, 5, w)
    mptest.eq(lk.status(VIN, w)[0], OK, "one warning: not locked")
    lk.note(VIN, 5, w + 10)
    mptest.eq(lk.note(VIN, 5, w + 20), 3, "3rd locks")
    mptest.eq(lk.status(VIN, w + 20), (LOCKED, 5, w + 20 + 12 * 3600), "locked 12 h")
    mptest.eq(lk.status(VIN, w + 20 + 12 * 3600)[0], OK, "expired")
    lk2 = Lockout({})
    mptest.eq(lk2.unpack(lk.pack()), None, "negative times pack and unpack")
    mptest.eq(lk2.status(VIN, w + 30)[0], LOCKED, "after a reboot")
    lk.note(VIN2, 1, w)
    mptest.eq(lk.status(VIN2, w)[0], OK, "other VIN: an entry, no lock")


def test_version1_record_from_older_firmware_is_converted():
    lk = Lockout({})
    for k in range(3):
        lk.note(VIN, 5, T0)                  # locked until T0 + 12 h
    lk.note(VIN2, 7, T0 + 60)
    lk.set_confirm(VIN2, 13, T0 + 120)
    lk.set_latch(L_CONTACTOR)
    want = lk.pack()
    mptest.eq(want[0], 2, "this firmware writes version 2")
    # SIL/QEMU boards had Unix seconds; stm32/esp32 MicroPython's 2000 epoch
    for base_s, base_d, what in ((1577836800, 18262, "Unix"), (631152000, 7305, "2000")):
        old = _v1(lk, base_s, base_d)
        lk2 = Lockout({})
        mptest.eq(lk2.unpack(old), None, "%s-based version 1 accepted" % what)
        mptest.eq(lk2.pack(), want, "%s-based version 1 converted exactly" % what)
        mptest.eq(lk2.status(VIN, T0 + 3600)[:2], (LOCKED, 5), "%s: still locked" % what)
        mptest.eq(lk2.status(VIN, T0 + 12 * 3600)[0], OK, "%s: free after 12 h" % what)
        mptest.eq((lk2.latched, lk2.confirm), (L_CONTACTOR, 13), "%s: latch, confirmation" % what)
        # the day count goes on: one more S-7 the same day counts as the 2nd
        mptest.eq(lk2.note(VIN2, 7, T0 + 300), 0, "%s: same day" % what)
        mptest.eq([e[2] for e in lk2.entries if e[1] == 7], [2], "%s: counted on" % what)


# ------------------------------------------------------------- supervisor
def normal(bms, inp):
    bms.max_i = 2500
    bms.req_i = 2000
    bms.max_v = 7500
    bms.req_v = 4100
    bms.meas_v = 4000
    bms.meas_i = 2000
    bms.soc = 50
    bms.bcp_soc = 500
    bms.energy = 600
    inp.v_outside = 4000
    inp.v_inside = 4000
    inp.i_out = 2000
    inp.cc1_mv = 4000
    inp.k12_fb = 1


def make(store, cfg=None):
    clk = SimClock()
    inp = Inputs()
    out = Outputs()
    bms = BmsData()
    normal(bms, inp)
    sup = Supervisor(cfg or {}, clk, SupervisorBoard(), inp, out, bms, store)
    sup.stage = CHARGING            # H-12: outputs on are allowed
    return sup, inp, out, bms, clk


def session(sup, bms, t0, wall, bad):
    """One charging session in which S-5 (voltage deviation) is raised if
    ``bad``.  Returns the end time."""
    ok, why = sup.start_allowed(VIN, wall)
    if not ok:
        return t0, why
    sup.vin = VIN
    sup.charging = True
    bms.meas_v = 3800 if bad else 4000
    t = t0
    while t < t0 + 6000:
        sup.out.k12 = 1
        sup.protect_tick(t)
        if t % 100 == 0:
            sup.check_tick(t)
        t += 2
    sup.charging = False
    sup.check_tick(t)
    sup.slow_tick(t, wall)
    return t, why


def test_supervisor_lockout_after_three_sessions_and_reboot():
    st = MemStore()
    sup, inp, out, bms, clk = make(st)
    t = 0
    for n in range(3):
        t, why = session(sup, bms, t, T0 + n * 600, True)
        mptest.eq(why, "ok", "session %d allowed" % n)
        mptest.eq(sup.stop_request, 5, "S-5 stop request")
    ok, why = sup.start_allowed(VIN, T0 + 1800)
    mptest.eq(ok, False, "4th refused")
    mptest.true("locked" in why, why)
    mptest.true(sup.events.find(risk.EV_LOCKOUT, 5) >= 0, "lockout event")
    mptest.eq(sup.start_allowed(VIN2, T0 + 1800)[0], True, "other vehicle ok")
    # reboot
    sup2, inp2, out2, bms2, clk2 = make(st)
    mptest.eq(sup2.start_allowed(VIN, T0 + 1800)[0], False, "survives reboot")
    mptest.eq(sup2.start_allowed(VIN, T0 + 1200 + 12 * 3600)[0], True, "free after 12 h")


def test_supervisor_cap_mode_caps_current():
    st = MemStore()
    sup, inp, out, bms, clk = make(st, {"lockout.mode": "cap", "lockout.cap_dA": 300})
    t = 0
    for n in range(3):
        t, why = session(sup, bms, t, T0 + n * 600, True)
    ok, why = sup.start_allowed(VIN, T0 + 1800)
    mptest.eq(ok, True, why)
    mptest.true("capped" in why, why)
    sup.charging = True
    out.i_set = 2000
    sup.protect_tick(t)
    mptest.eq(sup.current_limit, 300, "limit")
    mptest.eq(out.i_set, 300, "set-point capped")
    ok, why = sup.start_allowed(VIN2, T0 + 1800)
    sup.protect_tick(t + 2)
    mptest.eq(sup.current_limit, 2000, "other VIN uncapped")


def test_soc_anomaly_needs_confirmation_until_acknowledged():
    st = MemStore()
    sup, inp, out, bms, clk = make(st)
    sup.vin = VIN
    sup.charging = True
    bms.soc = 102              # S-12
    t = 0
    while t < 5600:
        sup.out.k12 = 1
        sup.protect_tick(t)
        if t % 100 == 0:
            sup.check_tick(t)
        t += 2
    mptest.eq(sup.stop_request, 12, "S-12 stop")
    sup.charging = False
    sup.slow_tick(t, T0)
    mptest.eq(sup.needs_confirmation, 12, "flag")
    mptest.true(sup.events.find(risk.EV_CONFIRM, 12) >= 0, "event")
    ok, why = sup.start_allowed(VIN, T0 + 60)
    mptest.eq(ok, False, why)
    mptest.true("confirmation" in why, why)
    mptest.eq(sup.start_allowed(VIN2, T0 + 60)[0], True, "other vehicle")
    # reboot keeps the flag
    sup2, inp2, out2, bms2, clk2 = make(st)
    mptest.eq(sup2.needs_confirmation, 12, "persisted")
    mptest.eq(sup2.acknowledge(), 12, "ack")
    sup2.slow_tick(0, T0 + 100)
    mptest.eq(sup2.start_allowed(VIN, T0 + 100)[0], True, "allowed after ack")
    sup3, _, _, _, _ = make(st)
    mptest.eq(sup3.needs_confirmation, 0, "ack persisted")


def _ram_fs():
    import test_store as ts
    ts.umount()
    bd = ts.fresh()
    ts.mount(bd)
    return ts, bd


def test_persisted_on_littlefs_and_power_cut_reboot():
    ts, bd = _ram_fs()
    try:
        st = Store(ts.MP + "/safety.rec")
        sup, inp, out, bms, clk = make(st)
        t = 0
        for n in range(3):
            t, why = session(sup, bms, t, T0 + n * 600, True)
        ts.umount()
        # power cut: only the bytes on the device survive
        bd2 = ts.RamBdev(image=bd.data)
        ts.mount(bd2)
        sup2, _, _, _, _ = make(Store(ts.MP + "/safety.rec"))
        mptest.eq(sup2.store_warnings, [], "clean load")
        mptest.eq(sup2.start_allowed(VIN, T0 + 3600)[0], False, "locked after power cut")
    finally:
        ts.umount()


def _file(name):
    with open(name, "rb") as f:
        return f.read()


def _newer(payload):
    """The same record as written by a newer firmware (the next version)."""
    b = bytearray(payload)
    b[0] = LK._VERSION + 1
    return bytes(b)


def _latched(bits):
    lk = Lockout({})
    lk.set_latch(bits)
    return lk.pack()


def test_issue10_item04_supervisor_falls_back_to_old_generation():
    ts, bd = _ram_fs()
    try:
        p = ts.MP + "/safety.rec"
        st = Store(p)
        st.save(_latched(L_CONTACTOR))        # the good generation: K1/K2 welded
        st.save(_newer(Lockout({}).pack()))   # CRC-valid, version this firmware rejects
        good = _file(p + ".old")
        sup, inp, out, bms, clk = make(Store(p))
        ok, why = sup.start_allowed(VIN, T0)
        mptest.eq(ok, False, "refused: %s" % why)
        mptest.true(why.startswith("contactor fault"), "latch from .old kept: %s" % why)
        w = " | ".join(sup.store_warnings)
        mptest.true("rejected" in w and ("version %d" % (LK._VERSION + 1)) in w and "using" in w
                    and ".old" in w, w)
        # a change is saved: the rejected file goes, the good .old stays
        inp.estop = 1
        sup.protect_tick(0)
        sup.slow_tick(1000, T0)
        mptest.eq(_file(p + ".old"), good, ".old untouched by the save")
        sup2, _, _, _, _ = make(Store(p))
        mptest.eq(sup2.store_warnings, [], "clean load")
        mptest.eq(sup2.lock.latched & (L_ESTOP | L_CONTACTOR), L_ESTOP | L_CONTACTOR, "both latched")
    finally:
        ts.umount()


def test_issue10_item04_truncated_crc_valid_record_falls_back():
    for cut in (3, 10, 30):
        ts, bd = _ram_fs()
        try:
            p = ts.MP + "/safety.rec"
            st = Store(p)
            st.save(_latched(L_ESTOP))
            lk = Lockout({})
            lk.note(VIN, 5, T0)
            full = lk.pack()
            st.save(full[:len(full) - cut])   # truncated, but its CRC is right
            sup, _, _, _, _ = make(Store(p))
            ok, why = sup.start_allowed(VIN2, T0)
            mptest.eq(ok, False, "cut %d: refused" % cut)
            mptest.true(why.startswith("E-stop latched"), "cut %d: %s" % (cut, why))
            mptest.true(any("rejected" in x for x in sup.store_warnings), repr(sup.store_warnings))
        finally:
            ts.umount()


def test_issue10_item04_no_usable_record_refuses_until_cleared():
    for bad in (_newer(_latched(L_CONTACTOR)), None):
        ts, bd = _ram_fs()
        try:
            p = ts.MP + "/safety.rec"
            if bad is None:                   # not even a valid CRC: garbage
                with open(p, "wb") as f:
                    f.write(b"garbage" * 10)
            else:
                Store(p).save(bad)
            sup, _, _, _, _ = make(Store(p))
            ok, why = sup.start_allowed(VIN, T0)
            mptest.eq(ok, False, "refused, not defaults")
            mptest.true("safety record unusable" in why and "clear_store_fault" in why, why)
            mptest.eq(sup.lock.latched, LK.L_STORE, "latched")
            mptest.true(any("charging refused" in x for x in sup.store_warnings),
                        repr(sup.store_warnings))
            mptest.eq(sup.rearm(), False, "rearm does not clear it")
            sup.slow_tick(1000, T0)           # the refusal itself is persisted
            sup2, _, _, _, _ = make(Store(p))
            mptest.eq(sup2.start_allowed(VIN, T0)[0], False, "still refused after reboot")
            mptest.eq(sup2.clear_store_fault(), True, "operator clears it")
            mptest.eq(sup2.start_allowed(VIN, T0), (True, "ok"), "defaults after the clear")
            sup2.slow_tick(1000, T0)
            sup3, _, _, _, _ = make(Store(p))
            mptest.eq(sup3.start_allowed(VIN, T0), (True, "ok"), "cleared state persisted")
            mptest.eq(sup3.store_warnings, [], "clean")
        finally:
            ts.umount()


def test_issue10_item11_store_max_bytes_must_hold_a_full_record():
    import config
    cfg, err = config.load(overrides={"store.max_bytes": 400})
    mptest.eq(err, ["store.max_bytes (400) must hold a full lockout record: >= 474 bytes "
                    "with lockout.slots = 16"], "refused")
    record_bytes = LK.record_bytes
    mptest.eq(record_bytes(16), 474, "16 entries")
    mptest.eq(record_bytes(32), 922, "32 entries (max slots)")
    cfg, err = config.load(overrides={"store.max_bytes": 1024, "lockout.slots": 32})
    mptest.eq(err, [], "1024 holds 32 slots")
    cfg, err = config.load(overrides={"store.max_bytes": 150, "lockout.slots": 4})
    mptest.eq(err, [], "4 slots fit 150")
    # and the smallest accepted size does save a full record
    ts, bd = _ram_fs()
    try:
        st = Store(ts.MP + "/safety.rec", record_bytes(4))
        lk = Lockout({"lockout.slots": 4})
        for n in range(10):
            lk.note(b"VIN%014d" % n, 1, T0)
        lk.set_confirm(VIN, 12, T0)
        lk.set_latch(L_ESTOP | L_CONTACTOR)
        mptest.true(st.save(lk.pack()), "a full record fits")
    finally:
        ts.umount()


if __name__ == "__main__":
    mptest.main(globals())
