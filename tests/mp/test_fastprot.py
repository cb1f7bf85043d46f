"""Hard-protection interrupt path (boards/pinboard/fastprot.py) on the fakes.

Time is counted in timer periods (the fake Timer fires on demand), so every
assertion about "within N ms" is exact and independent of the host."""
import sys
sys.path.insert(0, "boards")
import micropython
import machine
import mptest
import config
from pinboard.fastprot import FastProt, TRIP_OV, TRIP_OC, TRIP_ESTOP, scale, raw_max

V_SCALE = (11000, 65535, 0)        # 0..1100.0 V
I_SCALE = (5000, 65535, -2500)     # +-250 A around mid-scale


def raw_for(value, sc):
    """Smallest raw count that reads >= value."""
    r = raw_max(value - 1, sc[0], sc[1], sc[2]) + 1
    return r


def make(cfg=None, estop=True):
    machine.t_reset()
    P = machine.Pin
    av = machine.ADC(P("A0"))
    ai = machine.ADC(P("A2"))
    es = P("C0", P.IN, P.PULL_UP) if estop else None
    machine.set_level("C0", 0)                  # released
    pwr = P("B0", P.OUT, value=1)
    k12 = P("B1", P.OUT, value=1)
    bl = P("B11", P.OUT, value=0)
    fp = FastProt(av, V_SCALE, ai, I_SCALE, es, 1, pwr, 1, k12, 1, bl, 1)
    c = config.defaults()
    if cfg:
        c.update(cfg)
    fp.configure(c)
    set_v(4000)
    set_i(1000)
    return fp


def set_v(dv):
    machine.set_adc("A0", raw_for(dv, V_SCALE))


def set_i(da):
    machine.set_adc("A2", raw_for(da, I_SCALE))


def test_thresholds_are_exact_integer_limits():
    fp = make()
    # defaults: 750.0 V * 110 % = 825.0 V ; 200.0 A * 120 % = 240.0 A
    mptest.eq(fp.v_limit, 8250, "H-1 limit dV")
    mptest.eq(fp.i_limit, 2400, "H-2 limit dA")
    mptest.true(scale(fp.v_thr, *V_SCALE) <= 8250 < scale(fp.v_thr + 1, *V_SCALE), "v threshold")
    mptest.true(scale(fp.i_thr, *I_SCALE) <= 2400 < scale(fp.i_thr + 1, *I_SCALE), "i threshold")
    mptest.true(scale(fp.i_open, *I_SCALE) < 50 <= scale(fp.i_open + 1, *I_SCALE), "5 A open")
    mptest.eq(fp.deadline_ticks, 74, "100 ms - 20 ms opening - 5 ms margin at 1 ms, one period for detection")
    mptest.eq(fp.notes, [], "no notes")


def test_no_trip_at_the_limit_trip_just_above():
    fp = make()
    set_v(8250)
    fp.isr(None)
    mptest.eq(fp.tripped, 0, "825.0 V is not above 110 %")
    set_v(8251)
    fp.isr(None)
    mptest.eq(fp.tripped, 1, "825.1 V trips")
    mptest.eq(fp.cause, TRIP_OV, "cause")


def test_overvoltage_cuts_power_in_the_same_period_and_opens_at_low_current():
    fp = make()
    set_v(9000)
    set_i(30)                          # 3 A: below the 5 A opening threshold
    t = machine.Timer(-1, period=1, callback=fp.isr_cb)
    t.t_fire(1)
    mptest.eq(machine.level("B0"), 0, "power stage off in the first period")
    mptest.eq(machine.level("B1"), 0, "K1/K2 open at once (current < 5 A)")
    mptest.eq(machine.level("B11"), 1, "bleeder on with the contactors open")
    mptest.true(machine.pin("B0").last_seq < machine.pin("B1").last_seq, "power off first")
    mptest.eq(fp.last_open_ticks, 0, "opened in the trip period")


def test_overcurrent_waits_for_current_below_5A():
    fp = make()
    set_i(2500)                        # 250 A > 240 A
    fp.isr(None)
    mptest.eq(fp.cause, TRIP_OC, "cause")
    mptest.eq(machine.level("B0"), 0, "power off")
    mptest.eq(machine.level("B1"), 1, "K1/K2 still closed: 250 A flowing")
    set_i(800)
    for _ in range(10):
        fp.isr(None)
    mptest.eq(machine.level("B1"), 1, "80 A: still closed")
    set_i(49)
    fp.isr(None)
    mptest.eq(machine.level("B1"), 0, "4.9 A: opened")
    mptest.eq(fp.last_open_ticks, 11, "11 periods after the trip")
    mptest.eq(fp.k_pending, 0, "no longer pending")


