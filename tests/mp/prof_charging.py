"""Profile of the charging stage on any port (not a test: a measurement).

Brings the real ChargerApp to steady charging on the in-process rig
(apprig.Rig), then times, with ``time.ticks_us`` (on the QEMU board under
``-icount shift=0``: thousands of instructions, exact), each task of the
app and the pieces of the hot paths, and prints one line per item:
``PROF name runs total min max``.  Run on the target with
``python -m host_tools.bench --target qemu --profile``.
"""
import time
from bmsscript import bcl, bcs, bsm
from gbt import ids
from gbt import messages as m
from apprig import Rig, tmpdir
from board import CanFrame

us = time.ticks_us
dt = time.ticks_diff
R = {}


def rec(name, t):
    r = R.get(name)
    if r is None:
        R[name] = [1, t, t, t]
    else:
        r[0] += 1
        r[1] += t
        if t < r[2]:
            r[2] = t
        if t > r[3]:
            r[3] = t


def timed(name, fn, *a):
    t0 = us()
    x = fn(*a)
    rec(name, dt(us(), t0))
    return x


def main():
    r = Rig(tmpdir("prof"))
    for _ in range(3000):
        r.step()
        if r.stage() == "charging":
            break
    for _ in range(500):
        r.step()
    app = r.app
    assert app.halted is None and r.stage() == "charging", (app.halted, r.stage())
    # per task: wrap every task function
    fns = {}
    for t in app.sched.tasks:
        fn = t.fn
        fns[t.name] = fn
        name = "task." + t.name

        def w(now, fn=fn, name=name):
            t0 = us()
            fn(now)
            rec(name, dt(us(), t0))
        t.fn = w
    # worst runs: when, and in which stage of the task's own work
    sched = app.sched
    rd = sched.run_due

    def run_due_w(now=None):
        t0 = us()
        n = rd(now)
        if n:
            rec("sched.pass", dt(us(), t0))
        return n
    app.sched.run_due = run_due_w
    for _ in range(1000):           # 10 s of charging through the whole app
        r.step()
    app.sched.run_due = rd
    # pieces: one frame through the link, the decoder, the handler
    f = CanFrame()
    link = app.link
    sess = app.session
    sup = app.sup
    now = r.now
    for name, cid, data in (("BCL", ids.ID_BCL, bcl(4100, 1000)), ("BSM", ids.ID_BSM, bsm())):
        f.id = cid
        f.dlc = len(data)
        for i in range(len(data)):
            f.data[i] = data[i]
        pgn = (cid >> 8) & 0xFF00
        for _ in range(20):
            timed("frame." + name + ".link", link.on_frame, now, f)
            timed("frame." + name + ".decode", m.decode, pgn, f.data, f.dlc, app.bms)
            timed("frame." + name + ".handler", sess.on_message, now, pgn, 0)
    for _ in range(20):
        timed("session.tick", sess.tick, now)
        now += 10
        r.board.clock.advance_to(now)
    for _ in range(20):
        timed("protect.read_inputs", r.board.read_inputs, app.inp)
        timed("protect.evaluate", sup.prot.evaluate, now, app.inp, sup.charging)
        timed("protect.write_outputs", r.board.write_outputs, app.out)
        timed("checks.app_checks", app._checks, now)        # staleness + head (S-1..S-4)
        timed("checks.mid", sup.check_mid, now)             # S-5..S-9
        timed("checks.tail", sup.check_tail, now)           # S-10..S-13
        timed("records.app", app._records, now)
        timed("sup.protect_tick", sup.protect_tick, now)
        timed("sup.check_tick", sup.check_tick, now)
        timed("tel.tick", app.tel.tick, now, sess.stage)
        now += 50
        r.board.clock.advance_to(now)
    # the scheduler's own cost: the tasks unwrapped, every pass timed from
    # outside; overhead = pass time - what the scheduler measured for its
    # tasks (run_due's own work: due lookup, per-task statistics)
    for t in app.sched.tasks:
        t.fn = fns[t.name]
    r.now = now
    tot0 = sum(t.total_us for t in sched.tasks)
    npass = 0
    ptot = 0
    pmax = 0
    clock = r.board.clock
    for _ in range(1000):
        r.now += 10
        r.plant.update(app.out, r.board.meas)
        r.board.meas.k12_fb = app.out.k12
        while True:
            nd = sched.next_due()
            if nd > r.now:
                break
            clock.advance_to(nd)
            t0 = us()
            x = app.run_due(clock.ms)      # as the SIL board's loop calls it
            d = dt(us(), t0)
            if x:
                npass += 1
                ptot += d
    tot1 = sum(t.total_us for t in sched.tasks)
    ov = ptot - (tot1 - tot0)
    R["sched.overhead_per_pass"] = [npass, ov, ov // npass, ov // npass]
    # the check tick, piece by piece (steady charging)
    ctx = sup.ctx
    now = r.now
    for _ in range(20):
        now += 100
        r.board.clock.advance_to(now)
        timed("checks.ctx_integrate", ctx.integrate, now)
        timed("checks.h11", sup._h11, now)
        for c in sup.checks:
            timed("checks.S%02d.eval" % c.ID, c.eval, ctx, now)
        for c in sup.checks:
            timed("checks.risk_step", sup.risk.step, c.ID, 0, now)
    # one garbage collection with the app's heap at charging
    import gc
    for _ in range(5):
        timed("gc.collect", gc.collect)
    for k in sorted(R):
        n, tot, lo, hi = R[k]
        print("PROF %s %d %d %d %d" % (k, n, tot, lo, hi))
    print("PROFDONE")


main()
