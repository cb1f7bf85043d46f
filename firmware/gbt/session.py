"""GB/T 27930 charger-side session: the stage machine from plug to unplug.

``ChargerSession(cfg, send, inp, out, bms, link)``; the app calls
``tick(now)`` every 10 ms (after the protection and CAN tasks, before
``board.write_outputs(out)``).  The session reads ``inp`` (measurements) and
``bms`` (decoded BMS messages), writes only ``out`` (k12, k34, lock, bleed,
pwr_en, v_set, i_set) and sends frames through ``send(can_id, buf, n)``.
Messages arrive through ``link`` -> ``on_message(now, pgn, status)``.

Discrete outputs (contactors, aux, lock, bleed, enable) are written only
when the session changes them, set-points every control tick: a safety
supervisor that overrides ``out`` keeps its override until the session is
told (``on_trip``).  Stage diagram, timeouts, end paths: docs/session.md.

Hot path (CHARGING tick and the BCL/BCS/BSM handlers) allocates nothing.
"""
from time import ticks_diff

from gbt import ids
from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt import chargertx as tx_
from gbt.chargertx import ChargerTx
from gbt.control import Control
from gbt.intrusion import IX_BCP_LATE, IX_BRM_LATE, IX_STAGE_MSG
from gbt.ending import Ending
from gbt.startup import Startup
from gbt.sessioncfg import SessionConfig, CONFIG_SCHEMA  # noqa: F401
from gbt.stages import (IDLE, CONNECTED, LOCKING, HANDSHAKE, INSULATION,
                        RECOGNITION, PARAMETER, PRECHARGE, CHARGING,
                        REHANDSHAKE, STOPPING, STATISTICS, FINISH, DONE,
                        STAGE_NAMES)
from gbt import stages as W
import micropython
from micropython import const

# gbt.ids / gbt.dec values as consts of this module (folded at compile time)
_OK = const(0)
_E_RANGE = const(2)
_PGN_BRM = const(0x0200)
_PGN_BCP = const(0x0600)
_PGN_BRO = const(0x0900)
_PGN_BCL = const(0x1000)
_PGN_BCS = const(0x1100)
_PGN_BSM = const(0x1300)
_PGN_BMV = const(0x1500)          # BMV, BMT, BSP: 0x1500..0x1700
_PGN_BSP = const(0x1700)
_PGN_BST = const(0x1900)
_PGN_BSD = const(0x1C00)
_PGN_BEM = const(0x1E00)
_PGN_BHM = const(0x2700)


def _bem_timeout(bem):
    """True if any BEM 2-bit field reads 01 (a timeout reported)."""
    if bem < 0:
        return False
    for s in (0, 2, 8, 10, 16, 18, 24):
        if ((bem >> s) & 3) == 1:
            return True
    return False


