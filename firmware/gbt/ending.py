"""End paths of the charger session: stop, re-handshake, statistics, finish.

A mixin of ``gbt.session.ChargerSession`` (kept apart so each module stays
small; it uses the session's attributes directly).  The paths, with the
spec clauses behind them, are drawn in docs/session.md:

* ``_stop``: every end (BST, operator, supervisor, trip, target, fault,
  unplug).  CST at 10 ms, current down at ``ramp_stop``, K1/K2 open only
  below ``i_off`` (or after ``open_wait_ms``, recorded), bleed, then - if
  the BMS is in the protocol (BRM seen, or it sent the BST) and still
  connected - wait for BST (``bst_ms`` after the first CST), keep CST until
  BSD arrives, then CSD (``bsd_ms`` from the stop), and only then aux power
  off and unlock below ``unlock_v``.
* ``_rehandshake``: a receive timeout (BRM, BCP, BRO, BCL, BCS) or a BEM.
  CEM with the bit at 250 ms, current down, K1/K2 open, CEM kept for
  ``cem_hold_ms``, then CRM 0x00 again; after ``rehs_max`` re-handshakes the
  next one ends the session (communication interrupted, re-plug needed).
"""
from time import ticks_diff

from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt import chargertx as tx_
from gbt.stages import (RECOGNITION, PARAMETER, PRECHARGE, CHARGING,
                        REHANDSHAKE, STOPPING, STATISTICS, FINISH, DONE,
                        IDLE, CONNECTED, LOCKING, WHY_COMM, WHY_BST_TO,
                        WHY_BSD_TO)


