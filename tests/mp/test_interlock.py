"""Supervisor rules that do not trust the session: H-11 (BCL/BCS freshness
while current flows), H-12 (output interlock per stage), and the H-9
fail-safe when the protection tick itself raises.  Everything is read
back from what the board was given (``SupervisorBoard``: the outputs actually
applied) and from the supervisor's events; allocation-free under
micropython.heap_lock()."""
import micropython
import mptest
from mptest import eq, true
from board import Inputs, Outputs
from gbt.bmsdata import BmsData
from gbt import stages as S
from rt.clock import SimClock
from safety.supervisor import Supervisor
from safety import interlock
from safety import risk
from doubles import SupervisorBoard, MemStore, live_inputs


def make(cfg=None, stage=S.CHARGING):
    clk = SimClock()
    inp = Inputs()
    out = Outputs()
    live_inputs(inp)
    board = SupervisorBoard()
    sup = Supervisor(cfg or {}, clk, board, inp, out, BmsData(), MemStore())
    sup.stage = stage
    sup.charging = stage == S.CHARGING
    return sup, inp, out, board


def app_tick(sup, out, board, now):
    """What the app does every protection tick: the supervisor, then the write."""
    sup.protect_tick(now)
    board.write_outputs(out)


def charge_cmd(out, i=1000):
    out.k12 = 1
    out.pwr_en = 1
    out.v_set = 4100
    out.i_set = i


# -------------------------------------------------------------- H-12
def test_interlock_table_is_the_documented_one():
    want = {S.INSULATION: (True, True, False), S.PRECHARGE: (True, True, False),
            S.CHARGING: (True, True, False), S.REHANDSHAKE: (True, True, True),
            S.STOPPING: (True, True, True)}
    for st in range(len(S.STAGE_NAMES)):
        eq(interlock.allowed(st), want.get(st, (False, False, False)), S.STAGE_NAMES[st])


def test_interlock_trips_in_every_stage_that_forbids_output():
    for st in range(len(S.STAGE_NAMES)):
        k_ok, p_ok, timed = interlock.allowed(st)
        for k, p in ((1, 0), (0, 1), (1, 1)):
            sup, inp, out, board = make(stage=st)
            inp.i_out = 0
            inp.k12_fb = 0
            app_tick(sup, out, board, 0)
            out.k12 = k              # e.g. from the console: app.out.k12 = 1
            out.pwr_en = p
            out.v_set = 7500
            app_tick(sup, out, board, 5)
            bad = (k and not k_ok) or (p and not p_ok)
            what = "%s k12=%d pwr_en=%d" % (S.STAGE_NAMES[st], k, p)
            eq(sup.tripped, bad, what)
            if bad:
                eq(sup.trip_cause, risk.H12, what)
                eq((board.k12, board.pwr), (0, 0), "never applied: " + what)
                s = sup.events.find(risk.EV_RAISE, risk.H12)
                true(s >= 0, "event " + what)
                e = [0] * 5
                sup.events.read(s, e)
                eq(e[4], st * 100 + 10 * k + p, "event value = stage, K1/K2, power")
            else:
                eq((board.k12, board.pwr), (k, p), "allowed: " + what)


def test_interlock_open_after_closed_k12_follows_the_trip_path():
    # K1/K2 were closed and carrying current when the stage stopped allowing
    # them (e.g. the session fell to DONE without opening): power off at once,
    # K1/K2 held until the current is below 5 A (no opening under load)
    sup, inp, out, board = make()
    charge_cmd(out)
    app_tick(sup, out, board, 0)
    eq((board.k12, board.pwr), (1, 1), "charging")
    sup.stage = S.DONE
    app_tick(sup, out, board, 5)
    eq(sup.trip_cause, risk.H12, "tripped")
    eq((board.pwr, board.k12), (0, 1), "power off, K1/K2 held at 100 A")
    inp.i_out = 20
    app_tick(sup, out, board, 10)
    eq(board.k12, 0, "opened below 5 A")


