"""Scheduler and clock on the real micropython binary."""
import micropython
import random
import mptest
from rt.clock import SimClock, TicksClock, ticks_diff
from rt.scheduler import Scheduler
from doubles import lockstep


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
    lockstep(clock, sched, until, sched.run_due)


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


class Log:
    """Records (name, now) of every run into one shared list."""

    def __init__(self, log, name, fail_every=0):
        self.log = log
        self.name = name
        self.fail_every = fail_every
        self.n = 0

    def run(self, now):
        self.n += 1
        self.log.append((self.name, now))
        if self.fail_every and self.n % self.fail_every == 0:
            raise OSError("task %s fails" % self.name)


def _twins(specs, fail=None):
    """The same task set on a table scheduler and on a scan-only one."""
    out = []
    for table in (True, False):
        c = SimClock()
        s = Scheduler(c, table=table)
        log = []
        for name, period, offset in specs:
            f = Log(log, name, (fail or {}).get(name, 0))
            s.add(name, f.run, period, offset_ms=offset)
        s.start(0)
        out.append((c, s, log))
    return out


def _stats(s):
    return [(t.name, t.runs, t.overruns, t.late_max_ms, t.next_due) for t in s.tasks]


def test_table_equals_scan_pass_by_pass():
    # the charger's default table (protect, can, session, records, checks,
    # slow, console), odd sets, late calls of every size, idle polls,
    # tasks that raise: the same runs at the same times, the same stats
    random.seed(11)
    sets = (
        [("protect", 5, 0), ("can", 10, 0), ("session", 10, 1), ("records", 50, 5),
         ("checks", 100, 3), ("slow", 1000, 25), ("console", 10, 5)],
        [("a", 2, 0), ("b", 50, 7)],
        [("a", 3, 1), ("b", 7, 2), ("c", 20, 19), ("d", 1, 0)],
        [("a", 200, 199), ("b", 250, 3)],
        [("x", 4, 2), ("y", 6, 0), ("z", 9, 8)],
    )
    for k, specs in enumerate(sets):
        fail = {specs[0][0]: 7, specs[-1][0]: 5} if k != 3 else {"b": 3}
        (c1, s1, l1), (c2, s2, l2) = _twins(specs, fail)
        mptest.true(s1._tb is not None, "set %d: table built" % k)
        mptest.true(s2._tb is None, "set %d: scan reference" % k)
        t = 0
        nrun = 0
        for step in range(4000):
            r = random.getrandbits(4)
            if r < 9:
                t = max(t, s1.next_due())       # the lock-step loop: on time
            elif r < 13:
                t += random.getrandbits(2)       # idle polls, up to 3 ms late
            else:
                t += random.getrandbits(7)       # busy loop: whole slots missed
            raised = 0
            for c, s in ((c1, s1), (c2, s2)):
                c.advance_to(t)
                try:
                    s.run_due()
                except OSError:
                    raised += 1
            mptest.eq(l1, l2, "set %d step %d: same runs" % (k, step))
            nrun += len(l1)
            del l1[:]
            del l2[:]
            if not raised:
                # (after an exception the scan leaves its earliest-due time
                # behind: the loop calls again at once, and runs nothing)
                mptest.eq(s1.next_due(), s2.next_due(), "set %d step %d: next due" % (k, step))
        mptest.eq(_stats(s1), _stats(s2), "set %d: same statistics" % k)
        mptest.eq(s1.passes, s2.passes, "set %d: same passes" % k)
        mptest.true(nrun > 100, "set %d: %d runs" % (k, nrun))


def test_no_table_for_long_gaps_or_late_tasks():
    # a gap over 255 ms between passes, a task added after start: the scan
    c = SimClock()
    s = Scheduler(c)
    r = Recorder(10)
    s.add("a", r.fn, 1000, offset_ms=999)
    s.start(0)
    mptest.true(s._tb is None, "1 s gap: scan")
    _drive(c, s, 3000)
    mptest.eq(r.t[:3], [999, 1999, 2999], "on time")
    c2 = SimClock()
    s2 = Scheduler(c2)
    a = Recorder(400)
    b = Recorder(400)
    s2.add("a", a.fn, 5)
    s2.start(0)
    mptest.true(s2._tb is not None, "table")
    _drive(c2, s2, 12)
    s2.add("b", b.fn, 10, offset_ms=1)
    mptest.true(s2._tb is None, "a task added after start: scan")
    mptest.eq(s2.tasks[0].next_due, 15, "the table's next due carried over")
    _drive(c2, s2, 1000)
    mptest.eq(a.n, 201, "a kept its grid")
    mptest.eq(a.t[3], 15, "a at 15")


def test_table_builder_is_not_kept_in_ram():
    # rt.schedtable runs once, at start: a board must not keep its code and
    # globals in the heap for the life of the app; a second start loads it again
    import sys
    import rt
    for k in range(2):
        s = Scheduler(SimClock())
        r = Recorder(10)
        s.add("a", r.fn, 5)
        s.start(0)
        mptest.true(s._tb is not None, "start %d: table built" % k)
        mptest.true("rt.schedtable" not in sys.modules, "start %d: dropped from sys.modules" % k)
        mptest.true(not hasattr(rt, "schedtable"), "start %d: dropped from the rt package" % k)




def test_parked_task_is_not_called_and_woken_runs_at_its_next_slot():
    # Scheduler.park (the platform link's sealing task sleeps while nothing
    # waits to be sealed): parked, its slots pass without a call and
    # nothing is counted; woken, it runs at its own next slot.  The same
    # in table mode (the machine-code pass) and scan mode (general path).
    for table in (True, False):
        c = SimClock()
        s = Scheduler(c, table=table)
        a = Recorder(400)
        b = Recorder(400)
        s.add("a", a.fn, 5)
        tb = s.add("b", b.fn, 5, 2)
        s.start()
        _drive(c, s, 50)
        mptest.eq(b.n, 10, "runs every 5 ms (table=%r)" % table)
        s.park(tb)
        _drive(c, s, 100)
        mptest.eq(b.n, 10, "parked: not called (table=%r)" % table)
        mptest.eq(tb.runs, 10, "parked: no run counted")
        mptest.eq(a.n, 21, "the other task runs on (0, 5, .., 100)")
        s.park(tb, 0)
        _drive(c, s, 110)
        mptest.eq(b.n, 12, "woken: runs again")
        mptest.eq(b.t[10], 102, "at its own next slot (offset 2)")


mptest.main(globals())
