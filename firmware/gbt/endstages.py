"""End stages of the charger session: re-handshake, stopping, statistics,
finish, and the end-of-session bleed.

One object (``EndStages``), made once by ``gbt.session.ChargerSession``,
owns these stages' timers and sub-states; the session calls its
functions through its stage table.  The paths, with the spec clauses behind
them, are drawn in docs/session.md:

* ``stop``: every end (BST, operator, supervisor, trip, target, fault,
  unplug).  CST at 10 ms, current down at ``ramp_stop``, K1/K2 open only
  below ``i_off`` (or after ``open_wait_ms``, recorded), bleed, then - if
  the BMS is in the protocol (BRM seen, or it sent the BST) and still
  connected - wait for BST (``bst_ms`` after the first CST), keep CST until
  BSD arrives, then CSD (``bsd_ms`` from the stop), and only then aux power
  off and unlock below ``unlock_v``.
* ``rehandshake``: a receive timeout (BRM, BCP, BRO, BCL, BCS) or a BEM.
  CEM with the bit at 250 ms, current down, K1/K2 open, CEM kept for
  ``cem_hold_ms``, then CRM 0x00 again; after ``rehs_max`` re-handshakes the
  next one ends the session (communication interrupted, re-plug needed).
"""
from time import ticks_diff

from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt import chargertx as tx_
from gbt import stages as W
from micropython import const

_PGN_BSD = const(0x1C00)


