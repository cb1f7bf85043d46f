"""VIN lockout (3 x same warning per calendar day -> 12 h), cap mode,
needs-confirmation for SOC anomalies, persistence through reboot."""
import mptest
import os
import random
from board import Inputs, Outputs
from gbt.bmsdata import BmsData, NA
from rt.clock import SimClock
from safety.lockout import Lockout, OK, LOCKED, CAPPED, CONFIRM, vin_key
from safety.supervisor import Supervisor
from gbt.stages import CHARGING
from safety import risk
from store import Store

VIN = b"LSVAB4BR5EN123456"
VIN2 = b"LFV2A21K6A4000001"
# 2024-03-01 10:00 local (UTC+8), Unix epoch seconds
T0 = 1709258400
DAY = 86400


class FakeBoard:
    def write_outputs(self, out):
        pass

    def force_safe(self):
        pass


class MemStore:
    def __init__(self):
        self.data = None

    def load(self):
        return self.data, []

    def save(self, p):
        self.data = bytes(p)
        return True


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
    sup = Supervisor(cfg or {}, clk, FakeBoard(), inp, out, bms, store)
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


def test_corrupt_store_gives_defaults_and_warning():
    ts, bd = _ram_fs()
    try:
        p = ts.MP + "/safety.rec"
        with open(p, "wb") as f:
            f.write(b"garbage" * 10)
        sup, inp, out, bms, clk = make(Store(p))
        mptest.true(len(sup.store_warnings) >= 1, "warned: %r" % sup.store_warnings)
        mptest.eq(sup.start_allowed(VIN, T0)[0], True, "safe defaults: no lock")
        mptest.eq(sup.lock.latched, 0, "no latches")
    finally:
        ts.umount()


if __name__ == "__main__":
    mptest.main(globals())
