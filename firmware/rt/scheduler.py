"""A time-triggered cooperative scheduler: the run time.

Tasks have a fixed period and an offset (so that tasks of the same period do
not all land on the same tick).  Each pass runs every task that is due, in
the order they were added (add the protection tick first: order is
priority).  A task that starts later than its deadline (by default its
period) counts as an overrun.  A task that raises has already been given
its next slot (the exception propagates to the caller, the H-9 handler);
the tasks after it in the same pass still run, at the next call.

``start`` builds a cyclic table of one hyperperiod (``rt.schedtable``,
build-time code, dropped afterwards); the pass, ``run_at``, is machine code
(``@micropython.viper``) that looks its group of tasks up in the table.
What the table cannot run by itself takes the general path
(``rt.schedscan``: scan mode, late calls, pending tasks, ``alloc_stats``).

Per task, execution time is measured with ``time.ticks_us`` around the
call: last, worst, total (modulo 2**30), runs, overruns, worst lateness --
read as task attributes (``t.runs``, ``t.wcet_us`` ...) by the console's
``sched`` command and the SIL link's STATS packet; they live in one int
array (``_T``), written by machine code.  Ticks arithmetic is modulo 2**30
(the tick period of a 32-bit port; the unix port's 2**62 is a multiple), so
differences below 2**29 ms are exact on every port.  ``run_due`` allocates
nothing.
"""
import time
import micropython
from array import array
from micropython import const
from gc import mem_alloc as _mem_alloc
from rt.clock import ticks_diff, ticks_add, cpu_us, TicksClock
from rt.schedscan import run as _general
import config

# Declared here, not with the app's other sched.* settings: the trip path
# (safety.trip) works to this period and must find it without the app.
CONFIG_SCHEMA = (
    ("sched.protect_ms", 5, 1, 10, "ms", "Protection tick (hard protections, trip path, output write); H-1 needs <= 10 ms. Boards also trip H-1/H-2/H-3 from a 1 ms timer interrupt"),
)
config.register(CONFIG_SCHEMA)

_cpu = time.ticks_us
_MASK = const(0x3FFFFFFF)    # 2**30 - 1: counters and tick differences
_HALF = const(0x20000000)    # 2**29

# per task in _T (8 ints each)
_LAST = const(0)
_TOTAL = const(1)
_WCET = const(2)
_RUNS = const(3)
_OVR = const(4)
_LATE = const(5)
_DL = const(6)
_PARK = const(7)     # 1: the task is parked (``Scheduler.park``)
_TW = const(8)
# the statistics' names, in field order (_LAST .. _LATE)
_TFIELDS = ("last_us", "total_us", "wcet_us", "runs", "overruns", "late_max_ms")

# scheduler state in _S
_K = const(0)        # byte offset in _tb of the next slot (gap, group)
_N2 = const(1)       # 2 x slots
_GS = const(2)       # offset in _tb of the group starts (ngroups + 1 bytes)
_GT = const(3)       # offset in _tb of the group members (task indices)
_SLOW = const(4)     # 1: the general path (scan mode, alloc_stats, pending tasks)
_BUSY = const(5)     # 1: a pass is running its group (still 1: a task raised)
_GRP = const(6)      # group of the running pass
_POS = const(7)      # position in _tb's members of the running task
_LGAP = const(8)     # gap after the running pass's slot
_PASSES = const(9)
_PWCET = const(10)
_SN = const(12)


class Task:
    def __init__(self, name, fn, period_ms, offset_ms, deadline_ms):
        self.name = name
        self.fn = fn
        self.period = period_ms
        self.deadline = deadline_ms
        self.offset = offset_ms
        self._nd = offset_ms     # next due (scan mode)
        self._sched = None
        self._i = 0              # index in the scheduler's task list
        self._phase = 0          # table mode: first due, ms after the table's base
        self.alloc_bytes = 0     # heap bytes allocated by this task (alloc_stats only)
        self.alloc_max = 0

    def __getattr__(self, name):
        # Statistics (``runs``, ``total_us`` (modulo 2**30), ``wcet_us``,
        # ``last_us``, ``overruns``, ``late_max_ms``) live in the scheduler's
        # array; ``next_due`` (ticks ms) is computed.  (Not properties: a
        # class with a property makes every attribute *store* on its
        # instances look the class up first -- MicroPython's special
        # accessors --, 5x the cost of a plain store.)
        s = self._sched
        if name in _TFIELDS:
            return s._T[self._i * _TW + _TFIELDS.index(name)]
        if name == "next_due":
            return s._task_due(self)
        raise AttributeError(name)


