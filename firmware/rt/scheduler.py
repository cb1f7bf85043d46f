"""A time-triggered cooperative scheduler.

Tasks have a fixed period and an offset (so that tasks of the same period do
not all land on the same tick).  Each pass runs every task that is due, in
the order they were added (add the protection tick first: order is
priority).  A task that starts later than its deadline (by default its
period) counts as an overrun; a task is never run twice to catch up, since
a catch-up burst is exactly what a real-time loop must avoid.  A task that
raises has already been given its next slot (the exception propagates to
the caller, the H-9 handler, and the task is not re-run at once).

Per task, real execution time is measured with ``time.ticks_us``: worst
case, last, and run/overrun counters, read by the console's ``sched``
command.  ``run_due`` allocates nothing.
"""
import gc
from micropython import const
from rt.clock import ticks_diff, ticks_add, cpu_us

_mem_alloc = gc.mem_alloc
# "no task due before": an initial value for the earliest-due search that
# any real due time beats (ticks_diff stays exact up to 2**29 ms)
_FAR = const(1 << 28)


class Task:
    def __init__(self, name, fn, period_ms, offset_ms, deadline_ms):
        self.name = name
        self.fn = fn
        self.period = period_ms
        self.deadline = deadline_ms
        self.offset = offset_ms
        self.next_due = offset_ms
        self.runs = 0
        self.overruns = 0
        self.late_max_ms = 0
        self.wcet_us = 0
        self.last_us = 0
        self.total_us = 0   # modulo 2**30: read as differences
        self.alloc_bytes = 0  # heap bytes allocated by this task (alloc_stats only)
        self.alloc_max = 0


class Scheduler:
    def __init__(self, clock):
        self.clock = clock
        self._ticks_ms = clock.ticks_ms    # bound once: read every pass
        self.tasks = []
        self.passes = 0
        self.pass_wcet_us = 0
        self.started = False
        # Diagnostics/benchmarks: count heap bytes each task allocates
        # (gc.mem_alloc deltas; a pass in which the GC ran is not counted).
        self.alloc_stats = False
        self._next = None       # cached earliest next_due (None = recompute)

    def add(self, name, fn, period_ms, offset_ms=0, deadline_ms=0):
        """Register a periodic task; call before ``start``."""
        t = Task(name, fn, period_ms, offset_ms, deadline_ms or period_ms)
        self.tasks.append(t)
        self._next = None
        return t

    def start(self, now_ms=None):
        now = self.clock.ticks_ms() if now_ms is None else now_ms
        for t in self.tasks:
            t.next_due = ticks_add(now, t.offset)
        self._next = None
        self.started = True

    def next_due(self):
        """Earliest due time of any task (ticks ms).

        Cached by ``run_due`` (which moves every due time); recomputed only
        after ``add``/``start``: the board loop asks once per pass."""
        best = self._next
        if best is None:
            tasks = self.tasks
            best = tasks[0].next_due
            for t in tasks:
                if ticks_diff(t.next_due, best) < 0:
                    best = t.next_due
            self._next = best
        return best

    def run_due(self):
        """Run every task that is due now; returns the number run.

        Runs a few hundred times per second: due times are read once per
        task, and the earliest-due search starts from a far value instead
        of testing for None at every task."""
        now = self._ticks_ms()
        nxt = self._next
        if nxt is not None and ticks_diff(now, nxt) < 0:
            return 0            # nothing due: the common idle poll is cheap
        ran = 0
        alloc = self.alloc_stats
        best = ticks_add(now, _FAR)
        p0 = cpu_us()
        for t in self.tasks:
            d = t.next_due
            late = ticks_diff(now, d)
            if late < 0:
                if ticks_diff(d, best) < 0:
                    best = d
                continue
            if late >= t.deadline:
                t.overruns += 1
            if late > t.late_max_ms:
                t.late_max_ms = late
            # Next slot on the fixed grid (skip slots already missed), set
            # before the call: a task that raises must not stay due, or the
            # next pass would re-run it at once, forever (H-9 then holds the
            # outputs safe, the other tasks -- console -- must keep running).
            p = t.period
            nd = ticks_add(d, p)
            if ticks_diff(now, nd) >= 0:
                missed = ticks_diff(now, nd) // p + 1
                nd = ticks_add(nd, missed * p)
            t.next_due = nd
            if alloc:
                a0 = _mem_alloc()
            t0 = cpu_us()
            t.fn(now)
            dt = ticks_diff(cpu_us(), t0)
            if alloc:
                da = _mem_alloc() - a0
                if da > 0:
                    t.alloc_bytes = (t.alloc_bytes + da) & 0x3FFFFFFF
                    if da > t.alloc_max:
                        t.alloc_max = da
            t.last_us = dt
            t.total_us = (t.total_us + dt) & 0x3FFFFFFF  # stay a small int on 32-bit ports
            if dt > t.wcet_us:
                t.wcet_us = dt
            t.runs += 1
            ran += 1
            if ticks_diff(nd, best) < 0:
                best = nd
        self._next = best
        if ran:
            self.passes += 1
            dt = ticks_diff(cpu_us(), p0)
            if dt > self.pass_wcet_us:
                self.pass_wcet_us = dt
        return ran

    def reset_stats(self):
        for t in self.tasks:
            t.runs = t.overruns = t.late_max_ms = 0
            t.wcet_us = t.last_us = t.total_us = 0
            t.alloc_bytes = t.alloc_max = 0
        self.passes = 0
        self.pass_wcet_us = 0