class EndStages:
    def __init__(self, sess):
        self.s = sess
        self.ccs_off_n = -1               # CCS count when K1/K2 opened in STOPPING
        self.cst_n0 = 0                   # CST count at the stop
        self.csd_n0 = -1                  # CSD count when CSD started (-1: not yet)
        self.t_tail = -1                  # first CSD after BSD went out
        self.reset()

    def reset(self):
        """A new plug session."""
        self.brm_ever = 0                 # a BRM was accepted: the BMS is in the protocol
        self.bst_seen = 0
        self.bsd_seen = 0
        self.exchange = 0                 # statistics exchange after the stop
        self.comm_lost = 0                # this re-handshake is one too many
        self.t_stop = 0
        self.aux_done = 0
        # end-of-session bleed: needed once K1/K2 have made the interface live
        self.need_bleed = 0
        self.bleeding = 0
        self.bleed_started = 0
        self.t_bleed = 0

    # -- K1/K2 ------------------------------------------------------------
    def open_k12(self):
        out = self.s.out
        out.pwr_en = 0
        out.i_set = 0
        out.v_set = 0
        out.k12 = 0
        self.s.ctl.drop()

    # -- entry points ------------------------------------------------------
    def stop(self, now, reason, fault, error, why, exchange=True):
        """Begin the end path; the first cause wins (later ones are ignored):
        it alone writes the stop record (CST masks and cause)."""
        s = self.s
        st = s.stage
        if st == W.IDLE or st == W.CONNECTED or st == W.DONE:
            return
        if st == W.STOPPING or st == W.STATISTICS or st == W.FINISH:
            return
        tx = self.s.tx
        ccs = tx.on[tx_.CCS]
        self.ccs_off_n = -1
        tx.stop_all()
        if ccs and st == W.CHARGING:
            # CCS goes on, on its own period, while the current ramps down
            # (until K1/K2 open): the BMS sees the charger's current fall
            # (GB/T 27930 lets CCS run until the charger has stopped).
            tx.keep(tx_.CCS)
        r = s.stoprec                     # (CST says this)
        r.reason = reason
        r.fault = fault
        r.error = error
        r.why = why
        self.t_stop = now
        if st == W.LOCKING:               # no CHM yet: nobody to tell
            self.exchange = 0
            self.finish(now, 0)
            return
        self.cst_n0 = tx.sent[tx_.CST]
        tx.start(tx_.CST, now)
        self.exchange = 1 if (exchange and self.brm_ever) else 0
        s.goto(W.STOPPING, now)

    def rehandshake(self, now, bits, why):
        s = self.s
        st = s.stage
        if st != W.RECOGNITION and st != W.PARAMETER and st != W.PRECHARGE \
                and st != W.CHARGING:
            return
        s.stoprec.timeout = why
        s.cem |= bits
        tx = self.s.tx
        tx.stop_all()
        tx.set_cem(bits)
        if bits:
            tx.start(tx_.CEM, now)
        self.comm_lost = 1 if s.rehandshakes >= self.s.c.rehs_max else 0
        s.goto(W.REHANDSHAKE, now)

    def finish(self, now, cem_bits):
        """Into FINISH: CEM for a BST/BSD timeout, else CSD off."""
        tx = self.s.tx
        tx.stop(tx_.CCS)
        if cem_bits:
            tx.stop(tx_.CST)
            tx.stop(tx_.CSD)
            self.s.cem |= cem_bits
            tx.set_cem(cem_bits)
            tx.start(tx_.CEM, now)
        else:
            tx.stop(tx_.CSD)
        self.aux_done = 0
        if self.s.k_closed():              # LOCKING path / safety net
            self.open_k12()
        self.s.goto(W.FINISH, now)

    def on_message(self, now, pgn):
        """STOPPING / STATISTICS: BSD noted; the rest as in every stage."""
        if pgn == _PGN_BSD:
            self.bsd_seen = 1
        else:
            self.s._on_common(now, pgn)

    def on_other(self, now, pgn):
        """REHANDSHAKE / FINISH: as in every stage (a BSD is not theirs)."""
        self.s._on_common(now, pgn)

    # -- per-tick handlers -------------------------------------------------
    def _current_down(self, now, dt, t0):
        """Ramp to 0 and open K1/K2 below i_off (or after open_wait_ms).
        (Every tick of the end stages: its steps are small methods so that
        no bytecode frame passes the 11 words kept on the C stack; a bigger
        one is taken from the GC heap at each call, docs/performance.md.)"""
        if not self.s.k_closed():
            out = self.s.out
            out.pwr_en = 0                # e.g. pre-charge output on, K1/K2 open
            out.i_set = 0
            out.v_set = 0
            return True
        if self._ramp_down(dt) <= self.s.c.i_off and self.s.inp.i_out <= self.s.c.i_off:
            self.open_k12()
            return True
        if ticks_diff(now, t0) >= self.s.c.open_wait_ms:
            self.s.open_forced += 1
            self.open_k12()
            return True
        return False

    def _ramp_down(self, dt):
        c = self.s.c
        ctl = self.s.ctl
        i = ctl.ramp(0, dt, c.ramp_stop, c.ramp_stop)
        self.s.out.i_set = i
        inp = self.s.inp
        ctl.integrate(inp.v_outside, inp.i_out, dt, False)
        self.s.energy_wh = ctl.energy_wh
        return i

    def exit_rehandshake(self, now):
        self.s.tx.stop(tx_.CEM)

    def tick_rehandshake(self, now, dt):
        s = self.s
        if not self._current_down(now, dt, s.stage_entered_ms):
            return
        if ticks_diff(now, s.stage_entered_ms) < self.s.c.cem_hold_ms:
            return
        if self.comm_lost:
            self.s.tx.stop(tx_.CEM)
            s.stoprec.why = W.WHY_COMM
            s.need_replug = 1
            self.t_stop = now
            self.finish(now, 0)
            return
        s.rehandshakes += 1
        s.goto(W.RECOGNITION, now)

    def tick_end(self, now, dt):
        """STOPPING, STATISTICS, FINISH: the stage's step, then the end
        bleed (which runs on across the three)."""
        st = self.s.stage
        if st == W.STOPPING:
            self._stopping(now, dt)
        elif st == W.STATISTICS:
            self._statistics(now)
        else:
            self._finish(now)
        if self.bleeding:
            self._bleed_tick(now)

    def _stopping(self, now, dt):
        if (self._current_down(now, dt, self.t_stop) and self.need_bleed
                and not self.bleed_started):
            self._bleed_start(now)
        tx = self.s.tx
        if tx.on[tx_.CCS]:
            v = self.s.inp.v_outside
            i = self.s.inp.i_out
            tx.set_ccs_out(v if v > 0 else 0, i if i > 0 else 0)
            if not self.s.k_closed():
                # output off: one more CCS shows it (the current the BMS
                # must see fall), then CCS ends
                if self.ccs_off_n < 0:
                    self.ccs_off_n = tx.sent[tx_.CCS]
                    return
                if tx.sent[tx_.CCS] == self.ccs_off_n:
                    return                # wait for that CCS before statistics
                tx.stop(tx_.CCS)
                self.ccs_off_n = -1
        if self.s.k_closed():
            return
        if not self.exchange:
            self.finish(now, 0)
            return
        # Statistics only once a CST has really gone out: a BMS that sent BST
        # waits for the CST answer before its statistics (K1/K2 may already
        # be open in the very tick of the stop, e.g. before charging).
        if self.bst_seen and tx.sent[tx_.CST] != self.cst_n0:
            self.s.goto(W.STATISTICS, now)
            return
        if ticks_diff(now, tx.cst_started_ms()) >= self.s.c.bst_ms:
            self.s.stoprec.detail = W.WHY_BST_TO
            self.finish(now, m.CEM_BST)

    def enter_statistics(self, now):
        # CST goes on (10 ms) until the BSD: EN+ and the GB/T 27930-2023
        # sequence; GB/T 34658 DN4002 caps it at cst_max_ms from the first.
        self.csd_n0 = -1                  # -1: CSD not started yet
        self.t_tail = -1
        self.s.tx.stop(tx_.CCS)
        if self.bsd_seen:
            self._csd_on(now)

    def _csd_on(self, now):
        """BSD received: CST off, CSD on (its first frame in this tick)."""
        tx = self.s.tx
        tx.stop(tx_.CST)
        tx.set_csd(self.s.ctl.minutes(), self.s.ctl.energy_wh // 100)
        self.csd_n0 = tx.sent[tx_.CSD]
        tx.start(tx_.CSD, now)

    def _statistics(self, now):
        if not self.exchange:             # connector removed meanwhile
            self.s.tx.stop(tx_.CST)
            self.finish(now, 0)
            return
        if self.bsd_seen and self.csd_n0 < 0:
            self._csd_on(now)
            return
        if self.bsd_seen and self.s.tx.sent[tx_.CSD] != self.csd_n0:
            if self.t_tail < 0:
                self.t_tail = now
            if ticks_diff(now, self.t_tail) >= self.s.c.csd_tail_ms:
                self.finish(now, 0)
            return
        if ticks_diff(now, self.t_stop) >= self.s.c.bsd_ms:
            self.s.stoprec.detail = W.WHY_BSD_TO
            self.finish(now, m.CEM_BSD)

    def _finish(self, now):
        c = self.s.c
        out = self.s.out
        if not self.aux_done:
            if self.s.tx.on[tx_.CEM] and ticks_diff(now, self.s.stage_entered_ms) < c.cem_hold_ms:
                return
            self.s.tx.stop(tx_.CEM)
            out.k34 = 0                   # aux power off: CSD sent + BSD in (or timed out)
            self.aux_done = 1
        if self.bleeding:
            return
        if self.s.k_closed() or self.s.inp.v_outside >= c.unlock_v:
            return                        # keep the gun locked while it is live
        out.lock = 0
        self.s.goto(W.DONE, now)

    # -- bleed at the end (only ever on in STOPPING, STATISTICS, FINISH) -------
    def _bleed_start(self, now):
        self.s.out.bleed = 1
        self.bleeding = 1
        self.bleed_started = 1
        self.t_bleed = now

    def _bleed_tick(self, now):
        inp = self.s.inp
        v = inp.v_outside
        if self.s.k_closed() and inp.v_inside > v:
            v = inp.v_inside
        if v < self.s.c.bleed_v:
            self.s.out.bleed = 0
            self.bleeding = 0
        elif ticks_diff(now, self.t_bleed) >= self.s.c.bleed_ms:
            self.s.out.bleed = 0            # a bleeder is not rated for a battery
            self.bleeding = 0
            self.s.stoprec.bleed = W.WHY_BLEED
