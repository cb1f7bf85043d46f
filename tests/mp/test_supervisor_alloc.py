"""protect_tick and check_tick allocate nothing: run them under
micropython.heap_lock() with every S-check active, through raises, a
level-II stop, derating, a level-III trip and the whole trip sequence.

An allocation inside a tick raises MemoryError, which the supervisor
turns into fail-safe (H-9): so "not failed" plus the expected behaviour
is the proof."""
import mptest
import micropython
from board import Inputs, Outputs
from gbt.bmsdata import BmsData
from rt.clock import SimClock
from safety.supervisor import Supervisor
from gbt.stages import CHARGING
from safety import risk
from safety.trip import SAFE
from doubles import SupervisorBoard, MemStore, supervise, charging_bms


CFG = {"s9.interval_ms": 1000, "s11.sample_ms": 1000, "risk.events": 16}


def setup():
    clk = SimClock()
    inp = Inputs()
    out = Outputs()
    bms = charging_bms(BmsData(), soc=80, max_cell_v=460, cell_min_v=390)
    inp.v_inside = 4000
    inp.v_outside = 4000
    inp.i_out = 2000
    inp.cc1_mv = 4000
    inp.insulation_kohm = 5000
    inp.k12_fb = 1
    board = SupervisorBoard()
    sup = Supervisor(CFG, clk, board, inp, out, bms, MemStore())
    sup.vin = b"LSVAB4BR5EN123456"
    sup.soc_start = 800
    sup.stage = CHARGING            # H-12: outputs on are allowed
    return sup, inp, out, bms, board


class Plant:
    """Session-like commands and slowly moving BMS values, one step per
    supervisor tick (``step``: bound once, before the heap is locked)."""

    def __init__(self, sup, inp, out, bms):
        self.sup = sup
        self.inp = inp
        self.out = out
        self.bms = bms
        self.t0 = 0
        self.phase = 0

    def step(self, t):
        sup = self.sup              # (one at a time: a 4-tuple would allocate)
        inp = self.inp
        out = self.out
        bms = self.bms
        if not sup.tripped:
            out.k12 = 1
            out.pwr_en = 1
            out.i_set = 2000
            out.v_set = 4100
        elif out.k12:
            inp.i_out = inp.i_out - 300 if inp.i_out > 300 else 0
        else:
            inp.i_out = 0
            inp.v_outside = inp.v_outside - 40 if inp.v_outside > 40 else 0
            inp.k12_fb = 0
        if t % 1000 == 0:
            # cells rise (dV never zero for S-9), temperature creeps up
            bms.cells.bmv_max_v += 2
            bms.cell_max_v = bms.cells.bmv_max_v
            bms.cells.cell_min_v += 2
        if self.phase == 1 and t == self.t0 + 1000:
            bms.meas_v = 3800          # S-5 -> level II
            inp.t_gun_pos = 850        # H-6 derate
        if self.phase == 2 and t == self.t0:
            bms.max_i = 1800           # S-3: 200 A > 100.5 % of 180 A -> level III


def drive(plant, step, t0, t1, phase):
    """``plant`` from ``t0`` to ``t1`` in ``phase`` (``step`` its bound
    ``step``); no allocation."""
    plant.t0 = t0
    plant.phase = phase
    return supervise(plant.sup, t0, t1, step)


def test_ticks_allocation_free_all_checks_active():
    sup, inp, out, bms, board = setup()
    sup.charging = True
    p = Plant(sup, inp, out, bms)
    step = p.step
    micropython.heap_lock()
    try:
        t = drive(p, step, 0, 8000, 0)
    finally:
        micropython.heap_unlock()
    mptest.eq(sup.failed, False, "no MemoryError (would be fail-safe): %r" % (sup.last_exc,))
    for i in range(1, 14):
        st = sup.check_diag(i)
        mptest.true(st[0] in ("OK", "PENDING", "RAISED"),
                    "S-%d active, got %s (%s)" % (i, st[0], st[1]))
    micropython.heap_lock()
    try:
        t = drive(p, step, t, t + 7000, 1)
        n_after_stop = sup.events.seq
        t = drive(p, step, t, t + 7000, 2)
        # ring wraps many times: nothing allocates
        for k in range(40):
            sup.events.add(t, risk.EV_RAISE, 1, 2, k)
    finally:
        micropython.heap_unlock()
    mptest.eq(sup.failed, False, "no MemoryError: %r" % (sup.last_exc,))
    mptest.eq(sup.stop_request, 5, "level II stop raised under the lock")
    mptest.eq(sup.current_limit, 0, "tripped: limit 0")
    mptest.true(n_after_stop > 0, "events")
    mptest.eq(sup.trip_cause, 3, "level III trip under the lock")
    mptest.eq(sup.trip.state, SAFE, "trip sequence completed")
    mptest.eq((out.pwr_en, out.k12), (0, 0), "outputs off")
    mptest.true(sup.trip.t_k12_open - sup.trip.t_cause <= 100, "K open in time")
    mptest.eq(board.forced, 0, "no force_safe")


def test_idle_ticks_allocation_free():
    sup, inp, out, bms, board = setup()
    inp.k12_fb = 0
    inp.cc1_mv = 12000
    micropython.heap_lock()
    try:
        supervise(sup, 0, 2000)
    finally:
        micropython.heap_unlock()
    mptest.eq(sup.failed, False, "no MemoryError: %r" % (sup.last_exc,))
    mptest.eq(sup.tripped, False, "idle")


def test_lock_is_really_enforced():
    # guard against a test that cannot fail: allocation under the lock fails
    micropython.heap_lock()
    try:
        ok = False
        try:
            x = [1, 2, 3]
        except MemoryError:
            ok = True
    finally:
        micropython.heap_unlock()
    mptest.true(ok, "heap_lock works on this build")


if __name__ == "__main__":
    mptest.main(globals())