def test_interlock_stopping_is_time_limited():
    sup, inp, out, board = make()
    charge_cmd(out)
    app_tick(sup, out, board, 0)
    sup.stage = S.STOPPING              # entered at t = 5
    t = 5
    while t <= 5 + 1500:
        app_tick(sup, out, board, t)
        t += 5
    eq(sup.tripped, False, "h12.stop_ms (1500) not exceeded")
    app_tick(sup, out, board, t)
    eq(sup.trip_cause, risk.H12, "output still on 1505 ms after entering stopping")
    eq(board.pwr, 0, "power off")
    # with the session's normal behaviour (off within open_wait_ms) nothing trips
    sup, inp, out, board = make()
    charge_cmd(out)
    app_tick(sup, out, board, 0)
    sup.stage = S.STOPPING
    for t in range(5, 1005, 5):
        app_tick(sup, out, board, t)
    out.k12 = 0
    out.pwr_en = 0
    inp.i_out = 0
    inp.k12_fb = 0
    for t in range(1005, 5000, 5):
        app_tick(sup, out, board, t)
    eq(sup.tripped, False, "normal stop")


def test_interlock_config_cross_check():
    import config
    import gbt.sessioncfg        # noqa: F401  (session.open_wait_ms)
    import charger               # noqa: F401  (sched.session_ms, whole schema)
    cfg, err = config.load(overrides={})
    eq(err, [], "defaults valid")
    cfg, err = config.load(overrides={"h12.stop_ms": 1000})
    true(len(err) == 1 and "h12.stop_ms" in err[0], err)


# -------------------------------------------------------------- H-11
def h11_rig(cfg=None):
    sup, inp, out, board = make(cfg)
    lo = [-1] * 0x28               # the link's last_ok
    sup.rx_times = lo
    return sup, inp, out, board, lo


def run(sup, inp, out, board, lo, t0, t1, bcl=True, bcs=True, session=True):
    """Protection tick every 5 ms, check tick every 100 ms; the BMS refreshes
    BCL every 50 ms / BCS every 250 ms while ``bcl``/``bcs``; a 'session'
    that believes everything is fine keeps commanding 100 A."""
    t = t0
    while t < t1:
        if bcl and t % 50 == 0:
            lo[0x10] = t
        if bcs and t % 250 == 0:
            lo[0x11] = t
        if session and not sup.tripped:
            charge_cmd(out)
        # plant: the current follows what the board applied, the K1/K2
        # auxiliary contacts follow the coil
        inp.i_out = board.i_set if (board.pwr and board.k12) else 0
        inp.k12_fb = board.k12
        app_tick(sup, out, board, t)
        if t % 100 == 0:
            sup.check_tick(t)
        t += 5
    return t


def test_h11_bcl_silent_cuts_current_then_trips():
    sup, inp, out, board, lo = h11_rig()
    t = run(sup, inp, out, board, lo, 0, 3000)
    eq(sup.tripped, False, "fresh data: charging")
    eq(board.i_set, 1000, "full current")
    t_last = 2950                               # last BCL
    t_cut = -1
    while t < 6000 and not sup.tripped:
        t = run(sup, inp, out, board, lo, t, t + 5, bcl=False)
        if t_cut < 0 and sup.h11_on:
            t_cut = t - 5
    true(t_cut > 0, "current cut")
    true(1000 < t_cut - t_last <= 1100, "cut at BCL age 1000..1100 ms: %d" % (t_cut - t_last))
    s = sup.events.find(risk.EV_RAISE, risk.H11)
    e = [0] * 5
    sup.events.read(s, e)
    eq((e[3], e[4]), (2, 0x10), "raise H-11 level II, BCL")
    eq(sup.trip_cause, risk.H11, "then trip")
    true(500 <= sup.trip.t_cause - t_cut <= 600, "trip h11.stop_ms after the cut: %d"
         % (sup.trip.t_cause - t_cut))
    eq((board.pwr, board.k12, board.i_set), (0, 0, 0), "output off, K1/K2 open")
    eq(sup.cst_fault, 0x400, "CST fault: other")


def test_h11_current_is_cut_on_the_board_within_one_protection_tick():
    sup, inp, out, board, lo = h11_rig()
    t = run(sup, inp, out, board, lo, 0, 2000)
    t = run(sup, inp, out, board, lo, t, 3100, bcl=False)
    true(sup.h11_on, "cut")
    eq(board.i_set, 0, "set-point 0 on the board although the session asks 100 A")
    eq(board.pwr, 1, "not yet stopped")


