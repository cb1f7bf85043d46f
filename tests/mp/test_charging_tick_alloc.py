"""The charging-stage tick of the real app allocates nothing.

``ChargerApp`` (firmware/charger.py, every task: protect, can, session,
records, checks, slow) runs on an in-process fake board whose CAN is wired
to ``bmsscript.ScriptedBms``; the scripted BMS brings it to the charging
stage, then 12 s of simulated charging (BCL 50 ms, BCS by TP 250 ms, BSM
250 ms in; CCS out) run as ordinary scheduler passes under
``micropython.heap_lock()``.  An allocation raises MemoryError inside a
task, which the app turns into fail-safe (H-9): so "not halted, still
charging, outputs still live" plus the expected traffic is the proof.
"""
import micropython
import mptest
from mptest import eq, true
from board import Inputs
from rt.clock import SimClock
from bmsscript import ScriptedBms, Plant, bcl, bcs, bsm
from gbt import ids
import charger


def tp_frames(pgn, payload):
    """RTS + every TP.DT of one BMS -> charger multi-packet message."""
    n = len(payload)
    k = (n + 6) // 7
    fr = [(ids.ID_TPCM_RX, bytes([0x10, n & 0xFF, n >> 8, k, 0xFF, pgn & 0xFF,
                                  (pgn >> 8) & 0xFF, pgn >> 16]))]
    for i in range(k):
        chunk = payload[7 * i:7 * i + 7]
        fr.append((ids.ID_TPDT_RX, bytes([i + 1]) + chunk + b"\xff" * (7 - len(chunk))))
    return fr


def bmv(cells):
    p = bytearray()
    for c in range(cells):
        v = 330 + (c % 7)                 # 3.30..3.36 V, group 0
        p.append(v & 0xFF)
        p.append(v >> 8)
    return bytes(p)


def bmt(probes):
    return bytes([50 + 25 + (k % 3) for k in range(probes)])


class FakeBoard:
    """Board contract in process; nothing in the per-pass methods allocates
    once ``lean`` is set (frames are preassembled tuples, counted only)."""
    name = "fake"

    def __init__(self):
        self.clock = SimClock()
        self.meas = Inputs()          # what the plant measured
        self.rxq = []                 # (can_id, payload) frames for the firmware
        self.rx_i = 0
        self.tx = []                  # (t, can_id, bytes) frames the firmware sent
        self.lean = False
        self.n_tx = 0
        self.n_tx_id = {}
        self.records = 0
        self.texts = []
        self.forced = 0
        self.out = None
        self.epoch = 1767225600
        # a bound method made once and kept in an instance attribute:
        # ``getattr(board, "rtc_s")`` then returns it without allocating
        self.rtc_s = self._rtc

    def _rtc(self):
        return self.epoch + self.clock.ms // 1000

    def can_send(self, cid, buf, n):
        self.n_tx += 1
        if self.lean:
            return True
        self.tx.append((self.clock.ms, cid, bytes(buf[:n])))
        return True

    def can_recv(self, frame):
        q = self.rxq
        i = self.rx_i
        if i >= len(q):
            return False
        f = q[i]
        self.rx_i = i + 1
        cid = f[0]
        p = f[1]
        frame.id = cid
        n = len(p)
        frame.dlc = n
        d = frame.data
        for k in range(n):
            d[k] = p[k]
        frame.ts_ms = self.clock.ms
        return True

    def read_inputs(self, inp):
        m = self.meas
        inp.v_inside = m.v_inside
        inp.v_outside = m.v_outside
        inp.i_out = m.i_out
        inp.cc1_mv = m.cc1_mv
        inp.insulation_kohm = m.insulation_kohm
        inp.t_gun_pos = m.t_gun_pos
        inp.t_gun_neg = m.t_gun_neg
        inp.estop = m.estop
        inp.k12_fb = m.k12_fb
        inp.lock_fb = m.lock_fb
        inp.leakage_ma = m.leakage_ma
        inp.mains_ok = m.mains_ok

    def write_outputs(self, out):
        self.out = out

    def force_safe(self):
        self.forced += 1

    def send_record(self, mv):
        self.records += 1

    def send_text(self, kind, text):
        self.texts.append(kind + " " + text)


class Rig:
    """ChargerApp + fake board + scripted BMS/plant, 10 ms harness steps."""

    def __init__(self, state_dir):
        self.board = b = FakeBoard()
        self.app = charger.ChargerApp(b, "/nonexistent-config.json", state_dir=state_dir)
        self.now = 0
        self.plant = Plant()
        self.ev = ScriptedBms(self)
        self.seen = 0

    def step(self):
        """10 ms: plant -> BMS answers the charger's frames -> scheduler passes."""
        b = self.board
        app = self.app
        self.now += 10
        out = app.out
        self.plant.update(out, b.meas)
        m = b.meas
        m.k12_fb = out.k12              # contactor aux follows the coil
        tx = b.tx
        for k in range(self.seen, len(tx)):
            t, cid, data = tx[k]
            self.ev.observe(t, cid, data)
        self.seen = len(tx)
        self.ev.step(self.now)
        b.rxq = self.ev.out
        b.rx_i = 0
        self.ev.out = []
        self._passes(self.now)

    def _passes(self, target):
        clock = self.board.clock
        sched = self.app.sched
        while True:
            nd = sched.next_due()
            if nd > target:
                break
            clock.advance_to(nd)
            self.app.run_due()
        clock.advance_to(target)

    def stage(self):
        return self.app.session.stage_name()


