"""What the charger puts on the bus, and when: the periodic message slots.

One slot per charger message (CHM, CRM, CTS, CML, CRO, CCS, CST, CSD, CEM),
each with its own period, on/off flag, next due time and preallocated
8-byte buffer (a board may queue the buffer, so messages never share one).
The session decides *which* messages are on and sets their content through
methods (``set_aa``, ``set_ccs`` ...; CST from the stop record); ``service(now)`` (called at the end
of every session tick) sends what is due.  A slot starts sending at the tick
it is switched on, then keeps a fixed grid (``due += period``), so a content
change (CRM 0x00 -> 0xAA, CRO 0x00 -> 0xAA) never disturbs the period.

CST stops by itself ``cst_max_ms`` after its first frame (GB/T 34658-2017
DN4002: CST at 10 ms for up to 10 s).  ``crm_aa_t0`` / ``cro_aa_t0`` record
when the first CRM 0xAA / CRO 0xAA really went out: the BCP and BCL/BCS
timeouts count from there (spec 4.2).

Frames whose content is fixed while their slot is on (CST, CSD, CEM: the
session sets their fields before ``start``) are encoded once, in ``start``,
and only sent by ``service``: CST goes out every 10 ms for up to 10 s.  CHM
(the version) and CML (the rating) never change: encoded at construction.  CRM, CRO (00 -> AA while on), CTS (the time) and CCS (measurements)
are encoded when they are sent.

``service`` allocates nothing (the CTS time stamp hook excepted, which only
runs in the parameter stage).
"""
from micropython import const
from time import ticks_add, ticks_diff

from gbt import ids
from gbt import enc as m      # (not gbt.messages: its re-exports cost heap)

CHM = const(0)
CRM = const(1)
CTS = const(2)
CML = const(3)
CRO = const(4)
CCS = const(5)
CST = const(6)
CSD = const(7)
CEM = const(8)
_N_MSG = const(9)

MSG_NAMES = ("CHM", "CRM", "CTS", "CML", "CRO", "CCS", "CST", "CSD", "CEM")
_IDS = (ids.ID_CHM, ids.ID_CRM, ids.ID_CTS, ids.ID_CML, ids.ID_CRO, ids.ID_CCS,
        ids.ID_CST, ids.ID_CSD, ids.ID_CEM)
# slots whose content is fixed while on: encoded in start(), not per frame;
# 2 = fixed for good (CHM: the version, CML: the rating): encoded once
_FIXED = (2, 0, 0, 2, 0, 0, 1, 1, 1)


def _localtime():
    # Default CTS source when the app gives none: the port's clock read as
    # UTC (the app installs the RTC in local time, ChargerApp._local_time).
    from rt.calendar import civil, port_rtc_s
    return civil(port_rtc_s())