def test_contactor_deadline_counts_periods():
    for period, ticks in ((1, 74), (2, 36), (5, 14)):
        fp = make({"hw.prot_period_ms": period})
        set_i(2500)
        fp.isr(None)                   # trip, current stays high
        for _ in range(ticks - 1):
            fp.isr(None)
        mptest.eq(machine.level("B1"), 1, "closed before the deadline (%d ms)" % period)
        fp.isr(None)
        mptest.eq(machine.level("B1"), 0, "open at the deadline (%d ms)" % period)
        # trip seen at most one period after the cause; the contacts need
        # trip.k_release_ms (20) after the command, plus the 5 ms margin
        mptest.true((ticks + 1) * period + 20 + 5 <= 100, "contacts apart within 100 ms of the cause")


def test_estop_pin_interrupt_cuts_immediately():
    fp = make()
    machine.pin("C0").irq(handler=fp.estop_cb, trigger=machine.Pin.IRQ_RISING, hard=True)
    set_i(1500)
    machine.set_level("C0", 1)         # pressed: the pin IRQ runs
    mptest.eq(fp.tripped, 1, "tripped by the pin IRQ")
    mptest.eq(fp.cause, TRIP_ESTOP, "cause")
    mptest.eq(machine.level("B0"), 0, "power off without waiting for the timer")
    mptest.eq(machine.level("B1"), 1, "K1/K2 wait for the timer's current sample")
    set_i(20)
    fp.isr(None)
    mptest.eq(machine.level("B1"), 0, "opened at the next period")


def test_estop_seen_by_timer_too():
    fp = make()
    machine.set_level("C0", 1)         # no pin IRQ configured
    fp.isr(None)
    mptest.eq(fp.cause & TRIP_ESTOP, TRIP_ESTOP, "timer samples the E-stop")


def test_latch_holds_power_off_and_reset_rules():
    fp = make()
    machine.set_level("C0", 1)
    set_i(20)
    fp.isr(None)
    machine.pin("B0").value(1)          # a broken main loop re-enables the stage
    fp.isr(None)
    mptest.eq(machine.level("B0"), 0, "the ISR holds it off while latched")
    mptest.eq(fp.reset(), False, "refused while the E-stop is pressed")
    machine.set_level("C0", 0)
    fp.isr(None)
    mptest.eq(fp.tripped, 1, "still latched after release (H-3)")
    mptest.eq(fp.reset(), True, "operator reset accepted")
    mptest.eq(fp.tripped, 0, "cleared")
    mptest.eq(fp.cause, 0, "cause cleared")


def test_reset_refused_while_contactors_pending():
    fp = make()
    set_i(2500)
    fp.isr(None)
    set_i(2000)                         # below OC but above 5 A
    mptest.eq(fp.reset(), False, "K1/K2 not open yet")


def test_isr_allocates_nothing():
    fp = make()
    machine.pin("C0").irq(handler=fp.estop_cb, trigger=machine.Pin.IRQ_RISING, hard=True)
    cb = fp.isr_cb
    ecb = fp.estop_cb
    cb(None)                            # warm
    micropython.heap_lock()
    try:
        for _ in range(5):
            cb(None)                    # normal
        set_i(2500)
        cb(None)                        # trip, pending
        for _ in range(5):
            cb(None)                    # pending
        set_i(10)
        cb(None)                        # open
        ecb(machine.pin("C0"))          # pin IRQ on a latched trip
        cb(None)
    finally:
        micropython.heap_unlock()
    mptest.eq(fp.cause, TRIP_OC, "trip happened under heap lock")
    mptest.eq(machine.level("B1"), 0, "opened under heap lock")


def test_threshold_beyond_adc_range_makes_saturation_trip():
    fp = make({"rating.max_v": 15000})  # 1650 V > 1100 V full scale
    mptest.eq(len(fp.notes), 1, "a note for the operator")
    mptest.eq(fp.v_thr, 65534, "clamped")
    machine.set_adc("A0", 65535)
    fp.isr(None)
    mptest.eq(fp.cause, TRIP_OV, "saturated ADC trips")


def test_uses_the_software_checks_settings():
    fp = make({"h1.permille": 1050, "h2.permille": 1100, "rating.max_v": 5000})
    mptest.eq((fp.v_limit, fp.i_limit), (5250, 2200), "105 % of 500 V, 110 % of 200 A")


def test_bad_config_values_fall_back_to_defaults():
    fp = make({"h1.permille": 5000, "rating.max_v": "x"})
    mptest.eq(fp.v_limit, 8250, "defaults used")


def test_start_arms_timer_and_pin_irq():
    fp = make({"hw.prot_period_ms": 2})
    t = fp.start(-1, True)
    mptest.eq(t.period, 2, "period from config")
    mptest.eq(t.hard, True, "hard IRQ")
    mptest.true(t.callback is fp.isr_cb, "callback")
    mptest.true(machine.pin("C0").handler is fp.estop_cb, "E-stop pin IRQ")
    fp.stop()
    mptest.eq(t.running, False, "stopped")


mptest.main(globals())
