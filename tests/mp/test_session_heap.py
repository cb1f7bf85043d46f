"""The charging hot path allocates nothing: ~10 s of simulated charging
(BCL every 50 ms, BCS as TP every 250 ms, BSM every 250 ms in; CCS every
50 ms out) under micropython.heap_lock()."""
import micropython
import mptest
from mptest import eq, true
from bmsscript import Bench, bcl, bcs, bsm
from gbt import ids
from doubles import can_frame


def test_charging_hot_path_allocates_nothing():
    b = Bench()
    b.wait_stage("charging", 10000)
    b.run(6000)                                   # ramped up, steady state
    eq(b.stage(), "charging", "charging")
    s = b.session
    link = b.link
    plant = b.plant
    inp = b.inp
    out = b.out
    clock = b.clock
    f_bcl = can_frame(ids.ID_BCL, bcl(4100, 1000))
    f_bsm = can_frame(ids.ID_BSM, bsm())
    payload = bcs(3500, 1000)
    f_rts = can_frame(ids.ID_TPCM_RX, bytes([0x10, 9, 0, 2, 0xFF, 0x00, 0x11, 0x00]))
    f_dt1 = can_frame(ids.ID_TPDT_RX, bytes([1]) + payload[:7])
    f_dt2 = can_frame(ids.ID_TPDT_RX, bytes([2]) + payload[7:] + b"\xff" * 5)
    b.capture = False
    b.lean = True
    n0 = b.n_sent
    ccs0 = s.tx.sent[5]
    bcs0 = link.tp.completed
    now = b.now
    steps = 1000                                  # 10 s
    micropython.heap_lock()
    try:
        for k in range(steps):
            now += 10
            clock.advance_to(now)
            plant.update(out, inp)
            if k % 5 == 0:
                link.on_frame(now, f_bcl)
            if k % 25 == 0:
                link.on_frame(now, f_rts)         # CTS goes out through send()
                link.on_frame(now, f_dt1)
                link.on_frame(now, f_dt2)
            if k % 25 == 12:
                link.on_frame(now, f_bsm)
            link.poll(now)
            s.tick(now)
    finally:
        micropython.heap_unlock()
    b.now = now
    eq(b.stage(), "charging", "still charging")
    eq(s.tx.sent[5] - ccs0, steps // 5, "CCS every 50 ms")
    eq(link.tp.completed - bcs0, steps // 25, "every BCS reassembled")
    true(b.n_sent - n0 >= steps // 5 + 2 * steps // 25, "CCS + CTS + EndOfMsgAck sent")
    eq(out.i_set, 1000, "following BCL")
    eq(s.cem, 0, "no timeout")


def test_energy_accumulator_stays_small():
    from gbt.control import Control
    from gbt.sessioncfg import SessionConfig
    c = Control(SessionConfig({}))
    micropython.heap_lock()
    try:
        for k in range(100000):                   # 1000 s at 1000 V x 1000 A
            c.integrate(10000, 10000, 10, True)
    finally:
        micropython.heap_unlock()
    eq(c.energy_wh, 277777, "1 MW for 1000 s")
    true(c._e_mj < 3600000, "remainder below 1 Wh")
    eq(c.minutes(), 16, "minutes")


def test_charge_step_is_limit_ramp_v_limit_integrate():
    """Control.charge_step (viper, the session's hot path) computes exactly
    what limit + ramp + v_limit + integrate compute, and allocates nothing."""
    from gbt.control import Control
    from gbt.sessioncfg import SessionConfig

    class B:
        pass
    cfg = SessionConfig({})
    a = Control(cfg)
    c = Control(cfg)
    b = B()
    x = 12345
    for k in range(3000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        b.req_i = (x % 5000) - 200           # some NA (< 0)
        b.max_i = ((x >> 4) % 4000) - 100
        b.req_v = ((x >> 8) % 9000) - 100
        b.max_v = ((x >> 12) % 9000) - 100
        i_cap = (x >> 3) % 3000
        v = ((x >> 6) % 25000) - 500         # beyond the clamps both ways
        i = ((x >> 9) % 14000) - 500
        dt = ((x >> 2) % 130) - 10
        up = (x >> 5) % 3000
        down = (x >> 7) % 20000
        demand = (x >> 11) & 1
        t = a.limit(b, i_cap, v) if demand else 0
        want = a.ramp(t, dt, up, down)
        want_v = a.v_limit(b)
        a.integrate(v, i, dt, True)
        micropython.heap_lock()
        try:
            got = c.charge_step(b, i_cap, v, i, dt, up, down, demand)
        finally:
            micropython.heap_unlock()
        eq((got, c.v_set, c.target, c.i_m, c.energy_wh, c._e_mj, c.charge_ms),
           (want, want_v, a.target, a.i_m, a.energy_wh, a._e_mj, a.charge_ms), "step %d" % k)


mptest.main(globals())
