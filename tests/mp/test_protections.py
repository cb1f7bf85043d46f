"""Hard protections H-1..H-8 (+H-10): thresholds, debounce, activity,
derate, contactor supervision, priority, fuzz."""
import mptest
import random
from board import Inputs, Outputs
from gbt.bmsdata import BmsData
from rt.clock import SimClock
from safety.protections import Protections, K_WELDED, K_NO_CLOSE, K_OK
from safety.supervisor import Supervisor
from gbt.stages import CHARGING
from safety import risk
from doubles import SupervisorBoard, MemStore, live_inputs


def live_prot(cfg=None):
    p = Protections(cfg or {})
    p.track_k(0, 1)
    return p


def test_defaults_from_rating():
    p = Protections({})
    mptest.eq(p.v_max, 8250, "110 % of 750.0 V")
    mptest.eq(p.i_max, 2400, "120 % of 200.0 A")
    mptest.eq(p.ins_min, 75, "100 ohm/V * 750 V = 75 kOhm")
    p = Protections({"rating.max_v": 10000, "h1.permille": 1050})
    mptest.eq(p.v_max, 10500, "config")


def test_h1_overvoltage_threshold_both_sides():
    p = live_prot()
    inp = live_inputs()
    inp.v_inside = 8250
    mptest.eq(p.evaluate(0, inp, True), 0, "at limit")
    inp.v_inside = 8251
    mptest.eq(p.evaluate(2, inp, True), risk.H1, "above")
    inp.v_inside = 4000
    inp.v_outside = 8300
    mptest.eq(p.evaluate(4, inp, True), risk.H1, "vehicle side too")
    mptest.eq(p.value[1], 8300, "value")


def test_h2_overcurrent_magnitude():
    p = live_prot()
    inp = live_inputs()
    inp.i_out = 2400
    mptest.eq(p.evaluate(0, inp, True), 0, "at limit")
    inp.i_out = 2401
    mptest.eq(p.evaluate(2, inp, True), risk.H2, "above")
    inp.i_out = -2500
    mptest.eq(p.evaluate(4, inp, True), risk.H2, "reverse current")


def test_h3_estop_immediate_even_idle():
    p = Protections({})
    inp = Inputs()
    mptest.eq(p.evaluate(0, inp, False), 0, "idle ok")
    inp.estop = 1
    mptest.eq(p.evaluate(2, inp, False), risk.H3, "estop idle")
    mptest.eq(p.t_first, 2, "first seen")


def test_h4_insulation_only_when_live_and_read():
    p = Protections({})
    inp = Inputs()
    inp.insulation_kohm = 10
    mptest.eq(p.evaluate(0, inp, True), 0, "not live: no trip")
    mptest.eq(p.active[4], 0, "inactive")
    p.track_k(0, 1)
    inp.k12_fb = 1
    inp.insulation_kohm = -1
    mptest.eq(p.evaluate(2, inp, True), 0, "no reading: inactive")
    mptest.eq(p.active[4], 0, "inactive without reading")
    inp.insulation_kohm = 75
    mptest.eq(p.evaluate(4, inp, True), 0, "at threshold ok")
    inp.insulation_kohm = 74
    mptest.eq(p.evaluate(6, inp, True), risk.H4, "below threshold")


def test_h5_cc1_band_and_debounce():
    p = live_prot()
    inp = live_inputs()
    for mv in (3200, 4000, 4800):
        inp.cc1_mv = mv
        mptest.eq(p.evaluate(0, inp, True), 0, "in band %d" % mv)
    # 8 ms glitch to 6 V: filtered
    inp.cc1_mv = 6000
    for t in range(10, 18, 2):
        mptest.eq(p.evaluate(t, inp, True), 0, "glitch t=%d" % t)
    inp.cc1_mv = 4000
    mptest.eq(p.evaluate(18, inp, True), 0, "back in band")
    # held: trips after 10 ms
    inp.cc1_mv = 3199
    t = 20
    while not p.evaluate(t, inp, True):
        t += 2
    mptest.eq(t, 30, "tripped 10 ms after first seen")
    mptest.eq(p.t_first, 20, "cause time = first seen")
    inp.cc1_mv = 4801
    p2 = live_prot()
    p2.evaluate(0, inp, True)
    mptest.eq(p2.evaluate(10, inp, True), risk.H5, "above band")


def test_h5_inactive_when_unplugged_idle():
    p = Protections({})
    inp = Inputs()          # cc1 12 V, not charging, K open
    for t in range(0, 100, 2):
        mptest.eq(p.evaluate(t, inp, False), 0, "idle")
    mptest.eq(p.active[5], 0, "inactive")


