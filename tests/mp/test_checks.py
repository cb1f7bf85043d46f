"""S-1..S-13: conditions at their limits, INACTIVE reasons, persistence and
release on the simulated clock, levels and their actions, events, fuzz."""
import mptest
import random
from board import Inputs, Outputs
from gbt.bmsdata import BmsData, NA
from rt.clock import SimClock
from safety import checks as C
from safety.checks import Ctx, TRUE, FALSE, INACTIVE
from safety.supervisor import Supervisor
from gbt.stages import CHARGING
from safety import risk
from doubles import SupervisorBoard, MemStore, supervise, live_inputs, charging_bms


def normal_bms(b):
    charging_bms(b)                             # 4.20 V cell limit, SOC 50 %


def normal_inp(inp):
    live_inputs(inp, i_out=2000)                # 400 V, 200 A, K1/K2 closed


def ctx():
    b = BmsData()
    i = Inputs()
    normal_bms(b)
    normal_inp(i)
    c = Ctx(b, i)
    c.soc0 = 500
    return c


def _kind(i):
    return lambda cfg: C.Check(cfg, i)


S1, S2, S3, S4, S5, S6, S7, S8, S9, S10, S11, S12, S13 = [_kind(i) for i in range(1, 14)]


def ev(cls, c, cfg=None, now=0):
    k = cls(cfg or {})
    return k.eval(c, now), k


def test_all_ok_on_normal_values():
    c = ctx()
    for i in range(1, C.N_CHECKS + 1):
        r, k = ev(_kind(i), c)
        mptest.eq(k.ID, i, "id")
        mptest.true(r != TRUE, "%s false on normal values (%d)" % (C.NAME[i - 1], r))


def test_s1_limit():
    c = ctx()
    c.bms.req_i = 2487
    mptest.eq(ev(S1, c)[0], FALSE, "2487 <= 99.5 % of 2500")
    c.bms.req_i = 2488
    r, k = ev(S1, c)
    mptest.eq(r, TRUE, "2488")
    mptest.eq((k.value, k.limit), (2488, 2487), "diag")
    c.bms.max_i = NA
    r, k = ev(S1, c)
    mptest.eq((r, k.why), (INACTIVE, "BCP max_i NA"), "NA")
    c.bms.max_i = 0
    mptest.eq(ev(S1, c)[0], INACTIVE, "zero max")
    c.bms.max_i = 2500
    c.stale = C.STALE_BCL
    r, k = ev(S1, c)
    mptest.eq((r, k.why), (INACTIVE, "BCL/BCP stale"), "stale")


def test_s2_deviation_and_floor():
    c = ctx()
    c.bms.meas_i = 2030
    mptest.eq(ev(S2, c)[0], FALSE, "30 dA = 1.5 % of 2000")
    c.bms.meas_i = 2031
    mptest.eq(ev(S2, c)[0], TRUE, "31 dA")
    c.bms.meas_i = 1969
    mptest.eq(ev(S2, c)[0], TRUE, "other sign")
    c.inp.i_out = 100
    c.bms.meas_i = 108
    mptest.eq(ev(S2, c)[0], FALSE, "below 1 A floor")
    c.bms.meas_i = 111
    mptest.eq(ev(S2, c)[0], TRUE, "above floor and 1.5 %")
    c.bms.meas_i = NA
    mptest.eq(ev(S2, c)[0], INACTIVE, "NA")


def test_s2_a_ramp_is_not_a_deviation():
    """BCS reports a measurement taken up to ~1 s earlier: while the output
    ramps at 20 A/s, the lag (here 0.5 s = 10 A) must not raise S-2; the
    same 10 A on a steady current must."""
    c = ctx()
    k = S2({})
    raised = 0
    hist = [200] * 5                         # what the BMS measured, 5 ticks late
    for t in range(40):                      # 4 s of 100 ms check ticks
        i = 200 + 20 * t if t >= 10 else 200     # steady 20 A, then +2 A per tick
        hist.append(i)
        c.inp.i_out = i
        c.bms.meas_i = hist[-6]              # 0.5 s behind: 10 A during the ramp
        if k.eval(c, t * 100) == TRUE:
            raised += 1
    mptest.eq(raised, 0, "ramp + lag never raises")
    for t in range(40, 60):                  # steady: the 10 A gap is real
        c.inp.i_out = 1000
        c.bms.meas_i = 900
        r = k.eval(c, t * 100)
    mptest.eq(r, TRUE, "steady 10 A off at 100 A")


