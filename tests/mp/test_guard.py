"""rt.guard: exception guards whose frame is made once (the protection
tick, the check ticks and the app's pass run inside them)."""
import gc
import micropython
import mptest
from rt import guard
from board import Inputs, Outputs
from gbt.bmsdata import BmsData
from gbt.stages import CHARGING
from rt.clock import SimClock
from safety import risk
from safety.supervisor import Supervisor
from doubles import SupervisorBoard, MemStore


def test_result_exception_and_no_allocation():
    seen = []

    def fn(x):
        if x == 3:
            raise ValueError("three")
        return x * 2

    g = guard.start(fn, seen.append)
    mptest.eq(g(1), 2, "result")
    mptest.eq(g(3), 0, "an Exception: 0")
    mptest.eq(len(seen), 1, "handed to fail")
    mptest.true(isinstance(seen[0], ValueError), "the exception itself")
    mptest.eq(g(4), 8, "keeps running")
    gc.collect()
    micropython.heap_lock()
    try:
        for i in range(100):
            g(i)
    finally:
        micropython.heap_unlock()


def test_base_exception_ends_the_guard():
    def fn(x):
        if x:
            raise KeyboardInterrupt
        return 1

    g = guard.start(fn, lambda e: None)
    mptest.raises(KeyboardInterrupt, g, 1)
    mptest.raises(StopIteration, g, 0)      # the owner starts a new one
    seen = []
    g = guard.start(fn, seen.append, True)
    mptest.eq(g(1), 0, "base=True: caught too")
    mptest.eq(len(seen), 1, "handed to fail")


def test_protect_tick_survives_a_base_exception():
    # KeyboardInterrupt passes through protect_tick (as it always did) and
    # ends its guard; the next tick starts a new one and works
    inp = Inputs()
    out = Outputs()
    sup = Supervisor({}, SimClock(), SupervisorBoard(), inp, out, BmsData(), MemStore())
    sup.stage = CHARGING
    sup.protect_tick(0)
    real = sup._tick

    def ki(now):
        raise KeyboardInterrupt

    sup._tick = ki
    sup._g_protect = guard.start(sup._tick, sup.fail_safe)
    mptest.raises(KeyboardInterrupt, sup.protect_tick, 2)
    sup._tick = real
    inp.estop = 1
    sup.protect_tick(4)
    mptest.eq(sup.trip_cause, risk.H3, "the next tick runs the protections")
    mptest.eq(sup.failed, False, "not a fail-safe")


mptest.main(globals())