class Scheduler:
    def __init__(self, clock, table=True):
        self.clock = clock
        self.table = table      # False: always scan (reference behaviour, tests)
        # read every pass: a board clock through the builtin itself (no
        # Python call), any other clock through its bound method
        self._ticks_ms = time.ticks_ms if type(clock) is TicksClock else clock.ticks_ms
        self.now = self._ticks_ms           # the clock's cheapest read, for board loops
        self._pmask = ticks_add(0, -1)     # the port's tick period - 1
        self.tasks = []
        self._tl = ()           # tasks as a tuple (indexed by the pass)
        self._T = array("i")    # per-task statistics, _TW ints per task
        self._S = array("i", [0] * _SN)
        self._S[_SLOW] = 1
        self.started = False
        # Diagnostics/benchmarks: count heap bytes each task allocates
        # (gc.mem_alloc deltas; a pass in which the GC ran is not counted).
        # Set before ``start`` (it selects the pass's code path there).
        self.alloc_stats = False
        # earliest next due (ticks ms): what ``next_due()`` returns; None =
        # to be computed (scan mode, after add/start).  A board loop may
        # read it directly and call next_due() only when it is None.
        self.next_ms = None
        # table mode (the layout: rt.schedtable.build)
        self._tb = None         # gap, group per slot | group starts | members
        self._base = 0          # ticks ms of the current hyperperiod's origin
        self._hyper = 0         # hyperperiod, ms
        self._tn = 0            # table's next slot while tasks are pending
        # tasks pending from an interrupted or late pass: run at the next call
        self._rflag = bytearray(0)
        self._rdue = []
        self._npend = 0

    def __getattr__(self, name):
        # ``passes`` and ``pass_wcet_us`` live in _S (written by the pass)
        if name == "passes":
            return self._S[_PASSES]
        if name == "pass_wcet_us":
            return self._S[_PWCET]
        raise AttributeError(name)

    def _set_slow(self):
        self._S[_SLOW] = 1 if (self._tb is None or self._npend > 0 or self.alloc_stats) else 0

    def add(self, name, fn, period_ms, offset_ms=0, deadline_ms=0):
        """Register a periodic task; call before ``start`` (a task added
        later puts the scheduler in scan mode)."""
        t = Task(name, fn, period_ms, offset_ms, deadline_ms or period_ms)
        if self._tb is not None:
            self._to_scan()
        t._sched = self
        t._i = len(self.tasks)
        self.tasks.append(t)
        self._tl = tuple(self.tasks)
        T = array("i", [0] * (_TW * len(self.tasks)))
        for k in range(len(self._T)):
            T[k] = self._T[k]
        T[t._i * _TW + _DL] = t.deadline
        self._T = T
        self._rflag = bytearray(len(self.tasks))
        self._rdue = [0] * len(self.tasks)
        self._npend = 0
        self.next_ms = None
        self._set_slow()
        return t

    def park(self, t, parked=1):
        """Park task ``t`` (``parked`` 1: its slots pass without a call,
        nothing counted) or wake it (0).  For a task that has work only now
        and then and cannot know it from the time alone (the platform
        link's sealing task): a parked task costs its passes nothing, where
        a call that finds nothing to do costs ~6 kinstr of the target.
        Its slots stay where they are: woken, it runs at its next one."""
        self._T[t._i * _TW + _PARK] = parked

    def start(self, now_ms=None):
        now = self._ticks_ms() if now_ms is None else now_ms
        for t in self.tasks:
            t._nd = ticks_add(now, t.offset)
        self._npend = 0
        for i in range(len(self._rflag)):
            self._rflag[i] = 0
        self._S[_BUSY] = 0
        self._build(now)
        self.started = True

    # ------------------------------------------------------- table mode
    def _build(self, base):
        """The cyclic table from the tasks' next due times (or none: scan)."""
        self._tb = None
        self.next_ms = None
        self._set_slow()
        if not self.tasks or not self.table:
            return
        import sys
        from rt import schedtable
        r = schedtable.build(self.tasks, base)
        del sys.modules["rt.schedtable"]        # build-time code: dropped
        delattr(sys.modules["rt"], "schedtable")
        if r is None:
            return
        tb, self._hyper, first, gs, gt = r
        S = self._S
        S[_N2] = gs
        S[_GS] = gs
        S[_GT] = gt
        S[_K] = 0
        S[_BUSY] = 0
        self._tb = tb
        self._base = base
        self.next_ms = ticks_add(base, first)
        self._set_slow()

    def _due_at(self, t, ref):
        """Table mode: first due time of ``t`` at or after ``ref``."""
        p = t.period
        z = ticks_add(self._base, t._phase)
        x = ticks_diff(ref, z)
        return ticks_add(z, -((-x) // p) * p)

    def _tnext(self):
        """Table mode: time of the table's next slot (``next_ms`` while no
        task is pending; ``_tn`` while some are; after the slot's gap while
        a pass is interrupted)."""
        if self._S[_BUSY]:
            return ticks_add(self.next_ms, self._S[_LGAP])
        if self._npend:
            return self._tn
        return self.next_ms

    def _task_due(self, t):
        if self._npend and self._rflag[t._i]:
            return self._rdue[t._i]
        if self._tb is None:
            return t._nd
        S = self._S
        if S[_BUSY]:
            tb = self._tb
            gt = S[_GT]
            for j in range(S[_POS] + 1, tb[S[_GS] + S[_GRP] + 1]):
                if tb[gt + j] == t._i:
                    return self.next_ms       # the interrupted pass's rest
        return self._due_at(t, self._tnext())

    def _to_scan(self):
        """Leave table mode, keeping every task's next due time."""
        for t in self.tasks:
            t._nd = self._task_due(t)
        self._tb = None
        self._npend = 0
        self._S[_BUSY] = 0
        self.next_ms = None
        self._set_slow()

    # ---------------------------------------------------------------- passes
    def next_due(self):
        """Earliest due time of any task (ticks ms).

        Kept by ``run_due`` (which moves every due time); recomputed only
        after ``add``/``start`` in scan mode: the board loop asks once per
        pass."""
        best = self.next_ms
        if best is None:
            tasks = self.tasks
            best = tasks[0]._nd
            for t in tasks:
                if ticks_diff(t._nd, best) < 0:
                    best = t._nd
            self.next_ms = best
        return best

    def run_due(self, now=None):
        """Run every task that is due at ``now`` (default: the clock);
        returns the number run."""
        if now is None:
            now = self._ticks_ms()
        return self.run_at(now)

    @micropython.viper
    def run_at(self, now) -> int:
        """``run_due`` at ``now`` (ticks ms): the pass.

        The common pass -- table mode, due, not past the next slot -- runs
        here; anything else (late by a slot or more, tasks pending from a
        pass a task raised in, scan mode, alloc_stats) takes
        the general path (``rt.schedscan``)."""
        S = ptr32(self._S)
        if S[_SLOW] | S[_BUSY]:
            return int(_general(self, now))
        n = int(now)
        due = int(self.next_ms)
        d = ((n - due + _HALF) & _MASK) - _HALF
        if d < 0:
            return 0                # nothing due: the common idle poll is cheap
        tb = ptr8(self._tb)
        k = S[_K]
        gap = tb[k]
        if d >= gap:
            return int(_general(self, now))    # missed a slot or more
        g = tb[k + 1]
        k += 2
        if k == S[_N2]:
            k = 0
            self._base = (int(self._base) + int(self._hyper)) & int(self._pmask)
        S[_K] = k
        j = tb[S[_GS] + g]
        end = tb[S[_GS] + g + 1]
        gt = S[_GT]
        T = ptr32(self._T)
        if d:                       # late, within this slot
            m = j
            while m < end:
                b = tb[gt + m] * _TW
                if d >= T[b + _DL]:
                    T[b + _OVR] = (T[b + _OVR] + 1) & _MASK
                if d > T[b + _LATE]:
                    T[b + _LATE] = d
                m += 1
        # until the group is done, ``next_ms`` stays at this pass's time: a
        # task that raises leaves _BUSY set and the caller's next call (at
        # once) runs the rest of the group on the general path
        S[_GRP] = g
        S[_LGAP] = gap
        S[_BUSY] = 1
        tasks = self._tl
        cpu = _cpu
        p0 = int(cpu())
        c1 = p0
        m = j
        while m < end:
            S[_POS] = m
            i = tb[gt + m]
            b = i * _TW
            if T[b + _PARK]:
                m += 1
                continue
            f = tasks[i].fn
            c0 = int(cpu())
            f(now)
            c1 = int(cpu())
            dt = (c1 - c0) & _MASK
            if dt >= _HALF:
                dt = 0              # the clock stepped back: count nothing
            T[b + _LAST] = dt
            T[b + _TOTAL] = (T[b + _TOTAL] + dt) & _MASK
            if dt > T[b + _WCET]:
                T[b + _WCET] = dt
            T[b + _RUNS] = (T[b + _RUNS] + 1) & _MASK
            m += 1
        S[_BUSY] = 0
        S[_PASSES] = (S[_PASSES] + 1) & _MASK
        dt = (c1 - p0) & _MASK
        if dt >= _HALF:
            dt = 0
        if dt > S[_PWCET]:
            S[_PWCET] = dt
        self.next_ms = (due + gap) & int(self._pmask)
        return end - j

    # ----------------------------------- used by the general path (rt.schedscan)
    def _exec(self, t, now, late):
        """One task run with its statistics (general path)."""
        T = self._T
        b = t._i * _TW
        if T[b + _PARK]:
            return
        if late >= t.deadline:
            T[b + _OVR] = (T[b + _OVR] + 1) & _MASK
        if late > T[b + _LATE]:
            T[b + _LATE] = late
        alloc = self.alloc_stats
        if alloc:
            a0 = _mem_alloc()
        t0 = cpu_us()
        t.fn(now)
        d = ticks_diff(cpu_us(), t0)
        if alloc:
            da = _mem_alloc() - a0
            if da > 0:
                t.alloc_bytes = (t.alloc_bytes + da) & _MASK
                if da > t.alloc_max:
                    t.alloc_max = da
        T[b + _LAST] = d
        T[b + _TOTAL] = (T[b + _TOTAL] + d) & _MASK
        if d > T[b + _WCET]:
            T[b + _WCET] = d
        T[b + _RUNS] = (T[b + _RUNS] + 1) & _MASK

    def _pass_done(self, p0):
        S = self._S
        S[_PASSES] = (S[_PASSES] + 1) & _MASK
        d = ticks_diff(cpu_us(), p0)
        if d > S[_PWCET]:
            S[_PWCET] = d

    def _pend_rest(self):
        """Table mode, after a task raised in a pass: the rest of its group
        is pending, due at that pass's time."""
        S = self._S
        if S[_BUSY]:
            tb = self._tb
            flag = self._rflag
            due = self.next_ms
            gt = S[_GT]
            for j in range(S[_POS] + 1, tb[S[_GS] + S[_GRP] + 1]):
                i = tb[gt + j]
                if not flag[i]:
                    flag[i] = 1
                    self._rdue[i] = due
                    self._npend += 1
            S[_BUSY] = 0

    def _advance(self, now, tn):
        """Table mode: the first slot after ``now``, from slot time ``tn``."""
        tb = self._tb
        S = self._S
        h = self._hyper
        while True:
            d = ticks_diff(now, tn)
            if d < 0:
                return tn
            k = S[_K]
            if k == 0 and d >= h:
                c = d // h * h       # whole hyperperiods missed
                self._base = ticks_add(self._base, c)
                tn = ticks_add(tn, c)
                continue
            tn = ticks_add(tn, tb[k])
            k += 2
            if k == S[_N2]:
                k = 0
                self._base = ticks_add(self._base, h)
            S[_K] = k

    def reset_stats(self):
        T = self._T
        for t in self.tasks:
            b = t._i * _TW
            for f in (_LAST, _TOTAL, _WCET, _RUNS, _OVR, _LATE):
                T[b + f] = 0
            t.alloc_bytes = t.alloc_max = 0
        self._S[_PASSES] = 0
        self._S[_PWCET] = 0
        self._set_slow()