def test_s3_s6_limits():
    c = ctx()
    c.inp.i_out = 2512
    mptest.eq(ev(S3, c)[0], FALSE, "2512")
    c.inp.i_out = 2513
    mptest.eq(ev(S3, c)[0], TRUE, "2513 > 100.5 % of 2500")
    c.inp.v_outside = 7537
    mptest.eq(ev(S6, c)[0], FALSE, "7537")
    c.inp.v_outside = 7538
    mptest.eq(ev(S6, c)[0], TRUE, "7538")
    c.bms.max_v = NA
    mptest.eq(ev(S6, c)[0], INACTIVE, "NA")


def test_s4_s5_limits():
    c = ctx()
    c.bms.req_v = 7462
    mptest.eq(ev(S4, c)[0], FALSE, "7462")
    c.bms.req_v = 7463
    mptest.eq(ev(S4, c)[0], TRUE, "7463 > 99.5 % of 7500")
    c.bms.meas_v = 3950
    mptest.eq(ev(S5, c)[0], FALSE, "5.0 V")
    c.bms.meas_v = 3949
    mptest.eq(ev(S5, c)[0], TRUE, "5.1 V")
    c.bms.meas_v = NA
    r, k = ev(S5, c)
    mptest.eq((r, k.why), (INACTIVE, "BCS meas_v NA"), "NA")


def test_s7_cell_over_from_bcs_or_bmv():
    c = ctx()
    c.bms.cell_max_v = 422
    mptest.eq(ev(S7, c)[0], FALSE, "4.22 <= 100.5 % of 4.20")
    c.bms.cell_max_v = 423
    mptest.eq(ev(S7, c)[0], TRUE, "4.23")
    c.bms.cell_max_v = NA
    c.bms.cells.bmv_max_v = 425
    mptest.eq(ev(S7, c)[0], TRUE, "from BMV only")
    c.bms.cells.bmv_max_v = NA
    r, k = ev(S7, c)
    mptest.eq((r, k.why), (INACTIVE, "cell max (BCS/BMV) NA"), "both NA")


def test_s8_spread():
    c = ctx()
    c.bms.cells.bmv_max_v = 415
    mptest.eq(ev(S8, c)[0], FALSE, "0.20 V")
    c.bms.cells.bmv_max_v = 416
    mptest.eq(ev(S8, c)[0], TRUE, "0.21 V")
    c.bms.cells.cell_min_v = NA
    r, k = ev(S8, c)
    mptest.eq((r, k.why), (INACTIVE, "BMV cell_min_v NA"), "no BMV: inactive")


