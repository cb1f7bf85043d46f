"""The supervisor's hot paths in machine code (viper), apart from the
classes whose state they read: the protection tick's common path
(``_ptick``, ``_quiet``) over ``safety.supervisor.Supervisor``, the check
tick's evaluation (``_eval``, ``_conds``) and H-11's common case
(``_h11_quiet``) over ``safety.checkrun.CheckRunner``.  Each returns before
changing anything when its case is not the common one, and the Python
method it stands for then does the whole work from the same state.

Machine code because a Python function this size gets a heap frame at
every call; none of these allocates (tests/mp/test_supervisor_alloc.py).
"""
import micropython
from micropython import const
from safety import risk as _risk
from safety.risk import _steps, EV_CLEAR
from safety.protections import _hprot, _STATE
from safety.interlock import ALLOW as _ALLOW

_PF_BCL = const(0x10)
_PF_BCS = const(0x11)
# safety.protections' kernel state (folded by the compiler)
_P_KCMD = const(44)
_P_KFAULT = const(46)
_P_LIM = const(48)
_NST = const(14)       # stages in the H-12 table
_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)
assert len(_ALLOW) == _NST and (_STATE["k_cmd"], _STATE["k_fault"],
                                 _STATE["current_limit"]) == (_P_KCMD, _P_KFAULT, _P_LIM)

# the check tick in three parts (check ids lo+1..hi): head S-1..S-4 (with
# H-11, session start/end, integrators), mid S-5..S-9, tail S-10..S-13
PARTS = ((0, 4), (4, 9), (9, 13))
_TR_CLEAR = const(15)  # safety.risk.TR_CLEAR_SHIFT
_COND = const(14)      # safety.risk: the condition row of RiskTable.b
assert _TR_CLEAR == _risk.TR_CLEAR_SHIFT and _COND == _risk.COND_ROW
assert PARTS == ((0, 4), (4, 9), (9, 13))     # (_eval spells them out)


@micropython.viper
def _conds(pairs, ctx, now, b: ptr8):
    """Each check's condition into the risk table's condition row
    (``safety.risk``: condition + 1: TRUE 2, FALSE 1, INACTIVE 0); a check
    that raises is INACTIVE, "error in check"."""
    for p in pairs:
        c = p[1]
        r = -1
        try:
            r = int(c.eval(ctx, now))
        except Exception:
            c.why = "error in check"
            r = -1
        b[_COND + int(p[0])] = r + 1


@micropython.viper
def _eval(run, now, p: int):
    """Part p of the check tick (checks lo+1..hi of ``_PARTS[p]``; only the
    enabled ones are evaluated, a disabled one stays INACTIVE, "disabled"):
    each condition, then the risk table for all of them at once, then the
    actions of any that were raised or cleared, in check order.  (A check's
    condition reads the measurements and the BMS data only, never what an
    earlier check's action did, so the order of conditions and actions is
    free.)"""
    lo = 9
    hi = 13
    if p == 0:
        lo = 0
        hi = 4
    elif p == 1:
        lo = 4
        hi = 9
    rk = run.risk
    b = rk.b
    _conds(run._pairs[p], run.ctx, now, b)
    m = int(_steps(now, lo + 1, hi + 1, b, rk.since, rk.clr_since, rk.raised_count, rk.pr))
    if m != 0:
        lv = ptr8(rk.level)
        cks = run.checks
        i = lo + 1
        while i <= hi:
            if m & (1 << i):
                run._raised(now, i, lv[i], cks[i - 1].value)
            elif m & (1 << (i + _TR_CLEAR)):
                run.events.add(now, EV_CLEAR, i, lv[i], cks[i - 1].value)
            i += 1


@micropython.viper
def _h11_quiet(sup, run, now) -> int:
    """H-11's common case in machine code: no cut running, and the current
    not flowing or both BCL and BCS fresh enough.  1 = nothing to do; 0 =
    let ``CheckRunner._h11`` decide (from the same state: the only change
    made here, the start of the current, is one it would make the same)."""
    if int(sup.h11_on) != 0:
        return 0
    i = int(sup.inp.i_out)
    fl = int(run.h11_flow)
    if (i <= fl and i >= 0 - fl) or int(sup.tripped) != 0:
        run._flowing = 0
        return 1
    n = int(now)
    if int(run._flowing) == 0:
        run._flowing = 1
        run._flow_t = now
    t0 = int(run._flow_t)
    lo = sup.rx_times
    t = int(lo[_PF_BCL])
    if t < 0 or ((t - t0 + _HALF) & _MASK) - _HALF < 0:
        t = t0                          # older than the current: count from its start
    if ((n - t + _HALF) & _MASK) - _HALF > int(run.h11_bcl):
        return 0
    t = int(lo[_PF_BCS])
    if t < 0 or ((t - t0 + _HALF) & _MASK) - _HALF < 0:
        t = t0
    if ((n - t + _HALF) & _MASK) - _HALF > int(run.h11_bcs):
        return 0
    return 1


@micropython.viper
def _copy(dst: ptr8, src: ptr8, n: int):
    i = 0
    while i < n:
        dst[i] = src[i]
        i += 1


@micropython.viper
def _ptick(sup, now) -> int:
    """The protection tick's common path: ``_hprot``, then ``_quiet`` if
    nothing fired.  0 = done; else 1 + the code that fired (0: not quiet),
    for ``Supervisor._protect``.  (Machine code: no Python frame, which for
    a function this size would come from the heap at every call.)"""
    p = sup.prot
    st = p._st
    code = int(_hprot(now, sup.inp, sup.charging, st, p._fl, p.first))
    if code == 0 and int(_quiet(sup, now, sup.out, st, _ALLOW)) != 0:
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