class ChargerTx:
    def __init__(self, send, c, stoprec):
        self._send = send
        self.stoprec = stoprec          # CST content (gbt.stages.StopRecord)
        self.c = c
        self.period = [c.chm_ms, c.crm_ms, c.cts_ms, c.cml_ms, c.cro_ms,
                       c.ccs_ms, c.cst_ms, c.csd_ms, c.cem_ms]
        self.on = [0] * _N_MSG
        self.due = [0] * _N_MSG
        self.sent = [0] * _N_MSG        # frames accepted by the driver
        self.fail = [0] * _N_MSG        # frames the driver refused
        self.last = [-1] * _N_MSG       # time of the last send attempt
        self.bufs = [bytearray(8) for _ in range(_N_MSG)]
        self.dlc = [8] * _N_MSG         # DLC of the frame in bufs[i]
        self.ccs_dlc = 7 if c.profile == m.PROFILE_2023A else 8
        self.datetime = _localtime     # CTS source: () -> (y, mo, d, h, mi, s)
        self._next = -1                # earliest due of the slots that are on (-1: recompute)
        self.reset()
        self._encode(CHM, 0)           # fixed for good (_FIXED 2)
        self._encode(CML, 0)

    def reset(self):
        """All slots off, content back to the start-of-session values."""
        for i in range(_N_MSG):
            self.on[i] = 0
        self._next = -1
        self.crm_aa = 0
        self.crm_aa_t0 = -1
        self.cro_aa = 0
        self.cro_aa_t0 = -1
        self.ccs_v = 0
        self.ccs_i = 0
        self.ccs_min = 0
        self.ccs_permit = 1
        self.cst_t0 = -1
        self.csd_min = 0
        self.csd_energy = 0
        self.cem_bits = 0

    # -- content and timing, through methods (the session never writes the
    # slots' fields itself: what a frame says is decided here) -------------
    def crm_new(self):
        """A new handshake attempt: CRM and CRO back to 0x00, their
        "first 0xAA sent" times forgotten."""
        self.crm_aa = 0
        self.crm_aa_t0 = -1
        self.cro_aa = 0
        self.cro_aa_t0 = -1

    def set_aa(self, i, aa):
        """CRM (``i`` = CRM: BRM accepted) or CRO (``i`` = CRO: ready) says
        0xAA (``aa`` 1) or 0x00 from its next frame on."""
        if i == CRM:
            self.crm_aa = aa
        else:
            self.cro_aa = aa

    def aa_sent_ms(self, i):
        """When the first CRM (``i`` = CRM) / CRO 0xAA went out (-1: not yet)."""
        return self.crm_aa_t0 if i == CRM else self.cro_aa_t0

    def cst_started_ms(self):
        """When the first CST frame of this stop went out (-1: none)."""
        return self.cst_t0

    def set_cem(self, bits):
        """CEM content (encoded at the next ``start(CEM)``)."""
        self.cem_bits = bits

    def set_csd(self, minutes, energy):
        """CSD content (encoded at the next ``start(CSD)``): minutes, kWh x10."""
        self.csd_min = minutes
        self.csd_energy = energy

    def set_ccs(self, v, i, minutes, permit):
        """CCS content for the next CCS frames (one call per charging tick:
        measurements and the charging-permitted bit, 0 = paused)."""
        self.ccs_v = v
        self.ccs_i = i
        self.ccs_min = minutes
        self.ccs_permit = permit

    def set_ccs_out(self, v, i):
        """CCS voltage and current only (the stop ramp-down: minutes kept)."""
        self.ccs_v = v
        self.ccs_i = i

    def keep(self, i):
        """Switch slot ``i`` back on on its old grid (no new first frame):
        CCS keeps its period through the stop ramp-down."""
        self.on[i] = 1
        self._next = -1

    def start(self, i, now):
        """Switch slot ``i`` on; its first frame goes out at this tick.
        A slot with fixed content is encoded here (again if already on:
        the session may have changed its fields)."""
        if _FIXED[i] == 1:
            self._encode(i, now)
        if not self.on[i]:
            self.on[i] = 1
            self.due[i] = now
            self._next = -1
            if i == CST:
                self.cst_t0 = now

    def stop(self, i):
        self.on[i] = 0
        self._next = -1

    def stop_all(self):
        for i in range(_N_MSG):
            self.on[i] = 0
        self._next = -1

    def service(self, now):
        """Send every slot that is due (call once per session tick).

        Most ticks send nothing (CCS is due every 50 ms, the session ticks
        every 10 ms): the earliest due time of the slots that are on is
        kept (``_next``, -1 = recompute after a slot changed) and the scan
        of the nine slots is skipped until then.  ``on``/``due`` are only changed
        through ``start``/``stop``/``stop_all``/``reset``.  (Small frames:
        see ``_slot``.)"""
        nx = self._next
        if nx >= 0 and ticks_diff(now, nx) < 0:
            return
        nx = -1                          # now: the earliest due time found
        for i in range(_N_MSG):
            if self.on[i]:
                nx = self._slot(i, now, nx)
        self._next = nx

    def _slot(self, i, now, best):
        """Slot ``i`` (on): send it if due; returns the earliest due time
        so far.  (Apart from ``service`` so that neither function's locals
        + stack pass 11 words: a bigger bytecode frame is allocated on the
        GC heap at every call, docs/performance.md.)"""
        d = self.due[i]
        if ticks_diff(now, d) < 0:
            return d if best < 0 or ticks_diff(d, best) < 0 else best
        if i == CST and ticks_diff(now, self.cst_t0) >= self.c.cst_max_ms:
            self.on[i] = 0
            return best
        self._emit(i, now)
        d = ticks_add(d, self.period[i])
        if ticks_diff(now, d) >= 0:      # late: re-sync, never burst
            d = ticks_add(now, self.period[i])
        self.due[i] = d
        return d if best < 0 or ticks_diff(d, best) < 0 else best

    def _encode(self, i, now):
        """Write slot ``i``'s frame into ``bufs[i]`` / ``dlc[i]``."""
        if i == CCS:
            self._encode_ccs()
        elif i == CTS:
            self._encode_cts()
        else:
            self.dlc[i] = self._enc(i, self.bufs[i])

    def _encode_ccs(self):
        self.dlc[CCS] = m.enc_ccs(self.bufs[CCS], self.ccs_v, self.ccs_i, self.ccs_min,
                                  self.ccs_permit, self.ccs_dlc)

    def _encode_cts(self):
        y, mo, d, h, mi, s = self.datetime()
        self.dlc[CTS] = m.enc_cts(self.bufs[CTS], y, mo, d, h, mi, s)

    def _enc(self, i, b):
        c = self.c
        if i == CST:
            r = self.stoprec
            return m.enc_cst(b, r.reason, r.fault, r.error, c.profile)
        if i == CHM:
            return m.enc_chm(b)
        if i == CRM:
            return m.enc_crm(b, self.crm_aa, c.charger_no_le, c.region)
        if i == CML:
            return m.enc_cml(b, c.max_v, c.min_v, c.max_i, c.min_i)
        if i == CRO:
            return m.enc_cro(b, self.cro_aa)
        if i == CSD:
            return m.enc_csd(b, self.csd_min, self.csd_energy, c.charger_no_le)
        return m.enc_cem(b, self.cem_bits)

    def _emit(self, i, now):
        if i == CCS:
            self._encode_ccs()
        elif not _FIXED[i]:
            self._encode(i, now)
            if i == CRM:
                if self.crm_aa and self.crm_aa_t0 < 0:
                    self.crm_aa_t0 = now
            elif i == CRO:
                if self.cro_aa and self.cro_aa_t0 < 0:
                    self.cro_aa_t0 = now
        self.last[i] = now
        if self._send(_IDS[i], self.bufs[i], self.dlc[i]) is False:
            self.fail[i] = (self.fail[i] + 1) & 0x3FFFFFFF
        else:
            self.sent[i] = (self.sent[i] + 1) & 0x3FFFFFFF