def test_s9_dqdv_no_division_by_zero():
    c = ctx()
    c.bms.soc = 80
    k = S9({})
    mptest.eq(k.eval(c, 0), INACTIVE, "first interval")
    mptest.eq(k.eval(c, 30000), INACTIVE, "running")
    # one minute later: +3.33 Ah, highest cell +0.05 V, lowest +0.00 V
    c.cah = 333
    c.bms.cells.bmv_max_v = 405
    mptest.eq(k.eval(c, 60000), INACTIVE, "dV1 = 0: not evaluable")
    mptest.eq(k.why, "dV too small", "why")
    # next minute: both move, dQ/dV2 = 66.6, dQ/dV1 = 166.5 Ah/V: 99.9 apart
    c.cah = 666
    c.bms.cells.bmv_max_v = 410
    c.bms.cells.cell_min_v = 397
    mptest.eq(k.eval(c, 120000), FALSE, "99.9 Ah/V <= 100")
    mptest.eq(k.value, 999, "value 0.1 Ah/V")
    mptest.eq(k.eval(c, 150000), FALSE, "holds between samples")
    c.cah = 1000
    c.bms.cells.bmv_max_v = 415
    c.bms.cells.cell_min_v = 398     # dQ 3.34 Ah: /0.05 = 66.8, /0.01 -> below min_dv
    mptest.eq(k.eval(c, 180000), INACTIVE, "dV1 0.01 < min_dv")
    c.cah = 1400
    c.bms.cells.bmv_max_v = 420
    c.bms.cells.cell_min_v = 400     # 4.00 Ah: /0.05 = 80, /0.02 = 200 -> 120 Ah/V
    mptest.eq(k.eval(c, 240000), TRUE, "120 Ah/V > 100")
    c.bms.soc = 60
    mptest.eq(k.eval(c, 250000), INACTIVE, "SOC <= 70")
    c.bms.soc = 80
    c.bms.req_mode = 1
    mptest.eq(k.eval(c, 250000), INACTIVE, "CV mode")


def test_s9_negative_and_huge_dv_no_exception():
    c = ctx()
    c.bms.soc = 90
    k = S9({"s9.interval_ms": 1000})
    k.eval(c, 0)
    c.cah = 10 ** 6
    c.bms.cells.bmv_max_v = 0
    c.bms.cells.cell_min_v = 65535
    r = k.eval(c, 1000)
    mptest.true(r in (TRUE, FALSE, INACTIVE), "defined")


def test_s10_overtemp():
    c = ctx()
    c.bms.temp_max = 55
    mptest.eq(ev(S10, c)[0], FALSE, "55 = max")
    c.bms.temp_max = 56
    mptest.eq(ev(S10, c)[0], TRUE, "56")
    c.bms.temp_max = NA
    c.bms.cells.bmt_max = 57
    mptest.eq(ev(S10, c)[0], TRUE, "BMT only")
    c.bms.cells.bmt_max = NA
    mptest.eq(ev(S10, c)[0], INACTIVE, "both NA")
    c.bms.temp_max = 10
    c.bms.max_temp = NA
    mptest.eq(ev(S10, c)[0], INACTIVE, "BCP NA")


def test_s11_rate_per_minute():
    c = ctx()
    k = S11({})
    t = 0
    temp = 30
    # 6 samples: window not full
    for n in range(6):
        c.bms.temp_max = temp
        mptest.eq(k.eval(c, t), INACTIVE, "filling %d" % n)
        t += 10000
    c.bms.temp_max = 32        # +2 degC in 60 s = 2.0 degC/min
    mptest.eq(k.eval(c, t), FALSE, "2.0 not above 2.0")
    mptest.eq(k.value, 20, "rate 0.1 degC/min")
    mptest.eq(k.eval(c, t + 5000), FALSE, "held between samples")
    t += 10000
    c.bms.temp_max = 34        # window now 30..34 over 60 s (first 30 dropped)
    mptest.eq(k.eval(c, t), TRUE, "4.0 degC/min")
    c.bms.temp_max = NA
    mptest.eq(k.eval(c, t + 10000), INACTIVE, "NA restarts the window")


def test_s12_soc_over_100():
    c = ctx()
    c.bms.soc = 100
    c.bms.bcp_soc = 1000
    mptest.eq(ev(S12, c)[0], FALSE, "100 %")
    c.bms.soc = 101
    mptest.eq(ev(S12, c)[0], TRUE, "BCS 101 %")
    c.bms.soc = 50
    c.bms.bcp_soc = 1001
    mptest.eq(ev(S12, c)[0], TRUE, "BCP 100.1 %")
    c.bms.soc = NA
    c.bms.bcp_soc = NA
    mptest.eq(ev(S12, c)[0], INACTIVE, "NA")


