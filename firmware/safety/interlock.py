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
"""
from micropython import const
import config
from gbt import stages as _s

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
