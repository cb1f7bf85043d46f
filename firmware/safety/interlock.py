"""H-12 output interlock: which outputs each session stage may have on.

The one place that says, per charger-session stage (``gbt.stages``), whether
the DC contactors K1/K2 may be closed and the power stage enabled.  The
supervisor checks the *commanded* outputs (``Outputs.k12``, ``pwr_en``)
against this table every protection tick, before they are written to the
board, whoever set them (session, console, a bug): a disallowed output
trips (H-12) and is never applied.

    stage        K1/K2  power stage  why
    insulation     x        x        insulation test voltage on the gun
    precharge      x        x        pre-charge, K1/K2 close at its end
    charging       x        x        energy transfer
    rehandshake    x*       x*       current falling after a timeout / BEM
    stopping       x*       x*       current falling after a stop
    every other    -        -        (idle .. parameter, statistics, finish, done)

``*`` = only for ``h12.stop_ms`` after the stage was entered (the session
opens K1/K2 below ``session.i_off`` or after ``session.open_wait_ms``).
The table is documented in docs/safety.md ("Output interlock").

``_ptick`` is the protection tick's common path in machine code (viper):
every hard protection (``safety.protections._hprot``), then, if nothing
fired, ``_quiet``: the current cap and this interlock, exactly as
``safety.supervisor.Supervisor._protect`` does them.  ``_quiet`` returns
before changing anything when its case is not the common one, and
``_protect`` then does the whole tick from the same state.
"""
import micropython
from micropython import const
import config
from gbt import stages as _s
from safety.protections import _hprot, _STATE

# safety.protections' kernel state (folded by the compiler)
_P_KCMD = const(44)
_P_KFAULT = const(46)
_P_LIM = const(48)
_NST = const(14)       # stages in the table
_MASK = const(0x3FFFFFFF)
assert (_STATE["k_cmd"], _STATE["k_fault"], _STATE["current_limit"]) == (_P_KCMD, _P_KFAULT, _P_LIM)

_K12 = const(1)      # K1/K2 may be closed
_PWR = const(2)      # power stage may be enabled
TIMED = const(4)    # ... only for h12.stop_ms after entering the stage

_TABLE = (
    (_s.IDLE, 0),
    (_s.CONNECTED, 0),
    (_s.LOCKING, 0),
    (_s.HANDSHAKE, 0),
    (_s.INSULATION, _K12 | _PWR),
    (_s.RECOGNITION, 0),
    (_s.PARAMETER, 0),
    (_s.PRECHARGE, _K12 | _PWR),
    (_s.CHARGING, _K12 | _PWR),
    (_s.REHANDSHAKE, _K12 | _PWR | TIMED),
    (_s.STOPPING, _K12 | _PWR | TIMED),
    (_s.STATISTICS, 0),
    (_s.FINISH, 0),
    (_s.DONE, 0),
)


def _build():
    t = bytearray(len(_s.STAGE_NAMES))
    for st, bits in _TABLE:
        t[st] = bits
    return bytes(t)


ALLOW = _build()    # ALLOW[stage] = _K12 | _PWR | TIMED bits
del _TABLE, _build  # (built at import; kept, its tuples would hold ~300 bytes of heap)
assert len(ALLOW) == _NST

CONFIG_SCHEMA = (
    ("h12.stop_ms", 1500, 100, 60000, "ms",
     "H-12: in stopping/rehandshake K1/K2 and the power stage may stay on at most this long after entering the stage (must exceed session.open_wait_ms)"),
)
config.register(CONFIG_SCHEMA)


def _cross(c):
    try:
        lim = c["session.open_wait_ms"] + c["sched.session_ms"]
    except KeyError:            # the session's schema is not loaded (unit tests)
        return None
    if c["h12.stop_ms"] <= lim:
        return ("h12.stop_ms (%d) must exceed session.open_wait_ms + sched.session_ms (%d)"
                % (c["h12.stop_ms"], lim))
    return None


if _cross not in config.CROSS_CHECKS:
    config.CROSS_CHECKS.append(_cross)


def allowed(stage):
    """(K1/K2 allowed, power stage allowed, time-limited) for a stage."""
    a = ALLOW[stage] if 0 <= stage < len(ALLOW) else 0
    return bool(a & _K12), bool(a & _PWR), bool(a & TIMED)


@micropython.viper
def _ptick(sup, now) -> int:
    """The protection tick's common path: ``_hprot``, then ``_quiet`` if
    nothing fired.  0 = done; else 1 + the code that fired (0: not quiet),
    for ``Supervisor._protect``.  (Machine code: no Python frame, which for
    a function this size would come from the heap at every call.)"""
    p = sup.prot
    st = p._st
    code = int(_hprot(now, sup.inp, sup.charging, st, p._fl, p.first))
    if code == 0 and int(_quiet(sup, now, sup.out, st, ALLOW)) != 0:
        return 0
    return code + 1


@micropython.viper
def _quiet(sup, now, out, ps: ptr32, allow: ptr8) -> int:
    """The rest of a quiet protection tick in machine code: no protection
    fired (the caller checked), no latch, no trip, no reboot cause.  Caps
    the current (H-6 derate, lockout cap, H-11 cut) and checks H-12, exactly
    as ``Supervisor._protect`` does; returns 1.  Returns 0 *before changing
    anything* when that is not the case (a contactor fault, a trip, H-9, an
    H-12 violation, a stage outside the table, a new K1/K2 command, which
    ``_protect`` records with ``Protections.track_k``): ``_protect`` then
    does the whole tick."""
    if ps[_P_KFAULT] != 0:
        return 0
    if int(sup._boot_cause) != 0 or int(sup.tripped) != 0 or int(sup.failed) != 0:
        return 0
    n = int(now)
    lim = ps[_P_LIM]
    cap = int(sup._cap)
    if cap < lim:
        lim = cap
    if int(sup.h11_on) != 0:
        lim = 0
    stg = int(sup.stage)
    if stg < 0 or stg >= _NST:
        return 0
    new = 0
    if stg != int(sup._ilk_stage):
        new = 1
    ko = out.k12
    k = int(ko)
    if k != 0:
        if ps[_P_KCMD] == 0:
            return 0                    # K1/K2 command changes: ``Protections.track_k``
    elif ps[_P_KCMD] != 0:
        return 0
    pe = int(out.pwr_en)
    if k != 0 or pe != 0:
        a = allow[stg]
        if (k != 0 and (a & 1) == 0) or (pe != 0 and (a & 2) == 0):
            return 0
        if (a & 4) != 0 and new == 0:
            if ((n - int(sup._ilk_t)) & _MASK) > int(sup.h12_stop):
                return 0
    sup.current_limit = lim
    if int(out.i_set) > lim:
        out.i_set = lim
    if new != 0:
        sup._ilk_stage = stg
        sup._ilk_t = now
    sup._k_applied = ko
    return 1