def test_s13_estimate_from_energy():
    c = ctx()
    c.inp.v_outside = 4000
    c.inp.i_out = 1500          # 400 V * 150 A = 60 kW
    c.reset(0)
    for t in range(100, 360001, 100):
        c.integrate(t)
    mptest.eq(c.wh, 6000, "6 min at 60 kW = 6 kWh")
    mptest.eq(c.cah, 1500, "150 A * 0.1 h = 15.00 Ah")
    c.bms.soc = 60              # 50 % + 6 / 60 kWh = 60 %
    r, k = ev(S13, c)
    mptest.eq((r, k.value), (FALSE, 0), "matches")
    c.bms.soc = 70
    mptest.eq(ev(S13, c)[0], FALSE, "10.0 % = limit")
    c.bms.soc = 71
    mptest.eq(ev(S13, c)[0], TRUE, "11 % off")
    c.bms.energy = NA
    c.bms.rated_ah = 1500       # 150 Ah
    c.bms.rated_v = 4000        # 400 V -> 60 kWh
    mptest.eq(ev(S13, c)[0], TRUE, "rated energy from BRM")
    c.bms.rated_ah = NA
    r, k = ev(S13, c)
    mptest.eq((r, k.why), (INACTIVE, "rated energy NA"), "NA")


def test_integrate_stalled_and_implausible():
    c = ctx()
    c.reset(0)
    c.inp.i_out = 2000
    c.integrate(60000)          # stalled a minute: counted as 5 s at most
    mptest.true(c.wh < 2000, "clamped dt")
    c.inp.v_outside = 99999
    w = c.wh
    c.integrate(60100)
    mptest.eq(c.wh, w, "implausible sample skipped")


# ---------------------------------------------------------------- supervisor
def make(cfg=None):
    clk = SimClock()
    inp = Inputs()
    out = Outputs()
    bms = BmsData()
    normal_bms(bms)
    normal_inp(inp)
    board = SupervisorBoard()
    sup = Supervisor(cfg or {}, clk, board, inp, out, bms, MemStore())
    sup.vin = b"LSVAB4BR5EN123456"
    sup.charging = True
    sup.stage = CHARGING            # H-12: outputs on are allowed
    out.k12 = 1
    out.pwr_en = 1
    return sup, inp, out, bms, clk


run = supervise          # the supervisor's ticks, 2 ms apart (doubles)
_CELL_FIELDS = ("bmv_max_v", "cell_min_v", "bmt_max")     # BmsData.cells (BMV/BMT)


def test_persistence_5s_then_stop_request():
    sup, inp, out, bms, clk = make()
    run(sup, 0, 1000)
    bms.req_i = 2600           # S-1 from t = 1000
    seen = [-1]

    def hook(t):
        if seen[0] < 0 and sup.stop_request:
            seen[0] = t
        if t == 3000:
            st = sup.check_diag(1)
            mptest.eq(st[0], "PENDING", "pending")
            mptest.eq(st[2], 1000, "since")
    run(sup, 1000, 7000, hook)
    mptest.eq(seen[0], 6002, "raised at 6000 (5 s after first true sample)")
    mptest.eq(sup.stop_request, 1, "stop request = S-1")
    mptest.eq(sup.tripped, False, "level II does not trip")
    mptest.eq(sup.cst_reason, 0x10, "reason fault")
    mptest.eq(sup.cst_fault, 0x400, "other fault")
    s = sup.events.find(risk.EV_RAISE, 1)
    e = [0] * 5
    sup.events.read(s, e)
    mptest.eq(e, [6000, risk.EV_RAISE, 1, 2, 2600], "event t, kind, id, level, value")
    mptest.eq(sup.check_diag(1)[0], "RAISED", "raised")


