"""A small scripted BMS + plant for MicroPython session tests (simulated time).

``Bench`` owns a SimClock, an Inputs the plant sets, an Outputs the session
writes, a list-capturing ``send``, a ``BmsLink`` and a ``ChargerSession``.
``step()`` advances 10 ms: plant -> BMS frames into ``link.on_frame`` ->
``link.poll`` -> ``session.tick``; the frames the charger sent are recorded
as ``(t, can_id, bytes)`` in ``bench.tx`` and shown to the BMS on the next
step (so every answer has a realistic 10 ms turn-around).

``ScriptedBms`` follows GB/T 27930 from the BMS side: BHM on CHM, BRM (TP,
RTS/CTS) on CRM 0x00, BCP (TP) on CRM 0xAA, BRO 0x00 -> 0xAA on CML (closing
its contactors K5/K6 first), BCL/BCS/BSM after CRO 0xAA, BST/BSD after CST;
CEM sends it back to waiting for CRM.  ``mute`` holds names of messages it
must not send (timeout tests); fields are plain attributes.
"""
import gc
from array import array
from micropython import const
from board import CanFrame, Inputs, Outputs
from rt.clock import SimClock
from gbt import ids
from gbt.bmsdata import BmsData
from gbt.link import BmsLink
from gbt.session import ChargerSession

TICK = const(10)

NAMES = {ids.ID_CHM: "CHM", ids.ID_CRM: "CRM", ids.ID_CTS: "CTS",
         ids.ID_CML: "CML", ids.ID_CRO: "CRO", ids.ID_CCS: "CCS",
         ids.ID_CST: "CST", ids.ID_CSD: "CSD", ids.ID_CEM: "CEM",
         ids.ID_TPCM_TX: "TPCM"}


def u16(v):
    return [v & 0xFF, (v >> 8) & 0xFF]


def bhm(v):
    return bytes(u16(v))


def brm(vin=b"LSVAB4BR2EN123456", batt_type=3, ah=1500, v=3500):
    p = [1, 1, 0, batt_type] + u16(ah) + u16(v)
    p += list(b"CATL") + [1, 2, 3, 4] + [39, 6, 15] + [10, 0, 0] + [1, 0xFF]
    p += list(vin) if vin else [0xFF] * 17
    p += [0xFF] * 8
    return bytes(p)


def bcp(max_cell=420, max_i=2500, energy=600, max_v=4200, max_temp=60,
        soc=500, v=3500):
    return bytes(u16(max_cell) + u16(4000 - max_i) + u16(energy) + u16(max_v)
                 + [max_temp + 50] + u16(soc) + u16(v))


def bcl(v, i, mode=2):
    return bytes(u16(v) + u16(4000 - i) + [mode])


def bcs(v, i, cell=380, soc=50, remain=60):
    return bytes(u16(v) + u16(4000 - i) + u16(cell) + [soc] + u16(remain))


def bsm(st6=0x00, st7=0xD0):
    return bytes([10, 25 + 50, 3, 20 + 50, 7, st6, st7])


def bst(reason=0xFD, fault=0xF000, error=0xF0):
    return bytes([reason] + u16(fault) + [error])


def bsd(soc=80):
    return bytes([soc] + u16(370) + u16(395) + [70, 80])


def bem(b1=0xF1):
    return bytes([b1, 0xF0, 0xF0, 0xFC])


_CHUNK = const(256)


