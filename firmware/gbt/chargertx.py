"""What the charger puts on the bus, and when: the periodic message slots.

One slot per charger message (CHM, CRM, CTS, CML, CRO, CCS, CST, CSD, CEM),
each with its own period, on/off flag, next due time and preallocated
8-byte buffer (a board may queue the buffer, so messages never share one).
The session decides *which* messages are on and writes their content fields
(``crm_aa``, ``cro_aa``, ``ccs_v`` ...); ``service(now)`` (called at the end
of every session tick) sends what is due.  A slot starts sending at the tick
it is switched on, then keeps a fixed grid (``due += period``), so a content
change (CRM 0x00 -> 0xAA, CRO 0x00 -> 0xAA) never disturbs the period.

CST stops by itself ``cst_max_ms`` after its first frame (GB/T 34658-2017
DN4002: CST at 10 ms for up to 10 s).  ``crm_aa_t0`` / ``cro_aa_t0`` record
when the first CRM 0xAA / CRO 0xAA really went out: the BCP and BCL/BCS
timeouts count from there (spec 4.2).

``service`` allocates nothing (the CTS time stamp hook excepted, which only
runs in the parameter stage).
"""
from micropython import const
from time import ticks_add, ticks_diff

from gbt import ids
from gbt import messages as m

CHM = const(0)
CRM = const(1)
CTS = const(2)
CML = const(3)
CRO = const(4)
CCS = const(5)
CST = const(6)
CSD = const(7)
CEM = const(8)
N_MSG = const(9)

MSG_NAMES = ("CHM", "CRM", "CTS", "CML", "CRO", "CCS", "CST", "CSD", "CEM")


def _localtime():
    # Default CTS source when the app gives none: the port's clock read as
    # UTC (the app installs the RTC in local time, ChargerApp._local_time).
    from rt.calendar import civil, port_rtc_s
    return civil(port_rtc_s())


class ChargerTx:
    def __init__(self, send, c):
        self._send = send
        self.c = c
        self.period = [c.chm_ms, c.crm_ms, c.cts_ms, c.cml_ms, c.cro_ms,
                       c.ccs_ms, c.cst_ms, c.csd_ms, c.cem_ms]
        self.on = [0] * N_MSG
        self.due = [0] * N_MSG
        self.sent = [0] * N_MSG        # frames accepted by the driver
        self.fail = [0] * N_MSG        # frames the driver refused
        self.last = [-1] * N_MSG       # time of the last send attempt
        self.bufs = [bytearray(8) for _ in range(N_MSG)]
        self.ccs_dlc = 7 if c.profile == m.PROFILE_2023A else 8
        self.profile = c.profile
        self.datetime = _localtime     # CTS source: () -> (y, mo, d, h, mi, s)
        self._next = -1                # earliest due of the slots that are on (-1: recompute)
        self.reset()

    def reset(self):
        """All slots off, content back to the start-of-session values."""
        for i in range(N_MSG):
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
        self.cst_reason = 0
        self.cst_fault = 0
        self.cst_error = 0
        self.cst_t0 = -1
        self.csd_min = 0
        self.csd_energy = 0
        self.cem_bits = 0

    def start(self, i, now):
        """Switch slot ``i`` on; its first frame goes out at this tick."""
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
        for i in range(N_MSG):
            self.on[i] = 0
        self._next = -1

    def service(self, now):
        """Send every slot that is due (call once per session tick).

        Most ticks send nothing (CCS is due every 50 ms, the session ticks
        every 10 ms): the earliest due time of the slots that are on is
        kept (``_next``, -1 = recompute after a slot changed) and the scan
        of the nine slots is skipped until then.  ``on``/``due`` are only
        changed through ``start``/``stop``/``stop_all``/``reset``."""
        nx = self._next
        if nx >= 0 and ticks_diff(now, nx) < 0:
            return
        on = self.on
        due = self.due
        best = -1
        for i in range(N_MSG):
            if not on[i]:
                continue
            d = due[i]
            if ticks_diff(now, d) < 0:
                if best < 0 or ticks_diff(d, best) < 0:
                    best = d
                continue
            if i == CST and ticks_diff(now, self.cst_t0) >= self.c.cst_max_ms:
                on[i] = 0
                continue
            self._emit(i, now)
            p = self.period[i]
            nd = ticks_add(d, p)
            if ticks_diff(now, nd) >= 0:     # late: re-sync, never burst
                nd = ticks_add(now, p)
            due[i] = nd
            if best < 0 or ticks_diff(nd, best) < 0:
                best = nd
        self._next = best

    def _emit(self, i, now):
        b = self.bufs[i]
        c = self.c
        if i == CCS:
            n = m.enc_ccs(b, self.ccs_v, self.ccs_i, self.ccs_min,
                          self.ccs_permit, self.ccs_dlc)
            cid = ids.ID_CCS
        elif i == CST:
            n = m.enc_cst(b, self.cst_reason, self.cst_fault, self.cst_error,
                          self.profile)
            cid = ids.ID_CST
        elif i == CHM:
            n = m.enc_chm(b)
            cid = ids.ID_CHM
        elif i == CRM:
            n = m.enc_crm(b, self.crm_aa, c.charger_no_le, c.region)
            cid = ids.ID_CRM
            if self.crm_aa and self.crm_aa_t0 < 0:
                self.crm_aa_t0 = now
        elif i == CTS:
            y, mo, d, h, mi, s = self.datetime()
            n = m.enc_cts(b, y, mo, d, h, mi, s)
            cid = ids.ID_CTS
        elif i == CML:
            n = m.enc_cml(b, c.max_v, c.min_v, c.max_i, c.min_i)
            cid = ids.ID_CML
        elif i == CRO:
            n = m.enc_cro(b, self.cro_aa)
            cid = ids.ID_CRO
            if self.cro_aa and self.cro_aa_t0 < 0:
                self.cro_aa_t0 = now
        elif i == CSD:
            n = m.enc_csd(b, self.csd_min, self.csd_energy, c.charger_no_le)
            cid = ids.ID_CSD
        else:
            n = m.enc_cem(b, self.cem_bits)
            cid = ids.ID_CEM
        self.last[i] = now
        if self._send(cid, b, n) is False:
            self.fail[i] = (self.fail[i] + 1) & 0x3FFFFFFF
        else:
            self.sent[i] = (self.sent[i] + 1) & 0x3FFFFFFF
