"""First stages of the charger session: lock, handshake, insulation test.

One object (``StartStages``), made once by ``gbt.session.ChargerSession``,
owns these stages' timer (``t``), the insulation test's sub-state (``sub``:
``_UP`` output up to the test voltage, ``_MEASURE``, ``_BLEED``) and
whether a BHM came.  What each step checks and why (GB/T 27930 / GB/T
18487.1 clauses): docs/session.md.
"""
from time import ticks_diff

from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt import chargertx as tx_
from gbt import stages as W
from micropython import const

_UP = const(0)
_MEASURE = const(1)
_BLEED = const(2)
_PGN_BHM = const(0x2700)


class StartStages:
    def __init__(self, sess):
        self.s = sess
        self.t = 0                        # stage (or insulation step) start
        self.sub = _UP
        self.bhm = 0                      # a BHM came (this plug session)

    def on_message(self, now, pgn):
        """HANDSHAKE / INSULATION: a BHM (late in INSULATION: it may lower
        the test voltage); the rest as in every stage."""
        if pgn == _PGN_BHM:
            self.bhm = 1
        else:
            self.s._on_common(now, pgn)

    # -- LOCKING -----------------------------------------------------------
    def enter_locking(self, now):
        # (every plug session passes here before its handshake: nothing
        # from an earlier one is left)
        self.bhm = 0
        self.s.out.lock = 1
        self.t = now
        self.sub = _UP

    def tick_locking(self, now, dt):
        c = self.s.c
        if self.s.inp.lock_fb or not c.lock_fb:
            self.s.goto(W.HANDSHAKE, now)
        elif ticks_diff(now, self.t) >= c.lock_ms:
            self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_CONNECTOR, 0, W.WHY_LOCK, False)

    # -- HANDSHAKE ---------------------------------------------------------
    def enter_handshake(self, now):
        self.s.out.k34 = 1                  # auxiliary power (K3/K4)
        self.s.tx.start(tx_.CHM, now)
        self.t = now
        self.sub = _UP

    # Per-tick methods of the start-up stages stay within the 11 words a
    # bytecode call keeps on the C stack (a bigger frame is taken from the GC
    # heap at every call, docs/performance.md): the rare branches are
    # methods of their own.
    def tick_handshake(self, now, dt):
        if self.bhm:
            self._bhm_in(now)
        elif ticks_diff(now, self.t) >= self.s.c.bhm_ms:
            self._no_bhm(now)

    def _bhm_in(self, now):
        c = self.s.c
        v = self.s.bms.bhm_max_v
        if v < c.min_v:
            self._ins_fail(now, m.CST_E_VOLTAGE, W.WHY_BHM_LOW)
            return
        self._insulation(now, v if v < c.max_v else c.max_v)

    def _no_bhm(self, now):
        c = self.s.c
        if not c.bhm_legacy:
            self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_NO_BHM, False)
            return
        # No BHM (a 2011-generation BMS, or it is lost): the vehicle's
        # voltage limit is unknown, so never the rated voltage.  Test at
        # the configured bound, or (0, default; EN+) skip the test.
        v = c.no_bhm_ins_v
        if v > c.max_v:
            v = c.max_v
        if v and v >= c.min_v:
            self._insulation(now, v)
        elif self._selfcheck_ok(now):
            self.s.ins_skipped = 1
            self.s.goto(W.RECOGNITION, now)     # (CHM off: recognition starts clean)

    def _ins_fail(self, now, error, why):
        """Stop with the self-check fault of the profile (no exchange)."""
        f = m.CST_F_SELFCHECK if self.s.c.profile == m.PROFILE_2023A else m.CST_F_OTHER
        self.s.end.stop(now, m.CST_R_FAULT, f, error, why, False)

    def _selfcheck_ok(self, now):
        """Voltage outside K1/K2 below ``selfcheck_v`` before any output;
        else stop (nothing may be live on the gun yet)."""
        if self.s.inp.v_outside >= self.s.c.selfcheck_v:
            self._ins_fail(now, m.CST_E_VOLTAGE, W.WHY_SELFCHECK)
            return False
        return True

    def _insulation(self, now, test_v):
        if not self._selfcheck_ok(now):
            return
        self.s.ins_test_v = test_v
        self.s.goto(W.INSULATION, now)

    # -- INSULATION --------------------------------------------------------
    def enter_insulation(self, now):
        c = self.s.c
        out = self.s.out
        # The bleeder is on since boot (safe state): it would load the test
        # voltage and falsify the insulation reading, so it goes off first.
        out.bleed = 0
        out.v_set = self.s.ins_test_v
        out.i_set = c.ins_i
        out.pwr_en = 1
        self.t = now
        self.sub = _UP

    def tick_insulation(self, now, dt):
        if self.bhm and self.sub < _BLEED and self._ins_bhm(now):
            return
        el = ticks_diff(now, self.t)
        if self.sub == _UP:               # output up to the test voltage
            self._ins_up(now, el)
        elif self.sub == _MEASURE:
            self._ins_measure(now, el)
        else:                             # bleed below 60 V within 1 s
            self._ins_bleed(now, el)

    def _ins_bhm(self, now):
        """A BHM during the test (late, after a no-BHM start, or a new
        value): never test above the vehicle's limit once it is known.
        True if the session stopped."""
        bv = self.s.bms.bhm_max_v
        s = self.s
        if 0 <= bv < s.ins_test_v:
            if bv < self.s.c.min_v:
                self._ins_fail(now, m.CST_E_VOLTAGE, W.WHY_BHM_LOW)
                return True
            s.ins_test_v = bv
            self.s.out.v_set = bv
            self.sub = _UP                # settle at the new voltage, then measure
            self.t = now
        return False

    def _ins_up(self, now, el):
        c = self.s.c
        tv = self.s.ins_test_v
        if tv - c.ins_v_tol <= self.s.inp.v_inside <= tv + c.ins_v_tol:
            self.s.out.k12 = 1              # vehicle contactors are still open
            self.s.end.need_bleed = 1       # live until the test's own bleed opens K1/K2
            self.sub = _MEASURE
            self.t = now
        elif el >= c.ins_ramp_ms:
            self._ins_fail(now, 0, W.WHY_INS_VOLT)

    def _ins_measure(self, now, el):
        c = self.s.c
        r = self.s.inp.insulation_kohm
        if el >= c.ins_settle_ms and r >= 0:
            self._ins_measured(now, r)
        elif el >= c.ins_timeout_ms:
            self._ins_fail(now, 0, W.WHY_INS_NOREAD)

    def _ins_measured(self, now, r):
        c = self.s.c
        s = self.s
        # ohm/V = r * 1000 / (tv / 10) = r * 10000 / tv
        tv = s.ins_test_v
        r = r * 10000 // (tv if tv > 0 else 1)
        s.ins_ohm_v = r if r < 0x3FFFFFFF else 0x3FFFFFFF
        if r <= c.ins_fault_ohm_v:
            self._ins_fail(now, 0, W.WHY_INS_FAULT)
            return
        if r <= c.ins_ok_ohm_v:
            s.ins_warn = 1                # 100..500 ohm/V: warning, allowed
        out = self.s.out
        out.pwr_en = 0
        out.v_set = 0
        out.i_set = 0
        out.bleed = 1                     # bleed both sides through K1/K2
        self.sub = _BLEED
        self.t = now

    def _ins_bleed(self, now, el):
        inp = self.s.inp
        v = inp.v_inside if inp.v_inside > inp.v_outside else inp.v_outside
        if v < self.s.c.bleed_v:
            self._ins_open()
            self.s.goto(W.RECOGNITION, now)     # (CHM off: recognition starts clean)
        elif el >= self.s.c.bleed_ms:
            self._ins_open()
            self.s.stoprec.bleed = W.WHY_BLEED
            self._ins_fail(now, 0, W.WHY_BLEED)

    def _ins_open(self):
        out = self.s.out
        out.bleed = 0
        out.k12 = 0
        self.s.end.need_bleed = 0           # discharged by the test's own bleed