def test_h6_derate_linear_then_trip():
    p = live_prot()
    inp = live_inputs()
    inp.t_gun_pos = 800
    p.evaluate(0, inp, True)
    mptest.eq(p.current_limit, 2000, "no derate at 80.0 degC")
    inp.t_gun_neg = 850
    p.evaluate(2, inp, True)
    mptest.eq(p.current_limit, 1000, "half at 85.0 degC (either pin)")
    inp.t_gun_neg = 890
    p.evaluate(4, inp, True)
    mptest.eq(p.current_limit, 200, "10 % at 89.0")
    inp.t_gun_neg = 900
    mptest.eq(p.evaluate(6, inp, True), 0, "at trip_t: limited, no trip")
    mptest.eq(p.current_limit, 0, "min")
    inp.t_gun_neg = 901
    mptest.eq(p.evaluate(8, inp, True), risk.H6, "above: trip")


def test_h6_sensor_fault_trips():
    for bad in (-401, 2001, -32768, 32767):
        p = live_prot()
        inp = live_inputs()
        inp.t_gun_pos = bad
        mptest.eq(p.evaluate(0, inp, True), risk.H6, "sensor %d" % bad)
        mptest.eq(p.sensor_fault, 1, "flag")


def test_h6_derate_min_config():
    p = live_prot({"h6.min_dA": 500, "h6.derate_t": 700, "h6.trip_t": 800})
    inp = live_inputs()
    inp.t_gun_pos = 750
    p.evaluate(0, inp, True)
    mptest.eq(p.current_limit, 1250, "500 + 1500/2")


def test_h7_fail_to_close():
    p = Protections({})
    inp = live_inputs()
    p.track_k(0, 1)
    inp.k12_fb = 0
    for t in range(0, 100, 2):
        mptest.eq(p.evaluate(t, inp, True), 0, "closing t=%d" % t)
    t = 100
    while not p.evaluate(t, inp, True):
        t += 2
        mptest.true(t < 200, "never")
    mptest.eq(t, 110, "close_ms + deb_ms")
    mptest.eq(p.k_fault, K_NO_CLOSE, "no close")


def test_h7_welded_on_open():
    p = Protections({})
    inp = live_inputs()
    p.track_k(0, 1)
    p.evaluate(0, inp, True)
    p.track_k(10, 0)           # open command at 10 ms, feedback stays 1
    t = 10
    while not p.evaluate(t, inp, False):
        t += 2
        mptest.true(t < 300, "never")
    mptest.eq(t, 120, "open_ms + deb_ms after the command")
    mptest.eq(p.k_fault, K_WELDED, "welded")


def test_h7_normal_open_close_no_fault():
    p = Protections({})
    inp = live_inputs()
    p.track_k(0, 1)
    for t in range(0, 400, 2):
        inp.k12_fb = 1 if t >= 30 else 0
        mptest.eq(p.evaluate(t, inp, True), 0, "closing normally")
    p.track_k(400, 0)
    for t in range(400, 800, 2):
        inp.k12_fb = 1 if t < 430 else 0
        mptest.eq(p.evaluate(t, inp, False), 0, "opening normally")
    mptest.eq(p.k_fault, K_OK, "ok")


def test_h7_bounce_filtered():
    p = Protections({})
    inp = live_inputs()
    p.track_k(0, 1)
    inp.k12_fb = 1
    for t in range(0, 300, 2):
        inp.k12_fb = 0 if 200 <= t < 206 else 1   # 6 ms bounce
        mptest.eq(p.evaluate(t, inp, True), 0, "bounce t=%d" % t)


def test_h7_voltage_criterion_optional():
    inp = live_inputs()
    inp.k12_fb = 0
    for vc, want in ((0, 0), (1, risk.H7)):
        p = Protections({"h7.v_check": vc})
        p.track_k(0, 0)
        code = 0
        for t in range(0, 200, 2):
            code = code or p.evaluate(t, inp, False)
        mptest.eq(code, want, "v_check=%d (inside follows outside)" % vc)


def test_h8_leakage():
    p = Protections({})
    inp = Inputs()
    inp.leakage_ma = 30
    mptest.eq(p.evaluate(0, inp, False), 0, "30 mA ok")
    inp.leakage_ma = 31
    mptest.eq(p.evaluate(2, inp, False), risk.H8, "31 mA trips, even idle")