def test_short_condition_never_raises():
    sup, inp, out, bms, clk = make()

    def hook(t):
        bms.req_i = 2600 if (t // 1000) % 6 < 5 else 2000   # 4.9..5 s on, 1 s off
    run(sup, 0, 30000, hook)
    mptest.eq(sup.stop_request, 0, "never 5 s continuous")
    mptest.eq(sup.events.find(risk.EV_RAISE), -1, "no event")


def test_release_after_release_time():
    sup, inp, out, bms, clk = make({"risk.release_ms": 3000})
    bms.cells.cell_min_v = 370       # S-8 spread 0.30 V
    run(sup, 0, 6000)
    mptest.eq(sup.check_diag(8)[0], "RAISED", "raised")
    bms.cells.cell_min_v = 395
    run(sup, 6000, 8900)
    mptest.eq(sup.check_diag(8)[0], "RAISED", "still raised before release")
    run(sup, 8900, 9200)
    mptest.eq(sup.check_diag(8)[0], "OK", "released 3 s after the condition went false")
    s = sup.events.find(risk.EV_CLEAR, 8)
    mptest.true(s >= 0, "clear event")
    e = [0] * 5
    sup.events.read(s, e)
    mptest.eq(e[0], 9000, "cleared at 9000")


def test_raised_stays_raised_when_input_vanishes():
    sup, inp, out, bms, clk = make({"risk.release_ms": 1000})
    bms.cells.cell_min_v = 370
    run(sup, 0, 6000)
    bms.cells.cell_min_v = NA
    run(sup, 6000, 10000)
    st = sup.check_diag(8)
    mptest.eq(st[0], "RAISED", "no evidence it is gone")
    mptest.eq(st[1], "BMV cell_min_v NA", "why shown")


def test_level3_check_trips_within_100ms_of_raise():
    # BCP limit 100 A, charger rating 300 A: only S-3 fires, not H-2
    sup2, inp2, out2, bms2, clk2 = make({"rating.max_i": 3000})
    bms2.max_i = 1000
    inp2.i_out = 1100          # 110 A > 100.5 % of 100 A

    def hook(t):
        if not sup2.tripped:
            inp2.i_out = 1100
        elif out2.k12 == 1:
            inp2.i_out = max(0, inp2.i_out - 200)   # stage ramps off
        out2.k12 = 1 if not sup2.tripped else out2.k12
    t = 0
    k_open = -1
    while t < 7000:
        hook(t)
        sup2.protect_tick(t)
        if t % 100 == 0:
            sup2.check_tick(t)
        if sup2.tripped and k_open < 0 and out2.k12 == 0:
            k_open = t
        t += 2
    mptest.eq(sup2.trip_cause, 3, "S-3")
    mptest.eq(sup2.trip_name, "S-3 charging overcurrent", "name")
    mptest.eq(sup2.trip.t_cause, 5000, "raised 5 s after first sample at 0")
    mptest.eq(sup2.trip.t_pwr_off, 5000, "power off at the raise")
    mptest.true(0 <= k_open - 5000 <= 100, "K1/K2 open %d ms after raise" % (k_open - 5000))
    mptest.eq(sup2.cst_error, 0x01, "current error")


def test_level1_warn_only_and_level0_disabled():
    sup, inp, out, bms, clk = make({"risk.level.s5": 1, "risk.level.s4": 0})
    bms.meas_v = 3800          # S-5 20 V off
    bms.req_v = 7600           # S-4 (disabled)
    run(sup, 0, 6000)
    mptest.eq(sup.stop_request, 0, "no stop")
    mptest.eq(sup.tripped, False, "no trip")
    mptest.eq(sup.warn_count, 1, "one warning")
    mptest.true(sup.events.find(risk.EV_RAISE, 5) >= 0, "event")
    mptest.eq(sup.check_diag(4)[:2], ("INACTIVE", "disabled"), "disabled")


def test_stale_bits_make_checks_inactive():
    sup, inp, out, bms, clk = make()
    sup.stale = C.STALE_BCS
    run(sup, 0, 200)
    mptest.eq(sup.check_diag(2)[:2], ("INACTIVE", "BCS/output stale"), "S-2")
    mptest.eq(sup.check_diag(5)[:2], ("INACTIVE", "BCS/output stale"), "S-5")
    mptest.eq(sup.check_diag(1)[0], "OK", "S-1 unaffected")


def test_not_charging_inactive_and_reset():
    sup, inp, out, bms, clk = make()
    bms.req_i = 2600
    run(sup, 0, 3000)
    mptest.eq(sup.check_diag(1)[0], "PENDING", "pending")
    sup.charging = False
    run(sup, 3000, 3200)
    mptest.eq(sup.check_diag(1)[:2], ("INACTIVE", "not charging"), "reset at end")
    sup.charging = True
    run(sup, 3200, 8000)
    mptest.eq(sup.stop_request, 0, "persistence restarted at 3200")
    run(sup, 8000, 8400)
    mptest.eq(sup.stop_request, 1, "raised at 8200")


def test_soc_start_from_bcp_and_s13_in_supervisor():
    sup, inp, out, bms, clk = make()
    mptest.eq(sup.ctx.soc0, -1, "not started")
    run(sup, 0, 200)
    mptest.eq(sup.ctx.soc0, 500, "from BCP")
    bms.soc = 75               # 25 % above the estimate
    run(sup, 200, 5600)
    mptest.eq(sup.stop_request, 13, "S-13")


def test_fuzz_checks_never_raise():
    random.seed(11)
    edges = (NA, 0, 1, -2, 255, 65535, -(2 ** 30), 2 ** 30 - 1, 2 ** 40)
    fields = ("max_i", "req_i", "max_v", "req_v", "req_mode", "meas_v", "meas_i",
              "max_cell_v", "cell_max_v", "bmv_max_v", "cell_min_v", "max_temp",
              "temp_max", "bmt_max", "soc", "bcp_soc", "energy", "rated_ah", "rated_v")
    ins = ("v_outside", "i_out")
    for cfg in ({}, {"s9.interval_ms": 1000, "s11.sample_ms": 1000, "risk.persist_ms": 0,
                     "risk.release_ms": 0}):
        sup, inp, out, bms, clk = make(cfg)
        t = 0
        for n in range(600):
            for f in fields:
                r = random.getrandbits(3)
                v = edges[random.getrandbits(4) % len(edges)] if r == 0 else random.getrandbits(12)
                setattr(bms.cells if f in _CELL_FIELDS else bms, f, v)
            for f in ins:
                setattr(inp, f, random.getrandbits(15) - 1000)
            sup.stale = random.getrandbits(7) if n % 5 == 0 else 0
            sup.check_tick(t)
            mptest.eq(sup.failed, False, "no exception at n=%d" % n)
            for i in range(1, 14):
                mptest.true(sup.checks[i - 1].why != "error in check", "check %d raised" % i)
            t += 100


def test_integrate_equals_reference():
    """Ctx.integrate (machine code) against the Python it replaced
    (tests/mp/refimpl.py): random currents of both signs (floor division),
    voltages, time steps (0, stalled > 5 s), implausible samples, the wh
    clamp; the same integrators after every step."""
    from refimpl import ref_integrate

    class P:
        pass
    random.seed(5)
    for run in range(4):
        inp = Inputs()
        c = Ctx(BmsData(), inp)
        r = P()
        r.inp = inp
        c.reset(100)
        r._last = 100
        r.wh = r.cah = r._wacc = r._qacc = 0
        t = 100
        for n in range(3000):
            m = random.getrandbits(4)
            inp.i_out = (random.getrandbits(15) - 12000) if m else (random.getrandbits(1) * 30000 - 15000)
            inp.v_outside = random.getrandbits(14) if m != 1 else 16000
            if run == 3:
                inp.i_out = 10000
                inp.v_outside = 15000           # toward the wh clamp
            t += (0, 1, 7, 100, 100, 250, 6000, 100)[random.getrandbits(3)] if run != 3 else 5000
            c.integrate(t)
            ref_integrate(r, t)
            mptest.eq((c.wh, c.cah, c._wacc, c._qacc, c._last),
                      (r.wh, r.cah, r._wacc, r._qacc, r._last), "run %d step %d" % (run, n))
    mptest.eq(c.wh, 1000000, "clamped")


if __name__ == "__main__":
    mptest.main(globals())
