"""GB/T 27930 charger-side session: the coordinator of the stage objects.

``ChargerSession(cfg, send, inp, out, bms, link)``; the app calls
``tick(now)`` every 10 ms (after the protection and CAN tasks, before
``board.write_outputs(out)``).  The session reads ``inp`` (measurements) and
``bms`` (decoded BMS messages), writes only ``out`` (k12, k34, lock, bleed,
pwr_en, v_set, i_set) and sends frames through ``send(can_id, buf, n)``.
Messages arrive through ``link`` -> ``on_message(now, pgn, status)``.

This module keeps what every stage shares: plug detection (CC1), the
operator's start/stop, the current stage and ``goto(stage, now)``, which runs
the old stage's exit and the new one's enter.  The stages are objects made
once (``gbt.startstages``: lock, handshake, insulation; ``gbt.exchange``:
recognition, parameter, pre-charge; ``gbt.charging``; ``gbt.endstages``:
re-handshake, stop, statistics, finish), each owning its timers and
sub-states.  One table made once holds, per stage number, the classes'
enter/tick/exit/message functions and the object that runs the stage
(``goto`` picks the row): a tick is one call through ``self._tick``,
nothing is looked up or allocated per tick.  Why the session stopped is
the stop record ``stoprec`` (``gbt.stages.StopRecord``).

Discrete outputs (contactors, aux, lock, bleed, enable) are written only
when the session changes them, set-points every control tick: a safety
supervisor that overrides ``out`` keeps its override until the session is
told (``on_trip``).  K1/K2 are read from ``out.k12`` (the session keeps no
copy); once a trip is reported the supervisor owns them.  Stage diagram,
timeouts, end paths: docs/session.md.

Hot path (CHARGING tick and the BCL/BCS/BSM handlers) allocates nothing.
"""
from time import ticks_diff

from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt.chargertx import ChargerTx
from gbt.control import Control
from gbt import intrusion as ix_
from gbt.sessioncfg import SessionConfig
# (the per-tick check needs only these two; the rest as ``W.NAME``: every
# imported name is a slot in this module's globals)
from gbt.stages import LOCKING, FINISH
from gbt import stages as W
from gbt.startstages import StartStages
from gbt.exchange import Exchange
from gbt.charging import Charging
from gbt.endstages import EndStages
from micropython import const

_OK = const(0)
_START = const(1)       # operator start (``_pend`` bits)
_STOP = const(2)        # operator stop
_UNPLUG = const(4)      # plug_event(plugged=False)
_ENTER = const(0)       # offsets into the stage table (``_tab``, 14 stages each)
_TICK = const(14)
_EXIT = const(28)
_MSG = const(42)
_OBJ = const(56)
_PGN_BCP = const(0x0600)
_PGN_BST = const(0x1900)
_PGN_BEM = const(0x1E00)


def _bem_timeout(bem):
    """True if any BEM 2-bit field reads 01 (a timeout reported)."""
    if bem < 0:
        return False
    for s in (0, 2, 8, 10, 16, 18, 24):
        if ((bem >> s) & 3) == 1:
            return True
    return False


