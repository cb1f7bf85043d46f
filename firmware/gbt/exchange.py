"""Middle stages of the charger session: recognition (CRM / BRM / BCP),
parameter configuration (CML, CTS / BRO) and pre-charge (CRO 0x00, K1/K2).

One object (``Exchange``), made once by ``gbt.session.ChargerSession``,
owns what one handshake attempt learns (``brm``, ``bcp``, a rejected BCP),
the stage timer ``t`` and the pre-charge sub-state (``sub``: ``_CHECK``
battery voltage plausible?, ``_RAMP`` output follows the battery).  A
re-handshake starts a new attempt (``enter_recognition``).  The checks and
the spec clauses behind them: docs/session.md.
"""
from time import ticks_diff

from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt import dec as _dec
from gbt import chargertx as tx_
from gbt import stages as W
from micropython import const

_CHECK = const(0)
_RAMP = const(1)
_E_RANGE = const(2)
_BRO_SEEN = const(1)    # a BRO came (not 0xAA)
_BRO_AA = const(2)      # the last BRO was 0xAA
_PGN_BRM = const(0x0200)
_PGN_BCP = const(0x0600)
_PGN_BRO = const(0x0900)


class Exchange:
    def __init__(self, sess):
        self.s = sess
        self.reset()

    def reset(self):
        """A new handshake attempt (first one or a re-handshake)."""
        self.brm = 0                      # BRM accepted in this attempt
        self.bcp = 0                      # BCP accepted
        self.bro = 0                      # last BRO: 0 none yet, _BRO_SEEN, _BRO_AA
        self.cml_n = 0                    # CML / CTS sent-counters at PARAMETER entry
        self.cts_n = 0
        self.rej = 0                      # BCP rejected: CML once, then CST
        self.rej_n = 0
        self.rej_err = 0
        self.rej_why = W.WHY_NONE
        self.sub = _CHECK
        self.t = 0

    # -- RECOGNITION -------------------------------------------------------
    def enter_recognition(self, now):
        self.reset()
        tx = self.s.tx
        tx.stop_all()
        tx.crm_new()
        tx.start(tx_.CRM, now)
        self.t = now

    def exit_recognition(self, now):
        self.s.tx.stop(tx_.CRM)

    def on_recognition(self, now, pgn):
        if pgn == _PGN_BRM:
            if not self.brm:
                self._on_brm(now)
        elif pgn == _PGN_BCP:
            if self.brm and not self.bcp and not self.rej:
                self._on_bcp(now)
        else:
            self.s._on_common(now, pgn)

    def on_bad(self, now, pgn, status):
        """RECOGNITION: an invalid message (already counted)."""
        if pgn == _PGN_BCP and status == _E_RANGE and self.brm and not self.bcp \
                and not self.rej:
            self._bcp_range(now)          # a field out of range: incompatible

    def tick_recognition(self, now, dt):
        c = self.s.c
        tx = self.s.tx
        if self.rej:
            self._tick_rejected(now)
        elif not self.brm:
            if ticks_diff(now, self.t) >= c.brm_ms:
                self.s.end.rehandshake(now, m.CEM_BRM, W.WHY_BRM_TO)
        elif not self.bcp:
            t0 = tx.aa_sent_ms(tx_.CRM)
            if t0 >= 0 and ticks_diff(now, t0) >= c.bcp_ms:
                self.s.end.rehandshake(now, m.CEM_BCP, W.WHY_BCP_TO)
        elif tx.aa_sent_ms(tx_.CRM) >= 0:
            # BCP came before CRM 0xAA went out (same receive pass as the
            # BRM): the BMS must see CRM 0xAA at least once first.
            self.s.goto(W.PARAMETER, now)

    def _tick_rejected(self, now):
        # BCP incompatible: the BMS gets the charger's limits (one CML),
        # then CST (GB/T 27930-2023 A practice), no re-handshake.
        tx = self.s.tx
        if not tx.on[tx_.CML]:
            self._rej_cml(now)            # once CRM 0xAA has gone out
        elif tx.sent[tx_.CML] + tx.fail[tx_.CML] != self.rej_n:
            self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_NO_ENERGY, self.rej_err,
                          self.rej_why, True)

    def _on_brm(self, now):
        self.brm = 1
        self.s.end.brm_ever = 1
        s = self.s
        bms = self.s.bms
        if s.vin_check is not None and bms.vin_len:
            r = s.vin_check(bms.vin_str())
            if isinstance(r, tuple):
                ok = r[0]
                s.vin_why = r[1] if len(r) > 1 else None
            else:
                ok = r
            if not ok:
                self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_VIN, True)
                return
        self.s.tx.set_aa(tx_.CRM, 1)

    def _on_bcp(self, now):
        c = self.s.c
        b = self.s.bms
        err = 0
        if b.max_v < c.min_v or b.bcp_v < c.min_v or b.bcp_v > c.max_v:
            err |= m.CST_E_VOLTAGE        # also catches NA (-1)
        if b.max_i < 0 or b.max_i < c.min_i or (c.min_i == 0 and b.max_i == 0):
            err |= m.CST_E_CURRENT
        if err:
            self._bcp_reject(now, err, W.WHY_BCP)
            return
        self.bcp = 1
        if self.s.tx.aa_sent_ms(tx_.CRM) >= 0:
            self.s.goto(W.PARAMETER, now)
        # else: tick_recognition enters PARAMETER after the first CRM 0xAA

    def _bcp_range(self, now):
        """A complete BCP with a field outside its legal range (decoder
        ``E_RANGE``): as incompatible as one outside the charger's range."""
        err = 0
        link = self.s.link
        if link is not None:
            bad = _dec.bcp_bad_fields(link.tp.buf, link.tp.length)
            if bad & (_dec.BAD_CELL_V | _dec.BAD_MAX_V):
                err |= m.CST_E_VOLTAGE
            if bad & _dec.BAD_MAX_I:
                err |= m.CST_E_CURRENT
        self._bcp_reject(now, err, W.WHY_BCP_RANGE)

    def _bcp_reject(self, now, err, why):
        if self.s.c.bcp_retry:
            self.s.end.rehandshake(now, 0, why)
            return
        self.rej = 1
        self.rej_err = err
        self.rej_why = why
        self._rej_cml(now)

    def _rej_cml(self, now):
        tx = self.s.tx
        if tx.aa_sent_ms(tx_.CRM) < 0:
            return                        # CRM 0xAA first (tick_recognition)
        self.rej_n = tx.sent[tx_.CML] + tx.fail[tx_.CML]
        tx.stop(tx_.CRM)
        tx.start(tx_.CML, now)            # goes out at this tick; CST at the next

    # -- PARAMETER ---------------------------------------------------------
    def enter_parameter(self, now):
        tx = self.s.tx
        self.cml_n = tx.sent[tx_.CML]
        self.cts_n = tx.sent[tx_.CTS]
        tx.start(tx_.CML, now)
        if self.s.c.cts_enable:
            tx.start(tx_.CTS, now)
        self.t = now

    def exit_parameter(self, now):
        tx = self.s.tx
        tx.stop(tx_.CML)
        tx.stop(tx_.CTS)

    def _cml_out(self):
        """CML (and CTS if enabled) sent at least once in this PARAMETER stage."""
        tx = self.s.tx
        return (tx.sent[tx_.CML] != self.cml_n
                and (not self.s.c.cts_enable or tx.sent[tx_.CTS] != self.cts_n))

    def on_parameter(self, now, pgn):
        if pgn == _PGN_BRO:
            self.bro = _BRO_AA if self.s.bms.bro == 0xAA else _BRO_SEEN
            if self.bro == _BRO_AA and self._cml_out():
                self.s.goto(W.PRECHARGE, now)
            # else: tick_parameter goes on once CML (and CTS) went out
        else:
            self.s._on_common(now, pgn)

    def tick_parameter(self, now, dt):
        c = self.s.c
        if self.bro == _BRO_AA and self._cml_out():
            # BRO 0xAA came in the receive pass that finished the BCP,
            # before any CML: go on only once the BMS has seen CML.
            self.s.goto(W.PRECHARGE, now)
            return
        el = ticks_diff(now, self.t)
        if (not self.bro and el >= c.bro_ms) or el >= c.bro_aa_ms:
            self.s.end.rehandshake(now, m.CEM_BRO, W.WHY_BRO_TO)

    # -- PRECHARGE ---------------------------------------------------------
    def enter_precharge(self, now):
        tx = self.s.tx
        tx.set_aa(tx_.CRO, 0)
        tx.start(tx_.CRO, now)
        self.t = now
        self.sub = _CHECK

    def on_precharge(self, now, pgn):
        if pgn == _PGN_BRO:
            if self.s.bms.bro == 0x00:
                self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_BRO_DROP, True)
        else:
            self.s._on_common(now, pgn)

    def tick_precharge(self, now, dt):
        if self.sub == _CHECK:            # battery voltage plausible?
            self._pre_check(now)
            return
        vb = self.s.inp.v_outside
        self.s.out.v_set = vb - self.s.c.pre_below      # follow the battery
        if vb - self.s.c.pre_hi <= self.s.inp.v_inside <= vb - self.s.c.pre_lo:
            self._pre_close(now)
        elif ticks_diff(now, self.t) >= self.s.c.pre_ms:
            self._pre_fail(now)

    def _pre_fail(self, now):
        f = m.CST_F_PRECHARGE if self.s.c.profile == m.PROFILE_2023A else m.CST_F_OTHER
        self.s.end.stop(now, m.CST_R_FAULT, f, 0, W.WHY_PRECHARGE, True)

    def _pre_check(self, now):
        c = self.s.c
        vb = self.s.inp.v_outside
        ref = self.s.bms.bcp_v
        tol = ref * c.vchk_pct // 1000
        if ref - tol <= vb <= ref + tol and c.min_v <= vb <= c.max_v and vb <= self.s.bms.max_v:
            self._pre_start(now, vb)
        elif ticks_diff(now, self.t) >= c.vchk_ms:
            self.s.end.stop(now, m.CST_R_FAULT, m.CST_F_OTHER, m.CST_E_VOLTAGE,
                          W.WHY_BATT_V, True)

    def _pre_start(self, now, vb):
        c = self.s.c
        out = self.s.out
        out.v_set = vb - c.pre_below
        out.i_set = c.pre_i
        out.pwr_en = 1
        self.sub = _RAMP
        self.t = now

    def _pre_close(self, now):
        self.s.out.k12 = 1
        self.s.end.need_bleed = 1           # the interface is live from here on
        self.s.tx.set_aa(tx_.CRO, 1)
        # every charging-stage timeout runs from here (Charging.enter;
        # restarted at the first CRO 0xAA really sent, Charging.tick)
        self.s.goto(W.CHARGING, now)
