"""Scheduler and clock on the real micropython binary."""
import micropython
import mptest
from rt.clock import SimClock, TicksClock, ticks_diff
from rt.scheduler import Scheduler


class Recorder:
    def __init__(self, n):
        self.t = [0] * n
        self.n = 0
        self.fn = self.run          # bound method created once

    def run(self, now):
        if self.n < len(self.t):
            self.t[self.n] = now
        self.n += 1


def _drive(clock, sched, until):
    # the SIL board's lock-step loop in miniature: jump to the next due time
    while True:
        nd = sched.next_due()
        if nd > until:
            break
        clock.advance_to(nd)
        sched.run_due()
    clock.advance_to(until)


def test_raising_task_does_not_stay_due():
    # an exception inside a task (H-9) leaves it scheduled for its next
    # slot: the loop that catches it calls run_due again, which must not
    # re-run the failing task at the same time forever
    c = SimClock()
    s = Scheduler(c)
    calls = [0]

    def bad(now):
        calls[0] += 1
        raise OSError("driver fault")

    other = Recorder(200)
    s.add("bad", bad, 5)
    s.add("other", other.fn, 10, offset_ms=1)
    s.start(0)
    passes = 0
    while c.ms < 1000 and passes < 10000:
        c.advance_to(s.next_due())
        try:
            s.run_due()
        except OSError:
            pass
        passes += 1
    mptest.true(c.ms >= 1000, "time advances (%d passes)" % passes)
    mptest.eq(calls[0], 1000 // 5 + 1, "the failing task runs once per period")
    mptest.eq(other.n, 100, "the other task keeps its 10 ms period")


def test_periods_exact_in_sim_time():
    c = SimClock()
    s = Scheduler(c)
    fast = Recorder(600)
    slow = Recorder(30)
    s.add("fast", fast.fn, 2)
    s.add("slow", slow.fn, 50, offset_ms=7)
    s.start(0)
    _drive(c, s, 1000)
    mptest.eq(fast.n, 501, "2 ms task runs at 0,2,..,1000")
    mptest.eq(slow.n, 20, "50 ms task at 7,57,..,957")
    for i in range(1, 20):
        mptest.eq(slow.t[i] - slow.t[i - 1], 50, "period")
    mptest.eq(slow.t[0], 7, "offset")


def test_overrun_counted_and_no_catch_up_burst():
    c = SimClock()
    s = Scheduler(c)
    r = Recorder(10)
    t = s.add("t", r.fn, 10)
    s.start(0)
    s.run_due()                  # t=0
    c.advance_to(35)             # the loop was stuck for 35 ms
    s.run_due()
    mptest.eq(r.n, 2, "one run, not a burst of 3 missed ones")
    mptest.eq(t.overruns, 1, "late by 25 ms >= deadline 10 ms")
    mptest.eq(t.next_due, 40, "back on the 10 ms grid")


def test_order_is_priority():
    c = SimClock()
    s = Scheduler(c)
    order = []
    s.add("a", lambda now: order.append("a"), 10)
    s.add("b", lambda now: order.append("b"), 10)
    s.start(0)
    s.run_due()
    mptest.eq(order, ["a", "b"])


def test_wcet_measured():
    c = SimClock()
    s = Scheduler(c)

    def busy(now):
        x = 0
        for i in range(2000):
            x += i

    t = s.add("busy", busy, 5)
    s.start(0)
    s.run_due()
    mptest.true(t.wcet_us > 0, "wcet recorded")
    mptest.true(s.pass_wcet_us >= t.wcet_us, "pass wcet covers the task")


def test_hot_path_no_allocation():
    c = SimClock()
    s = Scheduler(c)
    a = Recorder(10)
    b = Recorder(10)
    s.add("a", a.fn, 2)
    s.add("b", b.fn, 10, offset_ms=1)
    s.start(0)
    micropython.heap_lock()
    try:
        for ms in range(0, 5000):
            c.advance_to(ms)
            s.run_due()
            s.next_due()
    finally:
        micropython.heap_unlock()
    mptest.eq(a.n, 2500, "runs under heap_lock")


def test_ticks_clock_moves():
    c = TicksClock()
    t0 = c.ticks_ms()
    import time
    time.sleep_ms(5)
    mptest.true(ticks_diff(c.ticks_ms(), t0) >= 5)


mptest.main(globals())