def test_h10_mains_only_when_live():
    p = Protections({})
    inp = Inputs()
    inp.mains_ok = 0
    mptest.eq(p.evaluate(0, inp, False), 0, "idle")
    mptest.eq(p.evaluate(40, inp, False), 0, "idle")
    p.track_k(40, 1)
    inp.k12_fb = 1
    inp.cc1_mv = 4000
    p.evaluate(42, inp, True)
    mptest.eq(p.evaluate(62, inp, True), risk.H10, "live, 20 ms")


def test_priority_estop_first():
    p = live_prot()
    inp = live_inputs()
    inp.leakage_ma = 100
    inp.v_inside = 9000
    inp.estop = 1
    mptest.eq(p.evaluate(0, inp, True), risk.H3, "estop wins")
    inp.estop = 0
    p2 = live_prot()
    mptest.eq(p2.evaluate(0, inp, True), risk.H8, "then leakage")


def test_fuzz_never_raises():
    random.seed(7)
    edges = (-1, 0, 1, -32768, 32767, 65535, -(2 ** 30), 2 ** 30 - 1, 2 ** 40, -(2 ** 40))
    names = ("v_inside", "v_outside", "i_out", "cc1_mv", "insulation_kohm", "t_gun_pos",
             "t_gun_neg", "estop", "k12_fb", "leakage_ma", "mains_ok")
    p = Protections({})
    inp = Inputs()
    t = 0
    for n in range(3000):
        for nm in names:
            r = random.getrandbits(3)
            if r == 0:
                v = edges[random.getrandbits(4) % len(edges)]
            else:
                v = random.getrandbits(16) - 20000
            setattr(inp, nm, v)
        if n % 7 == 0:
            p.track_k(t, random.getrandbits(1))
        code = p.evaluate(t, inp, random.getrandbits(1))
        mptest.true(code == 0 or 101 <= code <= 110, "code %d" % code)
        mptest.true(p.current_limit <= 2000 and p.current_limit >= 0, "limit %d" % p.current_limit)
        t += 2


def _sup():
    clk = SimClock()
    inp = live_inputs()
    out = Outputs()
    bms = BmsData()
    st = MemStore()
    board = SupervisorBoard()
    sup = Supervisor({}, clk, board, inp, out, bms, st)
    sup.stage = CHARGING            # H-12: outputs on are allowed
    return sup, inp, out, st, board, clk


def test_supervisor_derate_caps_setpoint():
    sup, inp, out, st, board, clk = _sup()
    out.k12 = 1
    out.pwr_en = 1
    out.i_set = 2000
    inp.t_gun_pos = 850
    sup.protect_tick(0)
    mptest.eq(sup.current_limit, 1000, "limit published")
    mptest.eq(out.i_set, 1000, "set-point capped")
    mptest.eq(sup.tripped, False, "no trip while derating")


def test_supervisor_contactor_fault_latched_and_persisted():
    sup, inp, out, st, board, clk = _sup()
    out.k12 = 1
    out.pwr_en = 1
    out.i_set = 1000
    sup.protect_tick(0)
    inp.k12_fb = 0        # contactor dropped out while commanded closed
    t = 2
    while not sup.tripped and t < 400:
        out.k12 = 1
        sup.protect_tick(t)
        t += 2
    mptest.eq(sup.trip_cause, risk.H7, "H-7")
    mptest.true(sup.events.find(risk.EV_LATCH, risk.H7) >= 0, "latch event")
    sup.slow_tick(t, 1000)
    ok, why = sup.start_allowed(b"VIN", 1000)
    mptest.eq(ok, False, why)
    # reboot: the latch survives
    sup2 = Supervisor({}, clk, board, inp, Outputs(), BmsData(), st)
    ok, why = sup2.start_allowed(b"VIN", 1000)
    mptest.eq(ok, False, "after reboot: " + why)
    sup2.out.k12 = 1
    sup2.out.pwr_en = 1
    sup2.protect_tick(t)
    mptest.eq(sup2.out.pwr_en, 0, "held off after reboot")
    mptest.eq(sup2.trip_cause, risk.H7, "boot cause")
    mptest.true(sup2.clear_contactor_fault(), "operator clears")
    sup2.slow_tick(t, 1000)
    sup3 = Supervisor({}, clk, board, inp, Outputs(), BmsData(), st)
    mptest.eq(sup3.lock.latched, 0, "cleared persisted")


