"""Start-up stages of the charger session: lock, handshake, insulation
test, recognition, parameter configuration, pre-charge.

A mixin of ``gbt.session.ChargerSession`` (one module per group of stages;
it uses the session's attributes directly).  What each step checks and
why (GB/T 27930 / GB/T 18487.1 clauses): docs/session.md.
"""
from time import ticks_diff

from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)
from gbt import dec as _dec
from gbt import chargertx as tx_
from gbt.stages import (HANDSHAKE, INSULATION, RECOGNITION, PARAMETER,
                        PRECHARGE, CHARGING)
from gbt import stages as W


class Startup:
    def _tick_locking(self, now):
        c = self.c
        if self.inp.lock_fb or not c.lock_fb:
            self.out.k34 = 1              # auxiliary power (K3/K4)
            self.tx.start(tx_.CHM, now)
            self._enter(HANDSHAKE, now)
        elif ticks_diff(now, self._t) >= c.lock_ms:
            self._stop(now, m.CST_R_FAULT, m.CST_F_CONNECTOR, 0, W.WHY_LOCK, False)

    # Per-tick methods of the start-up stages stay within the 11 words a
    # bytecode call keeps on the C stack (a bigger frame is taken from the GC
    # heap at every call, docs/performance.md): the rare branches are
    # methods of their own.
    def _tick_handshake(self, now):
        if self._bhm:
            self._bhm_in(now)
        elif ticks_diff(now, self._t) >= self.c.bhm_ms:
            self._no_bhm(now)

    def _bhm_in(self, now):
        c = self.c
        v = self.bms.bhm_max_v
        if v < c.min_v:
            self._ins_fail(now, m.CST_E_VOLTAGE, W.WHY_BHM_LOW)
            return
        self._enter_insulation(now, v if v < c.max_v else c.max_v)

    def _no_bhm(self, now):
        c = self.c
        if not c.bhm_legacy:
            self._stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_NO_BHM, False)
            return
        # No BHM (a 2011-generation BMS, or it is lost): the vehicle's
        # voltage limit is unknown, so never the rated voltage.  Test at
        # the configured bound, or (0, default; EN+) skip the test.
        v = c.no_bhm_ins_v
        if v > c.max_v:
            v = c.max_v
        if v and v >= c.min_v:
            self._enter_insulation(now, v)
        elif self._selfcheck_ok(now):
            self.ins_skipped = 1
            self.tx.stop(tx_.CHM)
            self._enter_recognition(now)

    def _ins_fail(self, now, error, why):
        """Stop with the self-check fault of the profile (no exchange)."""
        self._stop(now, m.CST_R_FAULT, self._selfcheck_fault(), error, why, False)

    def _selfcheck_ok(self, now):
        """Voltage outside K1/K2 below ``selfcheck_v`` before any output;
        else stop (nothing may be live on the gun yet)."""
        if self.inp.v_outside >= self.c.selfcheck_v:
            self._ins_fail(now, m.CST_E_VOLTAGE, W.WHY_SELFCHECK)
            return False
        return True

    def _enter_insulation(self, now, test_v):
        c = self.c
        if not self._selfcheck_ok(now):
            return
        self.ins_test_v = test_v
        out = self.out
        # The bleeder is on since boot (safe state): it would load the test
        # voltage and falsify the insulation reading, so it goes off first.
        out.bleed = 0
        out.v_set = test_v
        out.i_set = c.ins_i
        out.pwr_en = 1
        self._enter(INSULATION, now)

    def _tick_insulation(self, now):
        if self._bhm and self._sub < 2 and self._ins_bhm(now):
            return
        el = ticks_diff(now, self._t)
        if self._sub == 0:                # output up to the test voltage
            self._ins_up(now, el)
        elif self._sub == 1:              # measure
            self._ins_measure(now, el)
        else:                             # bleed below 60 V within 1 s
            self._ins_bleed(now, el)

    def _ins_bhm(self, now):
        """A BHM during the test (late, after a no-BHM start, or a new
        value): never test above the vehicle's limit once it is known.
        True if the session stopped."""
        bv = self.bms.bhm_max_v
        if 0 <= bv < self.ins_test_v:
            if bv < self.c.min_v:
                self._ins_fail(now, m.CST_E_VOLTAGE, W.WHY_BHM_LOW)
                return True
            self.ins_test_v = bv
            self.out.v_set = bv
            self._sub = 0                 # settle at the new voltage, then measure
            self._t = now
        return False

    def _ins_up(self, now, el):
        c = self.c
        tv = self.ins_test_v
        if tv - c.ins_v_tol <= self.inp.v_inside <= tv + c.ins_v_tol:
            self.out.k12 = 1              # vehicle contactors are still open
            self._k12 = 1
            self._sub = 1
            self._t = now
        elif el >= c.ins_ramp_ms:
            self._ins_fail(now, 0, W.WHY_INS_VOLT)

    def _ins_measure(self, now, el):
        c = self.c
        r = self.inp.insulation_kohm
        if el >= c.ins_settle_ms and r >= 0:
            self._ins_measured(now, r)
        elif el >= c.ins_timeout_ms:
            self._ins_fail(now, 0, W.WHY_INS_NOREAD)

    def _ins_measured(self, now, r):
        c = self.c
        # ohm/V = r * 1000 / (tv / 10) = r * 10000 / tv
        tv = self.ins_test_v
        r = r * 10000 // (tv if tv > 0 else 1)
        self.ins_ohm_v = r if r < 0x3FFFFFFF else 0x3FFFFFFF
        if r <= c.ins_fault_ohm_v:
            self._ins_fail(now, 0, W.WHY_INS_FAULT)
            return
        if r <= c.ins_ok_ohm_v:
            self.ins_warn = 1             # 100..500 ohm/V: warning, allowed
        out = self.out
        out.pwr_en = 0
        out.v_set = 0
        out.i_set = 0
        out.bleed = 1                     # bleed both sides through K1/K2
        self._sub = 2
        self._t = now

    def _ins_bleed(self, now, el):
        inp = self.inp
        v = inp.v_inside if inp.v_inside > inp.v_outside else inp.v_outside
        if v < self.c.bleed_v:
            self._ins_open()
            self.tx.stop(tx_.CHM)
            self._enter_recognition(now)
        elif el >= self.c.bleed_ms:
            self._ins_open()
            self.fault_why = W.WHY_BLEED
            self._ins_fail(now, 0, W.WHY_BLEED)

    def _ins_open(self):
        out = self.out
        out.bleed = 0
        out.k12 = 0
        self._k12 = 0

    def _enter_recognition(self, now):
        self._reset_attempt()
        tx = self.tx
        tx.stop_all()
        tx.crm_new()
        tx.start(tx_.CRM, now)
        self._enter(RECOGNITION, now)

    def _tick_recognition(self, now):
        c = self.c
        tx = self.tx
        if self._rej:
            self._tick_rejected(now)
        elif not self._brm:
            if ticks_diff(now, self._t) >= c.brm_ms:
                self._rehandshake(now, m.CEM_BRM, W.WHY_BRM_TO)
        elif not self._bcp:
            t0 = tx.aa_sent_ms(tx_.CRM)
            if t0 >= 0 and ticks_diff(now, t0) >= c.bcp_ms:
                self._rehandshake(now, m.CEM_BCP, W.WHY_BCP_TO)
        elif tx.aa_sent_ms(tx_.CRM) >= 0:
            # BCP came before CRM 0xAA went out (same receive pass as the
            # BRM): the BMS must see CRM 0xAA at least once first.
            self._enter_parameter(now)

    def _tick_rejected(self, now):
        # BCP incompatible: the BMS gets the charger's limits (one CML),
        # then CST (GB/T 27930-2023 A practice), no re-handshake.
        tx = self.tx
        if not tx.on[tx_.CML]:
            self._rej_cml(now)            # once CRM 0xAA has gone out
        elif tx.sent[tx_.CML] + tx.fail[tx_.CML] != self._rej_n:
            self._stop(now, m.CST_R_FAULT, m.CST_F_NO_ENERGY, self._rej_err,
                       self._rej_why, True)

    def _on_brm(self, now):
        self._brm = 1
        self._brm_ever = 1
        bms = self.bms
        if self.vin_check is not None and bms.vin_len:
            r = self.vin_check(bms.vin_str())
            if isinstance(r, tuple):
                ok = r[0]
                self.vin_why = r[1] if len(r) > 1 else None
            else:
                ok = r
            if not ok:
                self._stop(now, m.CST_R_FAULT, m.CST_F_OTHER, 0, W.WHY_VIN, True)
                return
        self.tx.set_aa(tx_.CRM, 1)

    def _on_bcp(self, now):
        c = self.c
        b = self.bms
        err = 0
        if b.max_v < c.min_v or b.bcp_v < c.min_v or b.bcp_v > c.max_v:
            err |= m.CST_E_VOLTAGE        # also catches NA (-1)
        if b.max_i < 0 or b.max_i < c.min_i or (c.min_i == 0 and b.max_i == 0):
            err |= m.CST_E_CURRENT
        if err:
            self._bcp_reject(now, err, W.WHY_BCP)
            return
        self._bcp = 1
        if self.tx.aa_sent_ms(tx_.CRM) >= 0:
            self._enter_parameter(now)
        # else: _tick_recognition enters PARAMETER after the first CRM 0xAA

    def _bcp_range(self, now):
        """A complete BCP with a field outside its legal range (decoder
        ``E_RANGE``): as incompatible as one outside the charger's range."""
        err = 0
        link = self.link
        if link is not None:
            bad = _dec.bcp_bad_fields(link.tp.buf, link.tp.length)
            if bad & (_dec.BAD_CELL_V | _dec.BAD_MAX_V):
                err |= m.CST_E_VOLTAGE
            if bad & _dec.BAD_MAX_I:
                err |= m.CST_E_CURRENT
        self._bcp_reject(now, err, W.WHY_BCP_RANGE)

    def _bcp_reject(self, now, err, why):
        if self.c.bcp_retry:
            self._rehandshake(now, 0, why)
            return
        self._rej = 1
        self._rej_err = err
        self._rej_why = why
        self._rej_cml(now)

    def _rej_cml(self, now):
        tx = self.tx
        if tx.aa_sent_ms(tx_.CRM) < 0:
            return                        # CRM 0xAA first (_tick_recognition)
        self._rej_n = tx.sent[tx_.CML] + tx.fail[tx_.CML]
        tx.stop(tx_.CRM)
        tx.start(tx_.CML, now)            # goes out at this tick; CST at the next

    def _enter_parameter(self, now):
        c = self.c
        tx = self.tx
        tx.stop(tx_.CRM)
        self._cml_n = tx.sent[tx_.CML]
        self._cts_n = tx.sent[tx_.CTS]
        tx.start(tx_.CML, now)
        if c.cts_enable:
            tx.start(tx_.CTS, now)
        self._enter(PARAMETER, now)

    def _cml_out(self):
        """CML (and CTS if enabled) sent at least once in this PARAMETER stage."""
        tx = self.tx
        return (tx.sent[tx_.CML] != self._cml_n
                and (not self.c.cts_enable or tx.sent[tx_.CTS] != self._cts_n))

    def _tick_parameter(self, now):
        c = self.c
        if self._bro_aa and self._cml_out():
            # BRO 0xAA came in the receive pass that finished the BCP,
            # before any CML: go on only once the BMS has seen CML.
            self._enter_precharge(now)
            return
        el = ticks_diff(now, self._t)
        if (not self._bro_seen and el >= c.bro_ms) or el >= c.bro_aa_ms:
            self._rehandshake(now, m.CEM_BRO, W.WHY_BRO_TO)

    def _enter_precharge(self, now):
        tx = self.tx
        tx.stop(tx_.CML)
        tx.stop(tx_.CTS)
        tx.set_aa(tx_.CRO, 0)
        tx.start(tx_.CRO, now)
        self._enter(PRECHARGE, now)

    def _tick_precharge(self, now):
        if self._sub == 0:                # battery voltage plausible?
            self._pre_check(now)
            return
        vb = self.inp.v_outside
        self.out.v_set = vb - self.c.pre_below      # follow the battery
        if vb - self.c.pre_hi <= self.inp.v_inside <= vb - self.c.pre_lo:
            self._pre_close(now)
        elif ticks_diff(now, self._t) >= self.c.pre_ms:
            self._pre_fail(now)

    def _pre_fail(self, now):
        f = m.CST_F_PRECHARGE if self.profile == m.PROFILE_2023A else m.CST_F_OTHER
        self._stop(now, m.CST_R_FAULT, f, 0, W.WHY_PRECHARGE, True)

    def _pre_check(self, now):
        c = self.c
        vb = self.inp.v_outside
        ref = self.bms.bcp_v
        tol = ref * c.vchk_pct // 1000
        if ref - tol <= vb <= ref + tol and c.min_v <= vb <= c.max_v and vb <= self.bms.max_v:
            self._pre_start(now, vb)
        elif ticks_diff(now, self._t) >= c.vchk_ms:
            self._pre_batt_v(now)

    def _pre_start(self, now, vb):
        c = self.c
        out = self.out
        out.v_set = vb - c.pre_below
        out.i_set = c.pre_i
        out.pwr_en = 1
        self._sub = 1
        self._t = now

    def _pre_batt_v(self, now):
        self._stop(now, m.CST_R_FAULT, m.CST_F_OTHER, m.CST_E_VOLTAGE, W.WHY_BATT_V, True)

    def _pre_close(self, now):
        self.out.k12 = 1
        self._k12 = 1
        self.tx.set_aa(tx_.CRO, 1)
        # every charging-stage timeout runs from here (restarted at the
        # first CRO 0xAA really sent, _tick_charging)
        self._t_bcl = now
        self._t_bcs = now
        self._armed = 0
        self._enter(CHARGING, now)