class ChargerSession:
    def __init__(self, cfg, send, inp, out, bms, link):
        self.c = c = SessionConfig(cfg)
        self.inp = inp
        self.out = out
        self.bms = bms
        self.link = link
        # why the session stopped (shared with the transmitter: CST; the
        # console and the app's event log read it)
        self.stoprec = rec = W.StopRecord()
        self.tx = ChargerTx(send, c, rec)
        self.ctl = Control(c)
        self.i_cap = c.max_i          # app: supervisor current limit (0.1 A), every tick
        self.vin_check = None         # app: fn(vin_str) -> bool or (ok, reason)
        self.start_gate = None        # app: fn() -> (ok, reason), asked once per start
        self.refused = None           # reason the last start was refused
        self.stage = W.IDLE
        self.stage_entered_ms = 0
        # ``charging``, ``energy_wh``, ``charge_min`` are plain attributes,
        # kept up to date where they change, not properties: a property on
        # the class makes *every* attribute store on the instance look the
        # name up through the class first (MicroPython), ~1.2 instead of
        # ~0.1 kinstr per ``self.x = ...`` on the target (docs/performance.md).
        self.charging = False     # energy may flow (CHARGING)
        self.energy_wh = 0        # = ctl.energy_wh
        self.charge_min = 0       # = ctl.minutes()
        self._last = -1
        self._cc1_in = -1
        self._cc1_out = -1
        self._pend = 0                # _START | _STOP | _UNPLUG asked for, not yet acted on
        # the stage objects (one per stage group), made once
        self.end = end = EndStages(self)
        st = StartStages(self)
        ex = Exchange(self)
        self.charge = ch = Charging(self)
        # Per stage number: the object that runs it and its enter(obj, now),
        # tick(obj, now, dt), exit(obj, now), on_message(obj, now, pgn).  The
        # tables hold the classes' own functions (no bound method is made:
        # each would be 16 B of heap), called with the stage object.
        S, T, X, C, E = ChargerSession, StartStages, Exchange, Charging, EndStages
        common = S._on_common
        wait = S._tick_waiting
        # One flat tuple, made in one piece (no intermediate tuples left as
        # garbage in the heap): per stage number, at the offsets _ENTER,
        # _TICK, _EXIT, _MSG, _OBJ + stage.
        self._tab = (
            # enter(obj, now)
            None, None, T.enter_locking, T.enter_handshake, T.enter_insulation,
            X.enter_recognition, X.enter_parameter, X.enter_precharge, C.enter,
            None, None, E.enter_statistics, None, None,
            # tick(obj, now, dt)
            wait, wait, T.tick_locking, T.tick_handshake, T.tick_insulation,
            X.tick_recognition, X.tick_parameter, X.tick_precharge, C.tick,
            E.tick_rehandshake, E.tick_end, E.tick_end, E.tick_end, wait,
            # exit(obj, now)
            None, None, None, None, None, X.exit_recognition, X.exit_parameter,
            None, None, E.exit_rehandshake, None, None, None, None,
            # on_message(obj, now, pgn)
            common, common, common, T.on_message, T.on_message, X.on_recognition,
            X.on_parameter, X.on_precharge, C.on_message, E.on_other, E.on_message,
            E.on_message, E.on_other, common,
            # the object that runs the stage
            self, self, st, st, st, ex, ex, ex, ch, end, end, end, end, self)
        self._tick = wait             # this stage's tick, on_message, object: set by goto
        self._msg = common
        self._so = self
        if link is not None:
            link.set_handler(self.on_message)   # bound methods made once
            link.set_gate(self._gate)
        self._reset_plug()

    # -- public API --------------------------------------------------------
    def operator_start(self):
        self._pend |= _START
        self.refused = None

    def operator_stop(self):
        self._pend = (self._pend & _UNPLUG) | _STOP

    def plug_event(self, now, plugged):
        """Extra plug information (e.g. an interrupt-driven detector):
        ``plugged`` False ends a session at once, without the CC1 debounce.
        Plug-in is always decided from ``inp.cc1_mv``."""
        if not plugged:
            self._pend |= _UNPLUG

    def request_stop(self, now, reason, fault, error, why):
        """Controlled stop (level II): ramp down, CST with these masks."""
        self.end.stop(now, reason or m.CST_R_FAULT, fault, error, why, True)

    def on_trip(self, now, fault, error, why):
        """The supervisor has already cut the output (and owns K1/K2 from
        now on): report CST (fault) and finish the end stage.  Called every
        pass while the trip lasts; only the first call opens K1/K2 here."""
        rec = self.stoprec
        first = rec.trip is W.WHY_NONE
        rec.trip = why
        out = self.out
        out.pwr_en = 0
        out.i_set = 0
        out.v_set = 0
        self.ctl.drop()
        if first and out.k12:
            self.end.open_k12()
        # The supervisor passes its numeric trip cause: the stop's ``why``
        # stays a text (the app logs ``why[:8]``), the code is in ``trip``.
        self.end.stop(now, m.CST_R_FAULT, fault, error,
                      why if isinstance(why, str) else W.WHY_TRIP, True)

    def __getattr__(self, name):
        # The stop record's fields under the session names the app and the
        # tests read (``stop_why`` ...).  Only asked for a name the instance
        # and its class do not have: no cost on any other attribute, unlike
        # a property (which slows every store on the instance).
        if name == "stop_why":
            return self.stoprec.why
        if name == "stop_detail":
            return self.stoprec.detail
        if name == "timeout_why":
            return self.stoprec.timeout
        if name == "trip_why":
            return self.stoprec.trip
        if name == "fault_why":
            return self.stoprec.bleed
        raise AttributeError(name)

    def stage_name(self):
        return W.STAGE_NAMES[self.stage]

    def k_closed(self):
        """K1/K2 closed as far as the session is concerned: ``out.k12``
        until a trip is reported (``on_trip``); from then on the supervisor
        holds or opens them and the session counts them open."""
        return self.out.k12 and self.stoprec.trip is W.WHY_NONE

    def goto(self, stage, now):
        """Leave the current stage (its exit), enter ``stage`` (its enter)."""
        tab = self._tab
        x = tab[_EXIT + self.stage]
        if x is not None:
            x(self._so, now)
        self._so = so = tab[_OBJ + stage]
        self.stage = stage
        self.charging = stage == W.CHARGING
        self.stage_entered_ms = now
        self._tick = tab[_TICK + stage]
        self._msg = tab[_MSG + stage]
        e = tab[_ENTER + stage]
        if e is not None:
            e(so, now)

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
        self.stoprec.clear()
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
        self._tab[_OBJ + W.RECOGNITION].reset()     # (the Exchange)
        self.end.reset()

    # -- the tick ------------------------------------------------------------
    def tick(self, now):
        dt = 0 if self._last < 0 else ticks_diff(now, self._last)
        self._last = now
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
        if (self._pend > _START or self._cc1_out >= 0) and \
                LOCKING <= self.stage <= FINISH:
            self._global(now)             # (nothing to do otherwise: skip the call)
        self._tick(self._so, now, dt)     # the current stage's (set by goto)
        self.tx.service(now)

    def _plugged(self, now):
        return self._cc1_in >= 0 and ticks_diff(now, self._cc1_in) >= self.c.cc1_on_ms

    def _tick_waiting(self, now, dt):
        st = self.stage
        if st == W.IDLE:
            self._pend &= ~_STOP
            if self._plugged(now):
                self._reset_plug()
                self.refused = None
                self.goto(W.CONNECTED, now)
            return
        if st == W.DONE:
            if self._cc1_out >= 0 and ticks_diff(now, self._cc1_out) >= self.c.replug_ms:
                self.tx.stop_all()
                self.goto(W.IDLE, now)
                self._pend &= ~_START
            elif self._pend & _START and not self.need_replug and self._plugged(now):
                # a new session on the same plug: through CONNECTED, so the
                # start gate (lockout, latched faults) is asked again
                self._reset_plug()
                self.goto(W.CONNECTED, now)
                return
            self._pend &= ~_START
            return
        # CONNECTED
        if self._cc1_out >= 0:
            self.goto(W.IDLE, now)
            return
        if self._pend & _STOP:
            self._pend &= _UNPLUG
        elif self._pend & _START or (self.c.auto_start and self.refused is None):
            gate = self.start_gate
            if gate is not None:
                ok, why = gate()
                if not ok:
                    # Stay CONNECTED; an operator start (or a re-plug) asks again.
                    self.refused = why
                    self._pend &= ~_START
                    return
            self.refused = None
            self._pend &= ~_START
            self.goto(LOCKING, now)

    def _global(self, now):
        """Connector removed / operator stop: the same in every active stage."""
        if self._pend & _UNPLUG or (self._cc1_out >= 0 and
                                    ticks_diff(now, self._cc1_out) >= self.c.cc1_lost_ms):
            self._pend &= ~_UNPLUG
            self._unplugged(now)
        if self._pend & _STOP:
            self._pend &= ~_STOP
            self.end.stop(now, m.CST_R_MANUAL, 0, 0, W.WHY_OPERATOR, True)

    def _unplugged(self, now):
        self.need_replug = 1
        end = self.end
        end.exchange = 0                  # CAN goes with the connector
        st = self.stage
        if st == W.STOPPING or st == W.STATISTICS or st == FINISH:
            return
        self.ctl.drop()
        self.out.i_set = 0
        end.stop(now, m.CST_R_FAULT, m.CST_F_CONNECTOR, 0, W.WHY_UNPLUG, False)

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
        ex = self._tab[_OBJ + W.RECOGNITION]        # (the Exchange)
        if pgn == _PGN_BCP:
            if st == W.RECOGNITION and ex.brm and not ex.bcp and not ex.rej:
                return True
            if ex.bcp and st != W.RECOGNITION and st != W.PARAMETER and st != W.REHANDSHAKE:
                self.link.ix.note(now, ix_.IX_BCP_LATE, pgn)
            return False
        if st == W.RECOGNITION and not ex.brm:
            return True
        if ex.bcp and st != W.RECOGNITION and st != W.REHANDSHAKE:
            self.link.ix.note(now, ix_.IX_BRM_LATE, pgn)
        return False

    def on_message(self, now, pgn, status):
        # Runs for every valid BMS message, repeats included (gbt.link):
        # the current stage's handler (switched by ``goto``)
        # takes it; what every stage does alike is ``_on_common``.
        if status != _OK:
            self.rx_bad += 1
            if self.stage == W.RECOGNITION:
                self._so.on_bad(now, pgn, status)        # (the Exchange)
            return
        self._msg(self._so, now, pgn)

    def _on_common(self, now, pgn):
        """BST and BEM in any stage (the stage handlers pass on what they
        do not take; BMV / BMT / BSP: optional, nothing to do, clause 9.3)."""
        st = self.stage
        if pgn == _PGN_BST:
            self.end.bst_seen = 1
            if W.HANDSHAKE <= st <= W.REHANDSHAKE:
                # From the handshake on (EN+ checks BST in handshake and cable
                # check too): an insulation test stops like charging (output
                # off, K1/K2 open, bleed).  A BMS that sent BST is in the
                # protocol, BRM or not: the full end, CST until BSD, then CSD.
                self.end.stop(now, m.CST_R_BMS, 0, 0, W.WHY_BMS, True)
                self.end.exchange = 1
            elif st < W.HANDSHAKE:
                # no session to stop (aux power off): not from a vehicle
                self.link.ix.note(now, ix_.IX_STAGE_MSG, pgn)
        elif pgn == _PGN_BEM:
            if W.RECOGNITION <= st <= W.CHARGING and _bem_timeout(self.bms.bem):
                self.end.rehandshake(now, 0, W.WHY_BEM)
            elif (st == W.HANDSHAKE or st == W.INSULATION) and _bem_timeout(self.bms.bem):
                # A re-handshake restarts at CRM 0x00, which needs a passed
                # insulation test: end instead (output off, K1/K2 open,
                # bleed, CST fault); a new start repeats the handshake.
                self.end.stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_BEM, False)
            elif st < W.HANDSHAKE:
                self.link.ix.note(now, ix_.IX_STAGE_MSG, pgn)
