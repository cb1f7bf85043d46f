"""The scheduler's cyclic table, built once by ``Scheduler.start``.

Periods and offsets are fixed at ``start``, so the pattern of due tasks
repeats every hyperperiod (the least common multiple of the periods:
1,000 ms with the charger's defaults, 310 passes).  ``build`` precomputes
it once: per pass, the gap to the next pass and the group of tasks to run
(task indices in priority order), all in one ``bytearray``.  The pass
(``Scheduler.run_at``, machine code) looks its group up instead of testing
every task's due time.  Which task runs when is exactly what the per-task
scan gives (tests/mp/test_scheduler.py runs both side by side, pass by
pass, late calls and raising tasks included).

No table (``build`` returns None; the scheduler then scans every task,
``rt.schedscan``): a hyperperiod over ``_HMAX`` ms or ``_SMAX`` passes, a
gap between passes over 255 ms, more than 255 groups or group members, a
task whose first due time is not within its period, a period <= 0.

Build-time code: ``Scheduler.start`` imports this module and drops it from
``sys.modules`` afterwards (its functions and globals are garbage at the
next collection; code that never runs again need not stay in the heap).
It holds no state and registers no settings.
"""
from micropython import const
from rt.clock import ticks_diff

_HMAX = const(60000)         # longest hyperperiod (ms) a table is built for
_SMAX = const(1500)          # most passes per hyperperiod in a table


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


def build(tasks, base):
    """The cyclic table of ``tasks`` (each first due at ``t._nd``, ticks
    ms) from ``base`` (ticks ms): ``(table, hyperperiod_ms, first_ms,
    group_starts, group_members)`` or None (scan).

    ``table`` is one bytearray: (gap to the next slot, group) per slot,
    from offset 0; the group starts (ngroups + 1 bytes) from
    ``group_starts``; the members (task indices, priority order) from
    ``group_members``.  ``first_ms`` is the first slot's offset from
    ``base``.  Sets each task's ``_phase`` (first due, ms after ``base``)."""
    h = 1
    for t in tasks:
        p = t.period
        if p <= 0:
            return None
        ph = ticks_diff(t._nd, base)
        if not 0 <= ph < p:
            return None             # first due not within its period: scan
        h = h * p // _gcd(h, p)
        if h > _HMAX:
            return None
    marks = {}
    for t in tasks:
        t._phase = o = ticks_diff(t._nd, base)
        bit = 1 << t._i
        while o < h:
            marks[o] = marks.get(o, 0) | bit
            o += t.period
    offs = sorted(marks)
    if len(offs) > _SMAX:
        return None
    # groups first, then one bytearray for the whole table: no list that
    # grows slot by slot (a list of ~650 slots is a 2.6 KB block, and the
    # boot heap of a PYBv1.1 with the platform link had no such hole)
    gidx = {}
    groups = []
    nm = 0
    for o in offs:
        m = marks[o]
        if m not in gidx:
            gidx[m] = len(groups)
            g = [t._i for t in tasks if m & (1 << t._i)]
            groups.append(g)
            nm += len(g)
    if len(groups) > 256 or nm > 255:
        return None
    n2 = 2 * len(offs)
    gs = n2 + len(groups) + 1
    tb = bytearray(gs + nm)
    for j, o in enumerate(offs):
        gap = (offs[j + 1] if j + 1 < len(offs) else offs[0] + h) - o
        if gap > 255:
            return None
        tb[2 * j] = gap
        tb[2 * j + 1] = gidx[marks[o]]
    k = gs
    for i, g in enumerate(groups):
        tb[n2 + i] = k - gs
        for x in g:
            tb[k] = x
            k += 1
    tb[n2 + len(groups)] = k - gs
    return (tb, h, offs[0], n2, gs)
