"""Risk table: level per check, persistence/release timing, events ring.

Requirements section 4.  A check's condition (``safety.checks``) raises a
risk only after it held continuously for ``risk.persist_ms`` on the
(simulated) clock, and a raised risk clears only after the condition was
false continuously for ``risk.release_ms``.  Levels:

    3 (III)  immediate trip            (S-3, S-6, S-7, S-10, every H-x)
    2 (II)   controlled stop (CST)     (S-1, S-2, S-4, S-5, S-8, S-9, S-11..13)
    1 (I)    warning: notify + record
    0        check disabled

States per check, for diagnostics:

    INACTIVE  an input is missing/untrusted (``why`` on the check says which)
    OK        evaluated, condition false
    PENDING   condition true since ``since`` (ms), not yet for persist_ms
    RAISED    risk raised at ``since``; stays RAISED while inputs vanish
              (a risk is only released by observing the condition false)

Events are kept in a preallocated ring (``Events``) of ints: time, kind,
id, level, value.  Writing one allocates nothing.
"""
import micropython
from array import array
from micropython import const
import config
from rt.clock import ticks_diff

INACTIVE = const(0)
OK = const(1)
PENDING = const(2)
RAISED = const(3)
STATE_NAMES = ("INACTIVE", "OK", "PENDING", "RAISED")

# transitions returned by RiskTable.step
_T_NONE = const(0)
T_RAISED = const(1)
T_CLEARED = const(2)

# event kinds
EV_RAISE = const(1)     # risk raised (S-x) / protection tripped (H-x)
EV_CLEAR = const(2)     # risk released
EV_TRIP = const(3)      # trip path started (value = cause code)
EV_K_OPEN = const(4)    # K1/K2 opened during a trip (value = |i_out| dA at open)
EV_SAFE_V = const(5)    # output below safe voltage (value = v_outside dV)
EV_BLEED_TO = const(6)  # bleed timed out above safe voltage (value = v_outside)
EV_LOCKOUT = const(7)   # VIN locked out (id = check, value = count)
EV_CONFIRM = const(8)   # needs-confirmation set (id = check)
EV_LATCH = const(9)     # latched fault set (id = H code)
EV_RESET = const(10)    # operator reset / acknowledge / rearm (id = what)
EV_FAILSAFE = const(11) # H-9 fail-safe
EV_NAMES = ("", "raise", "clear", "trip", "k12-open", "safe-v", "bleed-timeout",
            "lockout", "confirm", "latch", "reset", "fail-safe")

# hard protection codes (checks are 1..13)
H1 = const(101)
H2 = const(102)
H3 = const(103)
H4 = const(104)
H5 = const(105)
H6 = const(106)
H7 = const(107)
H8 = const(108)
H9 = const(109)
H10 = const(110)
H11 = const(111)    # BCL/BCS stale while current flows (supervisor, not the session)
H12 = const(112)    # output interlock: K1/K2 / power stage on in a stage that forbids it

_S_NAMES = ("", "S-1 current demand > max allowed", "S-2 output current deviation",
            "S-3 charging overcurrent", "S-4 voltage demand > max allowed",
            "S-5 output voltage deviation", "S-6 pack overvoltage",
            "S-7 cell overvoltage", "S-8 cell voltage spread",
            "S-9 dQ/dV divergence", "S-10 cell overtemperature",
            "S-11 temperature rise rate", "S-12 SOC out of range",
            "S-13 SOC rate abnormal")
_H_NAMES = ("", "H-1 output overvoltage", "H-2 output overcurrent",
            "H-3 emergency stop", "H-4 insulation fault",
            "H-5 connection lost (CC1)", "H-6 gun over-temperature",
            "H-7 contactor fault", "H-8 leakage current",
            "H-9 fail-safe (exception)", "H-10 mains lost",
            "H-11 BMS data lost (BCL/BCS)", "H-12 output interlock")


def name_of(code):
    """Name of a check (1..13) or hard protection (101..112); no allocation."""
    if 0 < code < len(_S_NAMES):
        return _S_NAMES[code]
    if 100 < code < 100 + len(_H_NAMES):
        return _H_NAMES[code - 100]
    return "?"


_N = const(14)   # index = check id (0 unused)

