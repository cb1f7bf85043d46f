"""The CHARGING stage of the charger session (the hot path).

One object (``Charging``), made once by ``gbt.session.ChargerSession``,
owns the BCL/BCS receive timers, the BSM pause timer and whether energy
flows (CRO off, CCS on).  Its ``tick`` and ``on_message`` run every 10 ms /
for every BCL, BCS, BSM and allocate nothing.
"""
from time import ticks_diff

from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt import chargertx as tx_
from gbt import stages as W
import micropython
from micropython import const

_PGN_BRO = const(0x0900)
_PGN_BCL = const(0x1000)
_PGN_BCS = const(0x1100)
_PGN_BSM = const(0x1300)


class Charging:
    def __init__(self, sess):
        # (the session's collaborators are read through ``s``, not copied
        # here: each copy would be an instance-table slot; the tick reads
        # each once, as it would its own)
        self.s = sess
        self.enter(0)

    def enter(self, now):
        # every charging-stage timeout runs from K1/K2 closing (restarted
        # at the first CRO 0xAA really sent, ``_arm_timers``)
        self.t_bcl = now
        self.t_bcs = now
        self.t_pause = -1                 # BSM pause start (-1: not paused)
        self.bcl_seen = 0
        self.bcs_seen = 0
        self.flowing = 0                  # CRO off, CCS on
        self.armed = 0                    # the timers count from the first CRO 0xAA

    # Machine code (viper): in bytecode this function needs a 25-word frame,
    # and every bytecode call of a function whose locals + value stack pass
    # 11 words takes its frame from the GC heap (py/objfun.c,
    # VM_MAX_STATE_ON_STACK): an allocation and a free per tick, 1..20 kinstr
    # depending on how fragmented the heap is.  A viper function keeps its
    # locals on the C stack and does its small-int arithmetic in registers.
    # Rare branches call the bytecode helpers below.  ``now``/``dt`` are
    # ticks/ms far below 2**30 (32-bit words give Python's results);
    # ``ticks_diff`` is the port's own (called), so wrapping ticks stay right.
    @micropython.viper
    def tick(self, now: int, dt: int):
        s = self.s
        c = s.c
        tx = s.tx
        # The BCL/BCS timers run from the entry into CHARGING (``enter``);
        # the first CRO 0xAA really sent restarts them (spec 4.2: "from CRO
        # 0xAA sent / the last BCL"), unless a message came later.  CCS
        # replaces CRO only after that CRO 0xAA went out, even if a BMS sent
        # BCL/BCS before it (on_message).
        if not self.armed:
            self._arm_timers(now)
        if int(ticks_diff(now, self.t_bcl)) >= int(c.bcl_ms):
            self.s.end.rehandshake(now, m.CEM_BCL, W.WHY_BCL_TO)
            return
        if int(ticks_diff(now, self.t_bcs)) >= int(c.bcs_ms):
            self.s.end.rehandshake(now, m.CEM_BCS, W.WHY_BCS_TO)
            return
        b = s.bms
        inp = s.inp
        out = s.out
        ctl = s.ctl
        v = int(inp.v_outside)
        i_meas = int(inp.i_out)
        if i_meas < 0:
            i_meas = 0
        demand = 0
        if int(b.permit) == 0:            # BSM pause
            if self._pause(now):
                return
            permit = 0
        else:
            self.t_pause = -1
            permit = 1
            if int(self.bcl_seen) and int(self.flowing):
                demand = 1
        # limit + ramp + v_limit + energy/time in one call (Control.charge_step)
        out.i_set = ctl.charge_step(b, s.i_cap, v, i_meas, dt, c.ramp_up, c.ramp_down,
                                    demand)
        if self.bcl_seen:
            out.v_set = ctl.v_set
        e = int(ctl.energy_wh)
        s.energy_wh = e
        mins = int(ctl.charge_ms) // 60000     # ctl.minutes()
        s.charge_min = mins
        tx.set_ccs(v if v > 0 else 0, i_meas, mins if mins < 600 else 600, permit)
        t = int(c.target_wh)
        if t and e >= t:
            self._target(now, dt)
            return
        t = int(c.target_min)
        if t and mins >= t:
            self._target(now, dt)
            return
        t = int(c.target_soc)
        if t and int(b.soc) >= t:
            self._target(now, dt)

    def _arm_timers(self, now):
        tx = self.s.tx
        t0 = tx.aa_sent_ms(tx_.CRO)
        if t0 >= 0:
            self.armed = 1
            if ticks_diff(t0, self.t_bcl) > 0:
                self.t_bcl = t0
            if ticks_diff(t0, self.t_bcs) > 0:
                self.t_bcs = t0
            if (self.bcl_seen or self.bcs_seen) and not self.flowing:
                self._flow(now)

    def _pause(self, now):
        """BSM permit 00: True if the pause lasted too long (stopped)."""
        if self.t_pause < 0:
            self.t_pause = now
        elif ticks_diff(now, self.t_pause) >= self.s.c.pause_ms:
            self.s.end.stop(now, m.CST_R_CONDITION, 0, 0, W.WHY_PAUSE, True)
            return True
        return False

    def _target(self, now, dt):
        s = self.s
        c = s.c
        s.end.stop(now, m.CST_R_CONDITION, 0, 0, W.WHY_TARGET, True)
        # The first CST goes out in this tick: start the stop ramp in it
        # too, or 200 A needs 110 ms (figure A.6: <= 5 A 100 ms after CST).
        s.out.i_set = s.ctl.ramp(0, dt, c.ramp_stop, c.ramp_stop)

    # -- messages (BCL, BCS, BSM first: they come all the time) -------------
    def on_message(self, now, pgn):
        if pgn == _PGN_BCL:
            self.t_bcl = now
            self.bcl_seen = 1
            if not self.flowing and self.s.tx.aa_sent_ms(tx_.CRO) >= 0:
                self._flow(now)
        elif pgn == _PGN_BCS:
            self.t_bcs = now
            self.bcs_seen = 1
            if not self.flowing and self.s.tx.aa_sent_ms(tx_.CRO) >= 0:
                self._flow(now)
        elif pgn == _PGN_BSM:
            b = self.s.bms
            if b.st_oc or b.st_cell_v or b.st_soc or b.st_ot or b.st_ins or b.st_conn:
                self._bsm_stop(now)
        elif pgn == _PGN_BRO:
            if self.s.bms.bro == 0x00:
                self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_BRO_DROP, True)
        else:
            self.s._on_common(now, pgn)

    def _flow(self, now):
        """First BCL/BCS once CRO 0xAA has been sent: CRO off, CCS on."""
        self.flowing = 1
        tx = self.s.tx
        tx.stop(tx_.CRO)
        tx.start(tx_.CCS, now)

    def _bsm_stop(self, now):
        b = self.s.bms
        err = 0
        if b.st_oc:
            err |= m.CST_E_CURRENT
        if b.st_cell_v:
            err |= m.CST_E_VOLTAGE
        self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_OTHER, err, W.WHY_BSM, True)
