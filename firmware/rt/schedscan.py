"""The scheduler's general path: the passes its cyclic table cannot run.

``Scheduler.run_at`` (machine code) runs the common pass from the table
(``rt.schedtable``); it hands a pass to ``run`` here when

* there is no table (scan mode: a hyperperiod too long for one, a task
  added after ``start``, ``Scheduler(table=False)``, the reference the
  table is tested against): every task's due time is tested (``scan``);
* the call is late by a slot or more (the loop was busy past the next
  slot): each due task runs once, at its first missed due time, its
  lateness counted (``late_max_ms``, an overrun if late by its deadline or
  more), and the table resumes at the first slot after ``now``;
* tasks are pending: a task raised in the last pass (the exception went to
  the caller, the H-9 handler), and the tasks after it in that pass run
  at the next call;
* ``alloc_stats`` is on (each task's heap use is counted around its call).

A task is never run twice to catch up: a catch-up burst is exactly what a
real-time loop must avoid.  Resident (a late pass can come at any time);
allocates nothing.  Each run goes through ``Scheduler._exec`` (the task
with its statistics).
"""
from rt.clock import ticks_diff, ticks_add, cpu_us


def run(s, now):
    """The pass at ``now`` (ticks ms) on the general path; returns the
    number of tasks run."""
    if s._tb is None:
        return scan(s, now)
    tasks = s.tasks
    flag = s._rflag
    dues = s._rdue
    tn = s._tnext()
    s._pend_rest()      # a task raised in the last pass: the rest of its group
    # due: the pending tasks, and every task due in the slots up to
    # ``now`` (once each, at its first missed due time)
    if ticks_diff(now, tn) >= 0:
        for t in tasks:
            i = t._i
            if not flag[i]:
                d = s._due_at(t, tn)
                if ticks_diff(now, d) >= 0:
                    flag[i] = 1
                    dues[i] = d
                    s._npend += 1
        tn = s._advance(now, tn)
    s._tn = s.next_ms = tn
    if not s._npend:
        s._set_slow()
        return 0
    ran = 0
    p0 = cpu_us()
    for t in tasks:
        i = t._i
        if flag[i]:
            flag[i] = 0
            s._npend -= 1
            ran += 1
            try:
                s._exec(t, now, ticks_diff(now, dues[i]))
            except BaseException:
                # the due tasks after this one stay pending: they run at the
                # next call, which is due at the earliest of them
                for u in tasks:
                    d = dues[u._i]
                    if flag[u._i] and ticks_diff(d, s.next_ms) < 0:
                        s.next_ms = d
                s._set_slow()
                raise
    s._set_slow()
    s._pass_done(p0)
    return ran


def scan(s, now):
    """Scan mode: test every task's due time (the general case)."""
    ran = 0
    # "no task due before": a start for the earliest-due search that any
    # real due time beats (ticks_diff stays exact up to 2**29 ms)
    best = ticks_add(now, 1 << 28)
    p0 = cpu_us()
    for t in s.tasks:
        d = t._nd
        late = ticks_diff(now, d)
        if late < 0:
            if ticks_diff(d, best) < 0:
                best = d
            continue
        # Next slot on the fixed grid (skip slots already missed), set
        # before the call: a task that raises must not stay due, or the
        # next pass would re-run it at once, forever (H-9 then holds the
        # outputs safe, the other tasks -- console -- must keep running).
        p = t.period
        nd = ticks_add(d, p)
        if ticks_diff(now, nd) >= 0:
            missed = ticks_diff(now, nd) // p + 1
            nd = ticks_add(nd, missed * p)
        t._nd = nd
        s._exec(t, now, late)
        ran += 1
        if ticks_diff(nd, best) < 0:
            best = nd
    s.next_ms = best
    if ran:
        s._pass_done(p0)
    return ran