def _tmpdir(name):
    import os
    d = "/tmp/mp_alloc_" + name
    try:
        os.mkdir(d)
    except OSError:
        pass
    for f in os.listdir(d):
        try:
            os.remove(d + "/" + f)
        except OSError:
            pass
    return d


def test_charging_tick_allocates_nothing():
    r = Rig(_tmpdir("tick"))
    for _ in range(3000):                         # 30 s to charging
        r.step()
        if r.stage() == "charging":
            break
    eq(r.stage(), "charging", "reached charging (texts %r)" % (r.board.texts,))
    for _ in range(500):                          # 5 s: ramped up, steady state
        r.step()
    app = r.app
    b = r.board
    true(app.halted is None, "not halted before the lock: %r" % app.halted)
    # Steady-state BMS traffic, preassembled (the scripted BMS allocates).
    payload = bcs(3500, 1000)
    f_bcl = (ids.ID_BCL, bcl(4100, 1000))
    f_bsm = (ids.ID_BSM, bsm())
    f_rts = (ids.ID_TPCM_RX, bytes([0x10, 9, 0, 2, 0xFF, 0x00, 0x11, 0x00]))
    f_dt1 = (ids.ID_TPDT_RX, bytes([1]) + payload[:7])
    f_dt2 = (ids.ID_TPDT_RX, bytes([2]) + payload[7:] + b"\xff" * 5)
    q_bcl = [f_bcl]
    q_tp = [f_bcl, f_rts, f_dt1, f_dt2]
    q_bsm = [f_bsm]
    q_none = []
    # The optional messages (BMV / BMT / BSP, multi-packet) and transport
    # aborts, in the same window: an allocation on any of them must show.
    q_bmv = tp_frames(ids.PGN_BMV, bmv(96))              # 192 bytes, 28 packets
    q_bmt = tp_frames(ids.PGN_BMT, bmt(10))              # 10 bytes, 2 packets
    q_bsp = tp_frames(ids.PGN_BSP, bytes(range(16)))     # 16 bytes, 3 packets
    q_bsp1 = [(ids.ID_BSP, bytes(8))]                    # BSP in a single frame
    # the BMS aborts a BMV transfer after 3 packets (Abort, reason 3)
    q_abort = tp_frames(ids.PGN_BMV, bmv(96))[:4] + [
        (ids.ID_TPCM_RX, bytes([0xFF, 3, 0xFF, 0xFF, 0xFF, 0x00, 0x15, 0x00]))]
    # an RTS larger than any message: the charger answers Abort (reason 2)
    q_big = [(ids.ID_TPCM_RX, bytes([0x10, 0xD0, 0x07, 0xFF, 0xFF, 0x00, 0x15, 0x00]))]
    extra = {2: q_bmv, 4: q_bmt, 6: q_bsp, 7: q_bsp1, 9: q_abort, 10: q_big}
    plant = r.plant
    meas = b.meas
    out = app.out
    sched = app.sched
    clock = b.clock
    b.lean = True
    runs0 = [t.runs for t in sched.tasks]
    n_tx0 = b.n_tx
    tp = app.link.tp
    bcs0 = tp.completed
    ab_sent0 = tp.aborts_sent
    ab_rcvd0 = tp.aborts_rcvd
    bms = app.bms
    bms.bmv_cells = 0
    bms.bmt_probes = 0
    rec0 = b.records
    now = r.now
    steps = 1200                                   # 12 s, 1200 control ticks
    micropython.heap_lock()
    try:
        for k in range(steps):
            now += 10
            plant.update(out, meas)
            meas.k12_fb = out.k12
            if k % 25 == 0:
                b.rxq = q_tp
            elif k % 25 == 12:
                b.rxq = q_bsm
            elif k % 5 == 0:
                b.rxq = q_bcl
            elif k % 100 == 1 and k // 100 in extra:
                b.rxq = extra[k // 100]           # each once, between two BCS
            else:
                b.rxq = q_none
            b.rx_i = 0
            while True:
                nd = sched.next_due()
                if nd > now:
                    break
                clock.advance_to(nd)
                app.run_due()
            clock.advance_to(now)
    finally:
        micropython.heap_unlock()
    r.now = now
    true(app.halted is None, "no allocation (MemoryError -> fail-safe): %r" % app.halted)
    eq(r.stage(), "charging", "still charging")
    runs = [t.runs - r0 for t, r0 in zip(sched.tasks, runs0)]
    names = [t.name for t in sched.tasks]
    eq(runs[names.index("session")], steps, "one session tick per 10 ms")
    eq(runs[names.index("protect")], steps * 10 // app.cfg["sched.protect_ms"],
       "protect every sched.protect_ms")
    true(runs[names.index("slow")] >= 11, "slow task ran under the lock too")
    eq(tp.completed - bcs0, steps // 25 + 3, "every BCS, BMV, BMT, BSP reassembled")
    eq((bms.bmv_cells, bms.bmt_probes), (96, 10), "BMV and BMT decoded under the lock")
    eq(tp.aborts_rcvd - ab_rcvd0, 1, "the BMS's Abort handled")
    eq(tp.aborts_sent - ab_sent0, 1, "the charger's Abort (oversized RTS) sent")
    true(b.n_tx - n_tx0 >= steps // 5 + 2 * steps // 25, "CCS + CTS + EndOfMsgAck sent")
    true(b.records > rec0, "telemetry records sent")
    eq(out.k12, 1, "K1/K2 still closed")
    eq(out.pwr_en, 1, "power stage still on")
    eq(out.i_set, 1000, "following BCL")


mptest.main(globals())