class Log:
    """Per-step record of outputs and inputs, 12 int columns (see L_*).

    Stored in fixed 256-row array chunks (time int32, the rest int16) so a
    long session fits the fragmented test heap; rows come back as tuples."""

    def __init__(self):
        self.chunks = []
        self.n = 0

    def add(self, row):
        k = self.n % _CHUNK
        if k == 0:
            z = bytes(2 * _CHUNK)      # raw buffer: 2 bytes per int16 row
            self.chunks.append([array("i", bytes(4 * _CHUNK))] +
                               [array("h", z) for _ in range(11)])
        ch = self.chunks[-1]
        for c in range(12):
            ch[c][k] = row[c]
        self.n += 1

    def __len__(self):
        return self.n

    def __getitem__(self, k):
        if k < 0:
            k += self.n
        ch = self.chunks[k // _CHUNK]
        k %= _CHUNK
        return tuple(c[k] for c in ch)

    def __iter__(self):
        for k in range(self.n):
            yield self[k]

    def index_of(self, t):
        lo, hi = 0, self.n - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            tm = self.chunks[mid // _CHUNK][0][mid % _CHUNK]
            if tm == t:
                return mid
            if tm < t:
                lo = mid + 1
            else:
                hi = mid - 1
        return -1


class Plant:
    """Power stage + cable + vehicle contactors, just enough physics."""

    def __init__(self):
        self.vb = 3500            # battery, 0.1 V
        self.ev_closed = False    # vehicle K5/K6
        self.ins_kohm = 2000      # insulation of the DC circuit
        self.cc1 = 4000
        self.bleed_ok = True
        self.lock_works = True
        self.v_in = 0
        self.v_out = 0
        self.i = 0
        self.i_stuck = -1         # >= 0: current ignores the set-point
        self.v_limit = -1         # >= 0: power stage cannot exceed this

    def update(self, out, inp):
        if out.pwr_en:
            self.v_in = out.v_set
            if 0 <= self.v_limit < self.v_in:
                self.v_in = self.v_limit
        elif out.bleed and out.k12 and self.bleed_ok:
            self.v_in = self.v_in - 2000 if self.v_in > 2000 else 0
        else:
            self.v_in = self.v_in * 99 // 100
        if self.ev_closed:
            self.v_out = self.vb
            if out.k12:
                self.v_in = self.vb if self.v_in < self.vb or not out.pwr_en else self.v_in
        elif out.k12:
            self.v_out = self.v_in
        elif out.bleed and self.bleed_ok:
            self.v_out = self.v_out - 2000 if self.v_out > 2000 else 0
        else:
            self.v_out = self.v_out * 99 // 100
        if out.k12 and self.ev_closed and out.pwr_en and out.v_set > self.vb:
            self.i = out.i_set
        else:
            self.i = 0
        if self.i_stuck >= 0 and out.k12 and self.ev_closed:
            self.i = self.i_stuck
        inp.v_inside = self.v_in
        inp.v_outside = self.v_out
        inp.i_out = self.i
        inp.cc1_mv = self.cc1
        inp.lock_fb = out.lock if self.lock_works else 0
        if out.k12 and not self.ev_closed and self.v_out > 1000:
            inp.insulation_kohm = self.ins_kohm
        else:
            inp.insulation_kohm = -1


class ScriptedBms:
    def __init__(self, bench):
        self.b = bench
        self.mute = set()
        self.out = []             # frames to deliver this step: (id, bytes)
        self.bhm_v = 5000
        self.vin = b"LSVAB4BR2EN123456"
        self.bcp_args = {}
        self.bro_delay = 300      # BRO 0x00 this long, then 0xAA
        self.req_v = 4100
        self.req_i = 1000
        self.mode = 2
        self.soc = 50
        self.st6 = 0x00
        self.st7 = 0xD0
        self.bst_reason = 0xFD    # SOC target reached
        self.reset()

    def reset(self):
        self.phase = "wait"
        self.t = {}
        self.crm = -1
        self.t_cml = -1
        self.cro_aa = False
        self.cst = -1
        self.bst_own = -1
        self.csd = False
        self.tp = None            # (pgn, payload) being sent
        self.tp_t = 0
        self.bro_now = 0
        self.bro_override = None

    # -- observing the charger --------------------------------------------
    def observe(self, t, cid, data):
        name = NAMES.get(cid)
        if name == "CHM" and self.phase == "wait":
            self.phase = "bhm"
        elif name == "CRM":
            self.crm = data[0]
            if self.phase in ("wait", "bhm", "brm", "wait_crm") and data[0] == 0:
                self.phase = "brm"
            elif data[0] == 0xAA and self.phase in ("brm", "bcp"):
                self.phase = "bcp"
        elif name == "CML" and self.phase in ("bcp",):
            self.phase = "bro"
            self.t_cml = t
        elif name == "CRO" and data[0] == 0xAA and self.phase == "bro":
            self.phase = "charge"
        elif name == "CST" and self.cst < 0:
            self.cst = t
            if self.phase != "stop":
                self.phase = "stop"
        elif name == "CSD":
            self.csd = True
        elif name == "CEM":
            if self.phase not in ("stop",):
                self.phase = "wait_crm"
                self.tp = None
                self.b.plant.ev_closed = False
        elif name == "TPCM" and self.tp is not None:
            if data[0] == 0x11:               # CTS: send the packets asked for
                n, nxt = data[1], data[2]
                payload = self.tp[1]
                for k in range(nxt, nxt + n):
                    chunk = list(payload[(k - 1) * 7:k * 7])
                    chunk += [0xFF] * (7 - len(chunk))
                    self.out.append((ids.ID_TPDT_RX, bytes([k] + chunk)))
            elif data[0] in (0x13, 0xFF):
                self.tp = None

    # -- sending ------------------------------------------------------------
    def due(self, key, now, period):
        last = self.t.get(key)
        if last is None or now - last >= period:
            self.t[key] = now
            return True
        return False

    def send(self, name, cid, payload):
        if name not in self.mute:
            self.out.append((cid, payload))

    def send_tp(self, name, pgn, payload, now):
        if name in self.mute:
            return
        if self.tp is not None and now - self.tp_t < 1250:
            return                          # previous transfer still open
        self.tp = (pgn, payload)
        self.tp_t = now
        n = len(payload)
        pk = (n + 6) // 7
        self.out.append((ids.ID_TPCM_RX, bytes([0x10] + u16(n) + [pk, 0xFF, pgn & 0xFF, (pgn >> 8) & 0xFF, 0])))

    def stop(self):
        """BMS-initiated end: BST now."""
        self.phase = "stop"
        self.bst_own = self.b.now

    def step(self, now):
        ph = self.phase
        p = self.b.plant
        if ph == "bhm":
            if self.due("bhm", now, 250):
                self.send("BHM", ids.ID_BHM, bhm(self.bhm_v))
        elif ph == "brm" and self.crm == 0:
            if self.due("brm", now, 250):
                self.send_tp("BRM", ids.PGN_BRM, brm(self.vin), now)
        elif ph == "bcp":
            if self.due("bcp", now, 500):
                a = dict(v=p.vb)
                a.update(self.bcp_args)
                self.send_tp("BCP", ids.PGN_BCP, bcp(**a), now)
        elif ph == "bro":
            if self.due("bro", now, 250):
                aa = now - self.t_cml >= self.bro_delay and "BRO_AA" not in self.mute
                if aa:
                    p.ev_closed = True
                v = 0xAA if aa else 0x00
                if self.bro_override is not None:
                    v = self.bro_override
                self.send("BRO", ids.ID_BRO, bytes([v]))
        elif ph == "charge":
            if self.due("bcl", now, 50):
                self.send("BCL", ids.ID_BCL, bcl(self.req_v, self.req_i, self.mode))
            if self.due("bcs", now, 250):
                self.send_tp("BCS", ids.PGN_BCS, bcs(p.v_out, p.i, soc=self.soc), now)
            if self.due("bsm", now, 250):
                self.send("BSM", ids.ID_BSM, bsm(self.st6, self.st7))
            if self.bro_override is not None and self.due("bro", now, 250):
                self.send("BRO", ids.ID_BRO, bytes([self.bro_override]))
        elif ph == "stop":
            # BST at 10 ms until CSD is seen (or 10 s), BSD at 250 ms after CST
            start = self.bst_own if self.bst_own >= 0 else self.cst
            if not self.csd and start >= 0 and now - start < 10000:
                self.send("BST", ids.ID_BST, bst(self.bst_reason))
            if self.cst >= 0 and self.due("bsd", now, 250):
                self.send("BSD", ids.ID_BSD, bsd())
            if p.i <= 50 and p.ev_closed and (self.cst >= 0 or self.bst_own >= 0):
                p.ev_closed = False           # vehicle opens K5/K6 at <= 5 A


class Bench:
    def __init__(self, cfg=None, start=True):
        self.clock = SimClock()
        self.now = 0
        self.inp = Inputs()
        self.out = Outputs()
        self.tx = []
        self.capture = True
        self.lean = False
        self.n_sent = 0
        self.send = self._send              # bound method made once
        self.bms = BmsData()
        c = {"session.auto_start": True}
        if cfg:
            c.update(cfg)
        self.cfg = c
        self.link = BmsLink(self.send, self.clock, self.bms, c)
        self.session = ChargerSession(c, self.send, self.inp, self.out, self.bms, self.link)
        self.session.tx.datetime = lambda: (2024, 5, 17, 13, 45, 30)
        self.plant = Plant()
        self.ev = ScriptedBms(self)
        self.frame = CanFrame()
        self.pending = []
        self.rx = []              # (t, can_id) of every BMS frame delivered
        self.log = Log()          # per step, see step()
        if not start:
            self.plant.cc1 = 12000

    def _send(self, cid, buf, n):
        self.n_sent += 1
        if self.lean:             # heap-lock tests: count only, allocate nothing
            return True
        f = (self.now, cid, bytes(buf[:n]))
        self.pending.append(f)
        if self.capture:
            self.tx.append(f)
        return True

    def deliver(self, cid, payload):
        if self.capture:
            self.rx.append((self.now, cid))
        f = self.frame
        f.id = cid
        f.dlc = len(payload)
        for k in range(len(payload)):
            f.data[k] = payload[k]
        self.link.on_frame(self.now, f)

    def step(self):
        self.now += TICK
        now = self.now
        self.clock.advance_to(now)
        self.plant.update(self.out, self.inp)
        pend = self.pending
        self.pending = []
        for t, cid, data in pend:
            self.ev.observe(t, cid, data)
        self.ev.step(now)
        out = self.ev.out
        self.ev.out = []
        for cid, payload in out:
            self.deliver(cid, payload)
        self.link.poll(now)
        self.session.tick(now)
        if now % 500 == 0:
            gc.collect()          # keep the test heap from fragmenting
        if self.capture:
            o = self.out
            i = self.inp
            self.log.add((now, self.session.stage, o.k12, o.k34, o.lock, o.bleed,
                             o.pwr_en, o.v_set, o.i_set, i.v_inside, i.v_outside, i.i_out))

    def run(self, ms):
        end = self.now + ms
        while self.now < end:
            self.step()

    def run_until(self, cond, limit_ms, what=""):
        end = self.now + limit_ms
        while self.now < end:
            self.step()
            if cond():
                return self.now
        raise AssertionError("not reached within %d ms: %s (stage %s)" % (
            limit_ms, what, self.session.stage_name()))

    def stage(self):
        return self.session.stage_name()

    def wait_stage(self, name, limit_ms=20000):
        return self.run_until(lambda: self.stage() == name, limit_ms, name)

    # -- what the charger sent -------------------------------------------------
    def sent(self, name, t0=0, t1=None):
        return [(t, d) for (t, cid, d) in self.tx
                if NAMES.get(cid) == name and t >= t0 and (t1 is None or t <= t1)]

    def first(self, name, t0=0):
        s = self.sent(name, t0)
        return s[0] if s else None


# columns of Bench.log
L_T, L_STAGE, L_K12, L_K34, L_LOCK, L_BLEED, L_PWR, L_VSET, L_ISET, L_VIN, L_VOUT, L_I = range(12)


def at(log, t):
    """The log row of time t."""
    k = log.index_of(t)
    if k >= 0:
        return log[k]
    raise AssertionError("no log row at %d" % t)


def first_change(log, col, val, t0=0):
    """Time of the first row (>= t0) where column col == val."""
    for r in log:
        if r[0] >= t0 and r[col] == val:
            return r[0]
    return None


def rx_last(bench, cid, t1=None):
    ts = [t for (t, c) in bench.rx if c == cid and (t1 is None or t <= t1)]
    return ts[-1] if ts else None


def gaps(frames):
    return [frames[k + 1][0] - frames[k][0] for k in range(len(frames) - 1)]
