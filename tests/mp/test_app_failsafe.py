"""H-9 in the real app when the protection task itself raises (issue 10
item 13): ``ChargerApp`` on the in-process fake board (tests/mp/apprig.py)
charging against the scripted BMS, then the board's input driver fails on
every read.  Read back: what reached the hardware (the fake board's last
write / force_safe), scheduler passes one by one, the app's texts."""
import mptest
from mptest import eq, true
from apprig import Rig, tmpdir


def charging_rig(name):
    r = Rig(tmpdir(name))
    for _ in range(3000):
        r.step()
        if r.stage() == "charging":
            break
    eq(r.stage(), "charging", "reached charging (texts %r)" % (r.board.texts,))
    for _ in range(300):
        r.step()
    b = r.board
    eq((b.k12, b.pwr), (1, 1), "charging: K1/K2 closed, power stage on")
    true(b.i_set > 0, "current set")
    return r


def one_pass(r):
    clock = r.board.clock
    clock.advance_to(r.app.sched.next_due())
    r.app.run_due()


def first_failing_pass(r):
    r.board.fail_reads = True
    n = 0
    while r.app.halted is None and n < 10:
        one_pass(r)
        n += 1
    true(r.app.halted is not None and r.app.halted.startswith("exception: OSError"),
         "halted: %r" % r.app.halted)


def test_exception_in_protection_task_board_safe_in_that_pass():
    r = charging_rig("fs1")
    b = r.board
    app = r.app
    sched = app.sched
    first_failing_pass(r)
    # the pass in which the protection task raised has returned: nothing else
    # has run since, and the hardware is already safe
    eq((b.k12, b.pwr, b.i_set, b.k34, b.bleed), (0, 0, 0, 0, 1), "board safe in the failing pass")
    true(b.forced >= 1, "force_safe")
    # no livelock: time moves on although every input read still raises, the
    # other tasks keep running, the outputs stay safe, one fail-safe text
    runs0 = dict((t.name, t.runs) for t in sched.tasks)
    clock = b.clock
    t0 = clock.ms
    n = 0
    while clock.ms < t0 + 2000 and n < 5000:
        one_pass(r)
        n += 1
    true(clock.ms >= t0 + 2000, "time advances (%d passes, at %d ms)" % (n, clock.ms - t0))
    for t in sched.tasks:
        true(t.runs - runs0[t.name] >= 2000 // t.period - 1, "task %s keeps running" % t.name)
    eq((b.k12, b.pwr, b.i_set), (0, 0, 0), "still safe")
    eq(len([x for x in b.texts if x.startswith("fail-safe ")]), 1, "one fail-safe, not one per tick")


def test_app_fail_safe_does_not_depend_on_the_supervisor():
    # the supervisor may be the broken part: the app's own fail-safe still
    # drives the board safe in the failing pass
    r = charging_rig("fs2")
    b = r.board

    def broken(exc=None):
        raise RuntimeError("supervisor state corrupt")

    r.app.sup.fail_safe = broken
    first_failing_pass(r)
    eq((b.k12, b.pwr, b.i_set, b.k34, b.bleed), (0, 0, 0, 0, 1), "board safe in the failing pass")


mptest.main(globals())