def test_h11_bcs_silent_5s():
    sup, inp, out, board, lo = h11_rig()
    t = run(sup, inp, out, board, lo, 0, 2005)        # last BCS at 2000
    t = run(sup, inp, out, board, lo, t, 2000 + 5000, bcs=False)
    eq(sup.h11_on, 0, "BCS 4900 ms old at the last check tick: not yet")
    t = run(sup, inp, out, board, lo, t, t + 200, bcs=False)
    eq(sup.h11_on, 1, "BCS older than 5 s")
    eq(sup.h11_pf, 0x11, "BCS")


def test_h11_never_received_counts_from_current_start():
    # BCL arrived long before the current started (e.g. right after BRO 0xAA),
    # BCS never: the ages count from the start of the current
    sup, inp, out, board, lo = h11_rig()
    lo[0x10] = 0
    t = run(sup, inp, out, board, lo, 0, 900, bcl=False, bcs=False, session=False)
    eq(sup.h11_on, 0, "no current: nothing to do")
    t_flow = t
    while t < 5000 and not sup.h11_on:
        t = run(sup, inp, out, board, lo, t, t + 5, bcl=False, bcs=False)
    # the start of the current is sampled by the 100 ms check tick, the age
    # too: at most two check ticks after the 1 s limit
    true(1000 < t - t_flow <= 1000 + 2 * 100 + 5, "cut 1 s after the current started: %d"
         % (t - t_flow))


def test_h11_session_that_stops_itself_does_not_trip():
    # the session's own timeout opens K1/K2 right after the cut: no trip,
    # the cut ends (clear event) and the next session can charge again
    sup, inp, out, board, lo = h11_rig()
    t = run(sup, inp, out, board, lo, 0, 2000)
    while not sup.h11_on:
        t = run(sup, inp, out, board, lo, t, t + 5, bcl=False)
    out.k12 = 0
    out.pwr_en = 0
    t = run(sup, inp, out, board, lo, t, t + 1000, bcl=False, session=False)
    eq(sup.tripped, False, "no trip")
    eq(sup.h11_on, 0, "cut released with the output off")
    true(sup.events.find(risk.EV_CLEAR, risk.H11) >= 0, "clear event")
    t = run(sup, inp, out, board, lo, t, t + 2000)
    eq((board.pwr, board.k12, board.i_set), (1, 1, 1000), "charging again with fresh data")


def test_h11_and_h12_allocate_nothing():
    sup, inp, out, board, lo = h11_rig({"risk.events": 8})
    t = run(sup, inp, out, board, lo, 0, 2000)
    micropython.heap_lock()
    try:
        t = run(sup, inp, out, board, lo, t, t + 3000, bcl=False)     # cut, then trip
    finally:
        micropython.heap_unlock()
    eq(sup.failed, False, "no MemoryError: %r" % (sup.last_exc,))
    eq(sup.trip_cause, risk.H11, "H-11 trip under the lock")
    sup, inp, out, board = make(stage=S.DONE)
    inp.i_out = 0
    micropython.heap_lock()
    try:
        for t in range(0, 500, 5):
            out.k12 = 1
            out.pwr_en = 1
            app_tick(sup, out, board, t)
            if t % 100 == 0:
                sup.check_tick(t)
    finally:
        micropython.heap_unlock()
    eq(sup.failed, False, "no MemoryError: %r" % (sup.last_exc,))
    eq(sup.trip_cause, risk.H12, "H-12 trip under the lock")


# -------------------------------------------------------------- H-9
def test_exception_inside_protect_tick_forces_the_board_safe():
    """Issue 10 item 13: an exception inside the protection tick.  The
    board itself is driven safe (force_safe) in that very tick, before the
    app writes anything: the outputs the hardware holds are off."""
    sup, inp, out, board = make()
    charge_cmd(out)
    app_tick(sup, out, board, 0)
    eq((board.k12, board.pwr), (1, 1), "charging")
    inp.v_inside = None             # a broken measurement: comparisons raise
    sup.protect_tick(5)             # (no app write after it)
    eq(sup.failed, True, "H-9 latched")
    eq((board.k12, board.pwr, board.i_set, board.bleed), (0, 0, 0, 1),
       "the board is safe right after the failing tick")
    eq(board.forced, 1, "force_safe")
    eq((out.k12, out.pwr_en), (0, 0), "outputs safe")


mptest.main(globals())