def test_supervisor_welded_after_trip_refuses_clear():
    sup, inp, out, st, board, clk = _sup()
    out.k12 = 1
    out.pwr_en = 1
    sup.protect_tick(0)
    inp.estop = 1
    inp.i_out = 0
    sup.protect_tick(2)
    mptest.eq(out.k12, 0, "opened")
    t = 4
    while t < 300:                 # feedback stays closed: welded
        sup.protect_tick(t)
        t += 2
    mptest.eq(sup.prot.k_fault, K_WELDED, "welded")
    mptest.true(sup.lock.latched & 2, "contactor latch")
    mptest.eq(sup.clear_contactor_fault(), False, "refused while fb still closed")


def test_config_cross_checks():
    import config
    import safety.supervisor    # registers every safety schema
    cfg, err = config.load(overrides={})
    mptest.eq(err, [], "defaults valid")
    for bad, word in (({"h5.lo_mv": 5000}, "h5.lo_mv"), ({"h6.derate_t": 950}, "h6.derate_t"),
                      ({"lockout.mode": "maybe"}, "lockout.mode"), ({"h1.permille": 900}, "h1.permille")):
        cfg, err = config.load(overrides=bad)
        mptest.true(len(err) == 1 and word in err[0], "%r -> %r" % (bad, err))


def test_kernel_equals_reference_on_random_ticks():
    """The viper kernel against the Python it replaced (tests/mp/protref.py),
    tick by tick: random configurations (debounces, H-7 voltage criterion,
    H-7/H-10 off), inputs near every threshold and at the 32-bit edges,
    K1/K2 commands, charging on/off, time steps of 0..12 ms.  Same code,
    same t_first, same on/active flags, values, K1/K2 fault, sensor fault
    and current limit after every tick (on unix: x64 code; on the target:
    armv7m)."""
    from refimpl import RefProtections
    random.seed(27)
    big = 2 ** 31 - 1
    for run in range(12):
        cfg = {}
        for key, hi in (("h1.deb_ms", 8), ("h2.deb_ms", 20), ("h3.deb_ms", 20),
                        ("h4.deb_ms", 20), ("h5.deb_ms", 40), ("h6.deb_ms", 30),
                        ("h7.deb_ms", 30), ("h8.deb_ms", 20), ("h10.deb_ms", 60)):
            cfg[key] = random.getrandbits(6) % (hi + 1) if run else 0
        cfg["h7.v_check"] = run % 2
        cfg["h7.enable"] = 0 if run % 5 == 4 else 1
        cfg["h10.enable"] = 0 if run % 7 == 6 else 1
        cfg["h6.min_dA"] = (0, 500, 3000)[run % 3]
        k = Protections(cfg)
        r = RefProtections(cfg)
        near = {"v_inside": (8250, 600), "v_outside": (8250, 600), "i_out": (2400, 2500),
                "cc1_mv": (3200, 4800), "insulation_kohm": (75, -1),
                "t_gun_pos": (800, 900), "t_gun_neg": (-400, 2000), "estop": (0, 1),
                "k12_fb": (0, 1), "leakage_ma": (30, 31), "mains_ok": (1, 0)}
        inp = live_inputs()
        t = 1000 * run
        kc = 0
        for n in range(2000):
            if random.getrandbits(5) == 0:
                inp = live_inputs()                # back to normal: conditions end
                inp.k12_fb = kc
            for nm, (a, b) in near.items():
                m = random.getrandbits(6)
                if m == 0:
                    v = (big, -big, 0, -1, 1)[random.getrandbits(3) % 5]
                elif m < 5:
                    v = (a, b)[m & 1] + (random.getrandbits(2) - 1)
                    if nm == "estop":
                        v = 1 if m == 1 else 0
                else:
                    continue                       # held: lets debounces run out
                setattr(inp, nm, v)
            if random.getrandbits(4) == 0:
                kc = random.getrandbits(1)
                k.track_k(t, kc)
                r.track_k(t, kc)
            ch = random.getrandbits(1)
            ck = k.evaluate(t, inp, ch)
            cr = r.evaluate(t, inp, ch)
            where = "run %d tick %d t=%d" % (run, n, t)
            mptest.eq(ck, cr, where + ": code")
            if cr:
                mptest.eq(k.t_first, r.t_first, where + ": t_first")
            mptest.eq(bytes(k.on), bytes(r.on), where + ": on")
            mptest.eq(bytes(k.active), bytes(r.active), where + ": active")
            mptest.eq(list(k.value), r.value, where + ": values")
            mptest.eq((k.k_fault, k.sensor_fault, k.current_limit),
                      (r.k_fault, r.sensor_fault, r.current_limit), where + ": state")
            t += random.getrandbits(4) % 13


if __name__ == "__main__":
    mptest.main(globals())