CONFIG_SCHEMA = (
    ("risk.persist_ms", 5000, 0, 60000, "ms", "Condition must hold this long before a risk is raised (seed 000: 5 s)"),
    ("risk.release_ms", 10000, 0, 600000, "ms", "Condition must be false this long before a raised risk clears (DECISION)"),
    ("risk.events", 32, 4, 256, "-", "Events ring size"),
    ("risk.level.s1", 2, 0, 3, "-", "S-1 level (0 off, 1 warn, 2 stop, 3 trip)"),
    ("risk.level.s2", 2, 0, 3, "-", "S-2 level"),
    ("risk.level.s3", 3, 0, 3, "-", "S-3 level"),
    ("risk.level.s4", 2, 0, 3, "-", "S-4 level"),
    ("risk.level.s5", 2, 0, 3, "-", "S-5 level"),
    ("risk.level.s6", 3, 0, 3, "-", "S-6 level"),
    ("risk.level.s7", 3, 0, 3, "-", "S-7 level"),
    ("risk.level.s8", 2, 0, 3, "-", "S-8 level"),
    ("risk.level.s9", 2, 0, 3, "-", "S-9 level"),
    ("risk.level.s10", 3, 0, 3, "-", "S-10 level"),
    ("risk.level.s11", 2, 0, 3, "-", "S-11 level"),
    ("risk.level.s12", 2, 0, 3, "-", "S-12 level"),
    ("risk.level.s13", 2, 0, 3, "-", "S-13 level"),
)
config.register(CONFIG_SCHEMA)

_LEVEL_KEYS = ("", "risk.level.s1", "risk.level.s2", "risk.level.s3", "risk.level.s4",
               "risk.level.s5", "risk.level.s6", "risk.level.s7", "risk.level.s8",
               "risk.level.s9", "risk.level.s10", "risk.level.s11", "risk.level.s12",
               "risk.level.s13")


# RiskTable.b: three rows of _N bytes (state, condition + 1, clear pending)
_COND = const(14)
_CLR = const(28)
_MASK = const(0x3FFFFFFF)    # ticks ms differences (modulo 2**30: exact below 2**29 ms)
TR_CLEAR_SHIFT = const(15)   # steps(): bit i = check i raised, bit i + 15 = cleared
COND_ROW = const(_COND)      # offset of the condition row in RiskTable.b


class RiskTable:
    """Persistence / release state machine for checks 1..13.

    ``step`` feeds one check; ``steps`` (the check tick) feeds a range of
    them at once from the conditions stored in ``cond`` -- the same state
    machine in machine code (``_steps``)."""

    def __init__(self, c):
        self.persist = config.get(c, "risk.persist_ms")
        self.release = config.get(c, "risk.release_ms")
        self.pr = array("i", [self.persist, self.release])
        self.level = bytearray(_N)
        for i in range(1, _N):
            self.level[i] = config.get(c, _LEVEL_KEYS[i])
        self.b = bytearray(3 * _N)
        mv = memoryview(self.b)
        self.state = mv[0:_N]
        self.cond = mv[_COND:_COND + _N]   # last condition + 1 (0 = inactive)
        self.clr = mv[_CLR:_CLR + _N]      # RAISED and condition currently false
        self.since = [0] * _N      # PENDING: cond true since; RAISED: raised at
        self.clr_since = [0] * _N
        self.raised_count = [0] * _N

    def reset(self):
        """Session start/end: forget pending and raised states (no events)."""
        _zero(self.b, 3 * _N)

    def steps(self, lo, hi, now):
        """``step`` for checks lo..hi-1, each with the condition already in
        ``cond`` (condition + 1, 0 = inactive).  Returns a bit mask: bit i
        = check i raised, bit i + TR_CLEAR_SHIFT = check i cleared."""
        return _steps(now, lo, hi, self.b, self.since, self.clr_since,
                      self.raised_count, self.pr)

    def step(self, i, cond, now):
        """Feed check ``i``'s condition (1 true, 0 false, -1 inactive).

        Returns T_RAISED / T_CLEARED on the tick the risk changes."""
        st = self.state[i]
        self.cond[i] = cond + 1 if cond >= 0 else 0
        if cond < 0:
            if st == RAISED:
                self.clr[i] = 0          # no evidence it is gone: stay raised
            else:
                self.state[i] = INACTIVE
            return _T_NONE
        if cond:
            self.clr[i] = 0
            if st == RAISED:
                return _T_NONE
            if st != PENDING:
                self.state[i] = PENDING
                self.since[i] = now
            if ticks_diff(now, self.since[i]) >= self.persist:
                self.state[i] = RAISED
                self.since[i] = now
                self.raised_count[i] += 1
                return T_RAISED
            return _T_NONE
        if st == RAISED:
            if not self.clr[i]:
                self.clr[i] = 1
                self.clr_since[i] = now
            if ticks_diff(now, self.clr_since[i]) >= self.release:
                self.state[i] = OK
                self.since[i] = now
                self.clr[i] = 0
                return T_CLEARED
            return _T_NONE
        if st != OK:
            self.state[i] = OK
            self.since[i] = now
        return _T_NONE