class Ending:
    # -- entry points ------------------------------------------------------
    def _stop(self, now, reason, fault, error, why, exchange=True):
        """Begin the end path; the first cause wins (later ones are ignored)."""
        st = self.stage
        if st == IDLE or st == CONNECTED or st == DONE:
            return
        if st == STOPPING or st == STATISTICS or st == FINISH:
            return
        self.stop_why = why
        tx = self.tx
        ccs = tx.on[tx_.CCS]
        self._ccs_off_n = -1
        tx.stop_all()
        if ccs and st == CHARGING:
            # CCS goes on, on its own period, while the current ramps down
            # (until K1/K2 open): the BMS sees the charger's current fall
            # (GB/T 27930 lets CCS run until the charger has stopped).
            tx.keep(tx_.CCS)
        tx.set_cst(reason, fault, error)
        self._t_stop = now
        if st == LOCKING:                 # no CHM yet: nobody to tell
            self._exchange = 0
            self._enter_finish(now, 0)
            return
        self._cst_n0 = tx.sent[tx_.CST]
        tx.start(tx_.CST, now)
        self._exchange = 1 if (exchange and self._brm_ever) else 0
        self._enter(STOPPING, now)

    def _rehandshake(self, now, bits, why):
        st = self.stage
        if st != RECOGNITION and st != PARAMETER and st != PRECHARGE and st != CHARGING:
            return
        self.timeout_why = why
        self.cem |= bits
        tx = self.tx
        tx.stop_all()
        tx.set_cem(bits)
        if bits:
            tx.start(tx_.CEM, now)
        self._comm_lost = 1 if self.rehandshakes >= self.c.rehs_max else 0
        self._enter(REHANDSHAKE, now)

    # -- per-tick handlers -------------------------------------------------
    def _current_down(self, now, dt, t0):
        """Ramp to 0 and open K1/K2 below i_off (or after open_wait_ms).
        (Every tick of the end stages: its steps are small methods so that
        no bytecode frame passes the 11 words kept on the C stack; a bigger
        one is taken from the GC heap at each call, docs/performance.md.)"""
        if not self._k12:
            out = self.out
            out.pwr_en = 0                # e.g. pre-charge output on, K1/K2 open
            out.i_set = 0
            out.v_set = 0
            return True
        if self._ramp_down(dt) <= self.c.i_off and self.inp.i_out <= self.c.i_off:
            self._open_k12()
            return True
        if ticks_diff(now, t0) >= self.c.open_wait_ms:
            self.open_forced += 1
            self._open_k12()
            return True
        return False

    def _ramp_down(self, dt):
        c = self.c
        i = self.ctl.ramp(0, dt, c.ramp_stop, c.ramp_stop)
        self.out.i_set = i
        inp = self.inp
        self.ctl.integrate(inp.v_outside, inp.i_out, dt, False)
        self.energy_wh = self.ctl.energy_wh
        return i

    def _tick_rehandshake(self, now, dt):
        if not self._current_down(now, dt, self.stage_entered_ms):
            return
        if ticks_diff(now, self.stage_entered_ms) < self.c.cem_hold_ms:
            return
        self.tx.stop(tx_.CEM)
        if self._comm_lost:
            self.stop_why = WHY_COMM
            self.need_replug = 1
            self._t_stop = now
            self._enter_finish(now, 0)
            return
        self.rehandshakes += 1
        self._enter_recognition(now)

    def _tick_stopping(self, now, dt):
        if (self._current_down(now, dt, self._t_stop) and self._need_bleed
                and not self._bleed_started):
            self._bleed_start(now)
        tx = self.tx
        if tx.on[tx_.CCS]:
            v = self.inp.v_outside
            i = self.inp.i_out
            tx.set_ccs_out(v if v > 0 else 0, i if i > 0 else 0)
            if not self._k12:
                # output off: one more CCS shows it (the current the BMS
                # must see fall), then CCS ends
                if self._ccs_off_n < 0:
                    self._ccs_off_n = tx.sent[tx_.CCS]
                    return
                if tx.sent[tx_.CCS] == self._ccs_off_n:
                    return                # wait for that CCS before statistics
                tx.stop(tx_.CCS)
                self._ccs_off_n = -1
        if self._k12:
            return
        if not self._exchange:
            self._enter_finish(now, 0)
            return
        # Statistics only once a CST has really gone out: a BMS that sent BST
        # waits for the CST answer before its statistics (K1/K2 may already
        # be open in the very tick of the stop, e.g. before charging).
        if self._bst_seen and self.tx.sent[tx_.CST] != self._cst_n0:
            self._enter_statistics(now)
            return
        if ticks_diff(now, self.tx.cst_started_ms()) >= self.c.bst_ms:
            self.stop_detail = WHY_BST_TO
            self._enter_finish(now, m.CEM_BST)

    def _enter_statistics(self, now):
        # CST goes on (10 ms) until the BSD: EN+ and the GB/T 27930-2023
        # sequence; GB/T 34658 DN4002 caps it at cst_max_ms from the first.
        self._csd_n0 = -1                 # -1: CSD not started yet
        self._t_tail = -1
        self.tx.stop(tx_.CCS)
        self._enter(STATISTICS, now)
        if self._bsd_seen:
            self._csd_on(now)

    def _csd_on(self, now):
        """BSD received: CST off, CSD on (its first frame in this tick)."""
        tx = self.tx
        tx.stop(tx_.CST)
        tx.set_csd(self.ctl.minutes(), self.ctl.energy_wh // 100)
        self._csd_n0 = tx.sent[tx_.CSD]
        tx.start(tx_.CSD, now)

    def _tick_statistics(self, now):
        if not self._exchange:            # connector removed meanwhile
            self.tx.stop(tx_.CST)
            self._enter_finish(now, 0)
            return
        if self._bsd_seen and self._csd_n0 < 0:
            self._csd_on(now)
            return
        if self._bsd_seen and self.tx.sent[tx_.CSD] != self._csd_n0:
            if self._t_tail < 0:
                self._t_tail = now
            if ticks_diff(now, self._t_tail) >= self.c.csd_tail_ms:
                self._enter_finish(now, 0)
            return
        if ticks_diff(now, self._t_stop) >= self.c.bsd_ms:
            self.stop_detail = WHY_BSD_TO
            self._enter_finish(now, m.CEM_BSD)

    def _enter_finish(self, now, cem_bits):
        tx = self.tx
        tx.stop(tx_.CCS)
        if cem_bits:
            tx.stop(tx_.CST)
            tx.stop(tx_.CSD)
            self.cem |= cem_bits
            tx.set_cem(cem_bits)
            tx.start(tx_.CEM, now)
        else:
            tx.stop(tx_.CSD)
        self._aux_done = 0
        if self._k12:                     # LOCKING path / safety net
            self._open_k12()
        self._enter(FINISH, now)

    def _tick_finish(self, now):
        c = self.c
        out = self.out
        if not self._aux_done:
            if self.tx.on[tx_.CEM] and ticks_diff(now, self.stage_entered_ms) < c.cem_hold_ms:
                return
            self.tx.stop(tx_.CEM)
            out.k34 = 0                   # aux power off: CSD sent + BSD in (or timed out)
            self._aux_done = 1
        if self._bleeding:
            return
        if self._k12 or self.inp.v_outside >= c.unlock_v:
            return                        # keep the gun locked while it is live
        out.lock = 0
        self._enter(DONE, now)