class ChargerSession(Startup, Ending):
    def __init__(self, cfg, send, inp, out, bms, link):
        self.c = c = SessionConfig(cfg)
        self.inp = inp
        self.out = out
        self.bms = bms
        self.link = link
        self.tx = ChargerTx(send, c)
        self.ctl = Control(c)
        self.i_cap = c.max_i          # app: supervisor current limit (0.1 A), every tick
        self.vin_check = None         # app: fn(vin_str) -> bool or (ok, reason)
        self.start_gate = None        # app: fn() -> (ok, reason), asked once per start
        self.refused = None           # reason the last start was refused
        self.stage = IDLE
        self.stage_entered_ms = 0
        # ``charging``, ``energy_wh``, ``charge_min`` are plain attributes,
        # kept up to date where they change, not properties: a property on
        # the class makes *every* attribute store on the instance look the
        # name up through the class and its mixins first (MicroPython), ~1.2
        # instead of ~0.1 kinstr per ``self.x = ...`` on the target
        # (docs/performance.md).
        self.charging = False     # energy may flow (CHARGING): the supervisor follows it
        self.energy_wh = 0        # = ctl.energy_wh
        self.charge_min = 0       # = ctl.minutes()
        self._last = -1
        self._cc1_in = -1
        self._cc1_out = -1
        self._pend_start = 0
        self._pend_stop = 0
        self._pend_unplug = 0
        self._ccs_off_n = -1              # CCS count when K1/K2 opened in STOPPING
        self.profile = c.profile
        if link is not None:
            link.set_handler(self.on_message)   # bound methods made once
            link.set_gate(self._gate)
        self._reset_plug()

    # -- public API --------------------------------------------------------
    def operator_start(self):
        self._pend_start = 1
        self.refused = None

    def operator_stop(self):
        self._pend_stop = 1
        self._pend_start = 0

    def plug_event(self, now, plugged):
        """Extra plug information (e.g. an interrupt-driven detector):
        ``plugged`` False ends a session at once, without the CC1 debounce.
        Plug-in is always decided from ``inp.cc1_mv``."""
        if not plugged:
            self._pend_unplug = 1

    def request_stop(self, now, reason, fault, error, why):
        """Controlled stop (level II): ramp down, CST with these masks."""
        self._stop(now, reason or m.CST_R_FAULT, fault, error, why, True)

    def on_trip(self, now, fault, error, why):
        """The supervisor has already cut the output: open K1/K2 in our
        bookkeeping too, report CST (fault) and finish the end stage."""
        self.trip_why = why
        out = self.out
        out.pwr_en = 0
        out.i_set = 0
        out.v_set = 0
        self.ctl.drop()
        if self._k12:
            self._open_k12()
        # The supervisor passes its numeric trip cause: ``stop_why`` stays a
        # text (the app logs ``stop_why[:8]``), the code is in ``trip_why``.
        self._stop(now, m.CST_R_FAULT, fault, error,
                   why if isinstance(why, str) else W.WHY_TRIP, True)

    def stage_name(self):
        return STAGE_NAMES[self.stage]

    # -- bookkeeping -------------------------------------------------------
    def _reset_plug(self):
        """A new plug session: forget everything about the last one."""
        self.bms.reset()
        if self.link is not None:
            self.link.reset()
        self.tx.reset()
        self.ctl.reset()
        self.energy_wh = 0
        self.charge_min = 0
        self.stop_why = W.WHY_NONE
        self.stop_detail = W.WHY_NONE     # BST/BSD timeout after the stop
        self.timeout_why = W.WHY_NONE     # cause of the last re-handshake
        self.trip_why = W.WHY_NONE
        self.fault_why = W.WHY_NONE       # bleed failure at the end
        self.vin_why = None
        self.cem = 0                      # every CEM bit sent this plug session
        self.rehandshakes = 0
        self.need_replug = 0
        self.ins_ohm_v = -1
        self.ins_warn = 0
        self.ins_test_v = 0
        self.ins_skipped = 0              # no BHM: insulation test skipped (no_bhm_ins_v 0)
        self.open_forced = 0
        self.rx_bad = 0
        self._k12 = 0
        self._bleeding = 0
        self._bleed_started = 0
        self._need_bleed = 0
        self._t_bleed = 0
        self._brm_ever = 0
        self._bst_seen = 0
        self._bsd_seen = 0
        self._bhm = 0
        self._exchange = 0
        self._comm_lost = 0
        self._t_stop = 0
        self._aux_done = 0
        self._reset_attempt()

    def _reset_attempt(self):
        """A new handshake attempt (first one or a re-handshake)."""
        self._brm = 0
        self._bcp = 0
        self._bro_seen = 0
        self._bro_aa = 0
        self._bcl_seen = 0
        self._bcs_seen = 0
        self._flowing = 0
        self._armed = 0
        self._cml_n = 0                   # CML / CTS sent-counters at PARAMETER entry
        self._cts_n = 0
        self._rej = 0                     # BCP rejected: CML once, then CST
        self._rej_n = 0
        self._rej_err = 0
        self._rej_why = W.WHY_NONE
        self._t_bcl = 0
        self._t_bcs = 0
        self._t_pause = -1
        self._sub = 0
        self._t = 0

    def _enter(self, stage, now):
        self.stage = stage
        self.charging = stage == CHARGING
        self.stage_entered_ms = now
        self._sub = 0
        self._t = now

    def _open_k12(self):
        out = self.out
        out.pwr_en = 0
        out.i_set = 0
        out.v_set = 0
        if self._k12:
            self._need_bleed = 1          # the interface was live
        out.k12 = 0
        self._k12 = 0
        self.ctl.drop()

    def _bleed_start(self, now):
        self.out.bleed = 1
        self._bleeding = 1
        self._bleed_started = 1
        self._t_bleed = now

    def _bleed_tick(self, now):
        inp = self.inp
        v = inp.v_outside
        if self._k12 and inp.v_inside > v:
            v = inp.v_inside
        if v < self.c.bleed_v:
            self.out.bleed = 0
            self._bleeding = 0
        elif ticks_diff(now, self._t_bleed) >= self.c.bleed_ms:
            self.out.bleed = 0            # a bleeder is not rated for a battery
            self._bleeding = 0
            self.fault_why = W.WHY_BLEED
        return not self._bleeding

    def _selfcheck_fault(self):
        return m.CST_F_SELFCHECK if self.profile == m.PROFILE_2023A else m.CST_F_OTHER

    # -- the tick ------------------------------------------------------------
    def tick(self, now):
        dt = 0 if self._last < 0 else ticks_diff(now, self._last)
        self._last = now
        st = self.stage
        c = self.c
        mv = self.inp.cc1_mv
        if c.cc1_lo_mv <= mv <= c.cc1_hi_mv:
            self._cc1_out = -1
            if self._cc1_in < 0:
                self._cc1_in = now
        else:
            self._cc1_in = -1
            if self._cc1_out < 0:
                self._cc1_out = now
        if st == IDLE or st == DONE or st == CONNECTED:
            self._tick_waiting(now, st)
        else:
            if self._pend_unplug or self._pend_stop or self._cc1_out >= 0:
                self._global(now)         # (nothing to do otherwise: skip the call)
            st = self.stage
            if st == CHARGING:            # hot path first
                self._tick_charging(now, dt)
            else:
                self._tick_active(now, dt, st)
        if self._bleeding:
            self._bleed_tick(now)
        self.tx.service(now)

    def _plugged(self, now):
        return self._cc1_in >= 0 and ticks_diff(now, self._cc1_in) >= self.c.cc1_on_ms

    def _tick_waiting(self, now, st):
        if st == IDLE:
            self._pend_stop = 0
            if self._plugged(now):
                self._reset_plug()
                self.refused = None
                self._enter(CONNECTED, now)
            return
        if st == DONE:
            if self._cc1_out >= 0 and ticks_diff(now, self._cc1_out) >= self.c.replug_ms:
                self.tx.stop_all()
                self._enter(IDLE, now)
                self._pend_start = 0
            elif self._pend_start and not self.need_replug and self._plugged(now):
                # a new session on the same plug: through CONNECTED, so the
                # start gate (lockout, latched faults) is asked again
                self._reset_plug()
                self._enter(CONNECTED, now)
                return
            self._pend_start = 0
            return
        # CONNECTED
        if self._cc1_out >= 0:
            self._enter(IDLE, now)
            return
        if self._pend_stop:
            self._pend_stop = 0
            self._pend_start = 0
        elif self._pend_start or (self.c.auto_start and self.refused is None):
            gate = self.start_gate
            if gate is not None:
                ok, why = gate()
                if not ok:
                    # Stay CONNECTED; an operator start (or a re-plug) asks again.
                    self.refused = why
                    self._pend_start = 0
                    return
            self.refused = None
            self._start(now)

    def _start(self, now):
        self._pend_start = 0
        self.out.lock = 1
        self._enter(LOCKING, now)

    def _global(self, now):
        """Connector removed / operator stop: the same in every active stage."""
        if self._pend_unplug or (self._cc1_out >= 0 and
                                 ticks_diff(now, self._cc1_out) >= self.c.cc1_lost_ms):
            self._pend_unplug = 0
            self._unplugged(now)
        if self._pend_stop:
            self._pend_stop = 0
            self._stop(now, m.CST_R_MANUAL, 0, 0, W.WHY_OPERATOR, True)

    def _tick_active(self, now, dt, st):
        if st == LOCKING:
            self._tick_locking(now)
        elif st == HANDSHAKE:
            self._tick_handshake(now)
        elif st == INSULATION:
            self._tick_insulation(now)
        elif st == RECOGNITION:
            self._tick_recognition(now)
        elif st == PARAMETER:
            self._tick_parameter(now)
        elif st == PRECHARGE:
            self._tick_precharge(now)
        elif st == REHANDSHAKE:
            self._tick_rehandshake(now, dt)
        elif st == STOPPING:
            self._tick_stopping(now, dt)
        elif st == STATISTICS:
            self._tick_statistics(now)
        elif st == FINISH:
            self._tick_finish(now)

    def _unplugged(self, now):
        self.need_replug = 1
        self._exchange = 0                # CAN goes with the connector
        st = self.stage
        if st == STOPPING or st == STATISTICS or st == FINISH:
            return
        self.ctl.drop()
        self.out.i_set = 0
        self._stop(now, m.CST_R_FAULT, m.CST_F_CONNECTOR, 0, W.WHY_UNPLUG, False)

    # -- charging (hot path: no allocation) ----------------------------------
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
    def _tick_charging(self, now: int, dt: int):
        c = self.c
        tx = self.tx
        # The BCL/BCS timers run from the entry into CHARGING
        # (_tick_precharge); the first CRO 0xAA really sent restarts them
        # (spec 4.2: "from CRO 0xAA sent / the last BCL"), unless a message
        # came later.  CCS replaces CRO only after that CRO 0xAA went out,
        # even if a BMS sent BCL/BCS before it (on_message).
        if not self._armed:
            self._arm_timers(now)
        if int(ticks_diff(now, self._t_bcl)) >= int(c.bcl_ms):
            self._rehandshake(now, m.CEM_BCL, W.WHY_BCL_TO)
            return
        if int(ticks_diff(now, self._t_bcs)) >= int(c.bcs_ms):
            self._rehandshake(now, m.CEM_BCS, W.WHY_BCS_TO)
            return
        b = self.bms
        inp = self.inp
        out = self.out
        ctl = self.ctl
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
            self._t_pause = -1
            permit = 1
            if int(self._bcl_seen) and int(self._flowing):
                demand = 1
        # limit + ramp + v_limit + energy/time in one call (Control.charge_step)
        out.i_set = ctl.charge_step(b, self.i_cap, v, i_meas, dt, c.ramp_up, c.ramp_down,
                                    demand)
        if self._bcl_seen:
            out.v_set = ctl.v_set
        e = int(ctl.energy_wh)
        self.energy_wh = e
        mins = int(ctl.charge_ms) // 60000     # ctl.minutes()
        self.charge_min = mins
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
        tx = self.tx
        t0 = tx.aa_sent_ms(tx_.CRO)
        if t0 >= 0:
            self._armed = 1
            if ticks_diff(t0, self._t_bcl) > 0:
                self._t_bcl = t0
            if ticks_diff(t0, self._t_bcs) > 0:
                self._t_bcs = t0
            if (self._bcl_seen or self._bcs_seen) and not self._flowing:
                self._flow(now)

    def _pause(self, now):
        """BSM permit 00: True if the pause lasted too long (stopped)."""
        if self._t_pause < 0:
            self._t_pause = now
        elif ticks_diff(now, self._t_pause) >= self.c.pause_ms:
            self._stop(now, m.CST_R_CONDITION, 0, 0, W.WHY_PAUSE, True)
            return True
        return False

    def _target(self, now, dt):
        c = self.c
        self._stop(now, m.CST_R_CONDITION, 0, 0, W.WHY_TARGET, True)
        # The first CST goes out in this tick: start the stop ramp in it
        # too, or 200 A needs 110 ms (figure A.6: <= 5 A 100 ms after CST).
        self.out.i_set = self.ctl.ramp(0, dt, c.ramp_stop, c.ramp_stop)

    # -- messages ------------------------------------------------------------
    def _gate(self, now, pgn):
        """Asked by the link before a complete BRM / BCP is decoded into
        ``bms``: True only in its stage (BRM: recognition until one is
        accepted; BCP: recognition after BRM until one is accepted), so the
        VIN, the battery data and the limits the safety checks compare
        against cannot be rewritten later.  A refused one is never decoded;
        one that a legitimate BMS cannot send any more (BMS past the
        configuration, a BCP was accepted) is noted as intrusion evidence.
        Repeats a BMS sends before it has seen CRM 0xAA / CML (recognition,
        parameter stage) and anything during a re-handshake hold are
        dropped quietly.  Allocation-free."""
        st = self.stage
        if pgn == ids.PGN_BCP:
            if st == RECOGNITION and self._brm and not self._bcp and not self._rej:
                return True
            if self._bcp and st != RECOGNITION and st != PARAMETER and st != REHANDSHAKE:
                self.link.ix.note(now, IX_BCP_LATE, pgn)
            return False
        if st == RECOGNITION and not self._brm:
            return True
        if self._bcp and st != RECOGNITION and st != REHANDSHAKE:
            self.link.ix.note(now, IX_BRM_LATE, pgn)
        return False

    def on_message(self, now, pgn, status):
        # Runs for every valid BMS message, repeats included (gbt.link):
        # PGNs and statuses are consts of this module (no lookups), the
        # frequent messages (BCL, BCS, BSM) are tested first, and the rest
        # live in _on_other so that this frame stays within the 11 words a
        # bytecode call gets on the C stack (see _tick_charging).
        if status != _OK:
            self._on_bad(now, pgn, status)
            return
        st = self.stage
        if pgn == _PGN_BCL:
            if st == CHARGING:
                self._t_bcl = now
                self._bcl_seen = 1
                if not self._flowing and self.tx.aa_sent_ms(tx_.CRO) >= 0:
                    self._flow(now)
        elif pgn == _PGN_BCS:
            if st == CHARGING:
                self._t_bcs = now
                self._bcs_seen = 1
                if not self._flowing and self.tx.aa_sent_ms(tx_.CRO) >= 0:
                    self._flow(now)
        elif pgn == _PGN_BSM:
            if st == CHARGING:
                self._check_bsm(now)
        elif pgn < _PGN_BMV or pgn > _PGN_BSP:
            self._on_other(now, pgn, st)
        # BMV / BMT / BSP: optional, no timeout, nothing to do (clause 9.3)

    def _on_bad(self, now, pgn, status):
        self.rx_bad += 1
        if (pgn == _PGN_BCP and status == _E_RANGE and self.stage == RECOGNITION
                and self._brm and not self._bcp and not self._rej):
            self._bcp_range(now)       # a field out of range: incompatible

    def _on_other(self, now, pgn, st):
        if pgn == _PGN_BST:
            self._bst_seen = 1
            if HANDSHAKE <= st <= REHANDSHAKE:
                # From the handshake on (EN+ checks BST in handshake and cable
                # check too): an insulation test stops like charging (output
                # off, K1/K2 open, bleed).  A BMS that sent BST is in the
                # protocol, BRM or not: the full end, CST until BSD, then CSD.
                self._stop(now, m.CST_R_BMS, 0, 0, W.WHY_BMS, True)
                self._exchange = 1
            elif st < HANDSHAKE:
                # no session to stop (aux power off): not from a vehicle
                self.link.ix.note(now, IX_STAGE_MSG, pgn)
        elif pgn == _PGN_BSD:
            if st == STOPPING or st == STATISTICS:
                self._bsd_seen = 1
        elif pgn == _PGN_BHM:
            if st == HANDSHAKE or st == INSULATION:
                self._bhm = 1              # late (INSULATION): may lower the test voltage
        elif pgn == _PGN_BRM:
            if st == RECOGNITION and not self._brm:
                self._on_brm(now)
        elif pgn == _PGN_BCP:
            if st == RECOGNITION and self._brm and not self._bcp and not self._rej:
                self._on_bcp(now)
        elif pgn == _PGN_BRO:
            bro = self.bms.bro
            if st == PARAMETER:
                self._bro_seen = 1
                self._bro_aa = 1 if bro == 0xAA else 0
                if self._bro_aa and self._cml_out():
                    self._enter_precharge(now)
                # else: _tick_parameter goes on once CML (and CTS) went out
            elif (st == PRECHARGE or st == CHARGING) and bro == 0x00:
                self._stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_BRO_DROP, True)
        elif pgn == _PGN_BEM:
            if RECOGNITION <= st <= CHARGING and _bem_timeout(self.bms.bem):
                self._rehandshake(now, 0, W.WHY_BEM)
            elif (st == HANDSHAKE or st == INSULATION) and _bem_timeout(self.bms.bem):
                # A re-handshake restarts at CRM 0x00, which needs a passed
                # insulation test: end instead (output off, K1/K2 open,
                # bleed, CST fault); a new start repeats the handshake.
                self._stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_BEM, False)
            elif st < HANDSHAKE:
                self.link.ix.note(now, IX_STAGE_MSG, pgn)
        # BMV / BMT / BSP: optional, no timeout, nothing to do (clause 9.3)

    def _flow(self, now):
        """First BCL/BCS once CRO 0xAA has been sent: CRO off, CCS on."""
        self._flowing = 1
        self.tx.stop(tx_.CRO)
        self.tx.start(tx_.CCS, now)

    def _check_bsm(self, now):
        b = self.bms
        if b.st_oc or b.st_cell_v or b.st_soc or b.st_ot or b.st_ins or b.st_conn:
            self._bsm_stop(now)

    def _bsm_stop(self, now):
        b = self.bms
        err = 0
        if b.st_oc:
            err |= m.CST_E_CURRENT
        if b.st_cell_v:
            err |= m.CST_E_VOLTAGE
        self._stop(now, m.CST_R_FAULT, m.CST_F_OTHER, err, W.WHY_BSM, True)