@micropython.viper
def _zero(b: ptr8, n: int):
    i = 0
    while i < n:
        b[i] = 0
        i += 1


@micropython.viper
def _steps(now, lo: int, hi: int, b: ptr8, since, clr_since, raised, pr: ptr32) -> int:
    """``RiskTable.step`` for checks lo..hi-1 in machine code: the same
    transitions, the condition of each read from ``b`` (row _COND).  The
    time lists ``since``/``clr_since`` (exact ticks) are touched only for a
    check that is pending, raised or changes state."""
    n = int(now)
    m = 0
    i = lo
    while i < hi:
        c = b[_COND + i]
        st = b[i]
        if c == 0:                          # inactive
            if st == 3:
                b[_CLR + i] = 0             # no evidence it is gone: stay raised
            else:
                b[i] = 0
        elif c == 2:                        # condition true
            b[_CLR + i] = 0
            if st != 3:
                e = 0
                if st != 2:
                    b[i] = 2
                    since[i] = now
                else:
                    e = (n - int(since[i])) & _MASK
                if e >= pr[0]:
                    b[i] = 3
                    since[i] = now
                    raised[i] = int(raised[i]) + 1
                    m |= 1 << i
        elif st == 3:                       # false while raised
            e = 0
            if b[_CLR + i] == 0:
                b[_CLR + i] = 1
                clr_since[i] = now
            else:
                e = (n - int(clr_since[i])) & _MASK
            if e >= pr[1]:
                b[i] = 1
                since[i] = now
                b[_CLR + i] = 0
                m |= 1 << (i + TR_CLEAR_SHIFT)
        elif st != 1:
            b[i] = 1
            since[i] = now
        i += 1
    return m


class Events:
    """Preallocated ring of the last ``n`` events.

    ``seq`` counts every event ever added; event number s (0-based) lives
    in slot s % n while s >= seq - n.  ``read(s, out)`` copies one into a
    caller's 5-list [t, kind, id, level, value] without allocating."""

    def __init__(self, n):
        self.n = n
        self.t = [0] * n
        self.kind = bytearray(n)
        self.id = [0] * n
        self.level = bytearray(n)
        self.value = [0] * n
        self.seq = 0

    def add(self, t, kind, ident, level, value):
        k = self.seq % self.n
        self.t[k] = t
        self.kind[k] = kind
        self.id[k] = ident
        self.level[k] = level
        self.value[k] = value
        self.seq += 1

    def oldest(self):
        s = self.seq - self.n
        return s if s > 0 else 0

    def read(self, s, out):
        """Fill ``out`` with event ``s``; False if it is gone or not yet there."""
        if s < self.oldest() or s >= self.seq:
            return False
        k = s % self.n
        out[0] = self.t[k]
        out[1] = self.kind[k]
        out[2] = self.id[k]
        out[3] = self.level[k]
        out[4] = self.value[k]
        return True

    def text(self, s):
        """One event as a line for the console (allocates)."""
        e = [0, 0, 0, 0, 0]
        if not self.read(s, e):
            return None
        return "%d ms %s %s L%d value=%d" % (e[0], EV_NAMES[e[1]] if e[1] < len(EV_NAMES) else "?",
                                              name_of(e[2]), e[3], e[4])

    def find(self, kind, ident=0, start=0):
        """Sequence number of the first event of ``kind`` (and ``ident`` if
        non-zero) at or after ``start``, or -1.  For tests and the console."""
        s = self.oldest()
        if start > s:
            s = start
        e = [0, 0, 0, 0, 0]
        while s < self.seq:
            self.read(s, e)
            if e[1] == kind and (not ident or e[2] == ident):
                return s
            s += 1
        return -1
