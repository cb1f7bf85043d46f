"""BmsLink.drain, the CAN task's receive loop (viper): repeats, folding in
one pass, the TP.DT fast window, the cost bound, long ticks.

The TP cases compare the link against the ``TransportReceiver`` fed frame
by frame (``on_frame`` + ``poll``, no fast window): the same responses on
the bus (CTS / EndOfMsgAck / Abort, in order, at the same times) and the
same messages, for random transfers with every kind of fault."""
import time
import micropython
import mptest
from mptest import eq, true
from board import CanFrame
from gbt import ids
from gbt import messages as m
from gbt.bmsdata import BmsData
from gbt.link import BmsLink
from gbt.transport import TransportReceiver
from bmsscript import bcl, bsm, u16
from doubles import LinkRecorder, recorded_link


class Q:
    """A board receive FIFO: ``recv(frame)`` pops (id, payload)."""

    def __init__(self):
        self.q = []
        self.i = 0

    def put(self, cid, payload):
        self.q.append((cid, payload))

    def recv(self, frame):
        if self.i >= len(self.q):
            return False
        cid, p = self.q[self.i]
        self.i += 1
        frame.id = cid
        frame.dlc = len(p)
        for k in range(len(p)):
            frame.data[k] = p[k]
        return True

    def left(self):
        return len(self.q) - self.i


def test_repeat_is_handled_without_decode_and_folded_in_its_pass():
    r, bms, link = recorded_link()
    q = Q()
    f = CanFrame()
    for k in range(3):
        q.put(ids.ID_BCL, bcl(4100, 1000))
    eq(link.drain(100, q.recv, f, 32, 40), 3, "taken")
    eq(r.calls, [(100, ids.PGN_BCL, m.OK)], "handled once in its pass")
    eq((link.rx, link.msgs, link.last_status), (3, 3, m.OK), "all counted")
    bms.req_v = 1234                           # a repeat is not decoded again
    q.put(ids.ID_BCL, bcl(4100, 1000))
    link.drain(110, q.recv, f, 32, 40)
    eq(r.calls[-1], (110, ids.PGN_BCL, m.OK), "repeat in a new pass: handled")
    eq(link.last_ok[ids.PGN_BCL >> 8], 110, "time stamp")
    eq(bms.req_v, 1234, "not decoded")
    q.put(ids.ID_BCL, bcl(4000, 1000))         # new payload: decoded
    q.put(ids.ID_BCL, bcl(4100, 1000))         # the old one again: decoded again
    link.drain(120, q.recv, f, 32, 40)
    eq(bms.req_v, 4100, "decoded")
    eq(r.calls[-2:], [(120, ids.PGN_BCL, m.OK)] * 2, "both handled")
    link.on_frame(120, f)                      # on_frame: a pass of its own
    eq(len(r.calls), 5, "not folded")
    link.reset()                               # new plug: nothing remembered
    bms.req_v = 1
    link.on_frame(130, f)
    eq(bms.req_v, 4100, "decoded after reset")


def test_invalid_frames_and_gated_messages_are_not_remembered():
    r, bms, link = recorded_link()
    q = Q()
    f = CanFrame()
    bad = bytes([0xFF, 0xFF, 0xA0, 0x0F, 0x02])      # V = FFFF: E_RANGE
    q.put(ids.ID_BCL, bad)
    q.put(ids.ID_BCL, bad)
    link.drain(10, q.recv, f, 32, 40)
    eq(r.calls, [(10, ids.PGN_BCL, m.E_RANGE)] * 2, "both dispatched as bad")
    eq(link.bad_range, 2, "counted")
    gate = []
    link.set_gate(lambda now, pgn: gate.append(pgn) or False)
    p = bytes(8)
    q.put(ids.ID_BRM & ~0x04000000 | 0x18000000, p)  # single-frame BRM (8 bytes)
    q.put(ids.ID_BRM & ~0x04000000 | 0x18000000, p)
    link.drain(20, q.recv, f, 32, 40)
    eq(gate, [ids.PGN_BRM] * 2, "the gate is asked every time")
    eq(link.gated, 2, "gated")


def test_flood_of_repeats_stays_in_one_pass_and_allocates_nothing():
    r, bms, link = recorded_link()
    calls = [0]

    def count(now, pgn, st):
        calls[0] += 1
    link.set_handler(count)
    q = Q()
    f = CanFrame()
    for k in range(19):
        q.put(ids.ID_BCL if k & 1 else ids.ID_BSM, bcl(4100, 1000) if k & 1 else bsm())
    link.drain(5, q.recv, f, 32, 40)          # first pass decodes
    q.q = q.q * 1
    q.i = 0
    recv = q.recv
    drain = link.drain
    micropython.heap_lock()
    try:
        n = drain(15, recv, f, 32, 40)
    finally:
        micropython.heap_unlock()
    eq(n, 19, "all taken")
    eq(link.rx_cut, 0, "not cut")
    eq(calls[0], 4, "2 per pass")


def test_cost_bound_leaves_frames_in_the_fifo():
    r, bms, link = recorded_link()
    q = Q()
    f = CanFrame()
    for k in range(10):
        q.put(ids.ID_BCL, bcl(4000 + k, 1000))   # all different: decoded
    n = link.drain(10, q.recv, f, 32, 12)
    eq((n, q.left(), link.rx_cut), (2, 8, 1), "two decodes, then the bound")
    n = link.drain(20, q.recv, f, 5, 1000)
    eq((n, q.left()), (5, 3), "burst bound")
    n = link.drain(30, q.recv, f, 32, 1000)
    eq((n, q.left()), (3, 0), "rest")
    eq(len(r.calls), 10, "every frame handled once")


# -- TP: the link's fast window against the receiver alone ------------------
def _rand(x):
    return (x * 1103515245 + 12345) & 0x7FFFFFFF


def _scenario(seed, pgns):
    """Passes of (dt_ms, frames): random RTS/CTS and BAM transfers with
    faults (gap, duplicate, wrong seq, short DLC, wrong DA, stall, abort,
    a second RTS)."""
    x = seed
    passes = []
    for t in range(12):
        x = _rand(x)
        pgn = pgns[x % len(pgns)]
        x = _rand(x)
        size = 9 + x % 200
        npk = (size + 6) // 7
        payload = bytes([(size + k * 7) & 0xFF for k in range(size)])
        x = _rand(x)
        bam = x % 5 == 0
        x = _rand(x)
        fault = x % 9
        if bam:
            cm = bytes([0x20] + u16(size) + [npk, 0xFF, pgn & 0xFF, pgn >> 8, 0])
            passes.append((50, [(ids.ID_TPCM_RX | 0xFF00, cm)]))
        else:
            cm = bytes([0x10] + u16(size) + [npk, 0xFF, pgn & 0xFF, pgn >> 8, 0])
            passes.append((10, [(ids.ID_TPCM_RX, cm)]))
        x = _rand(x)
        bad = 1 + x % npk
        pk = []
        for s in range(1, npk + 1):
            chunk = list(payload[(s - 1) * 7:s * 7])
            d = bytes([s] + chunk + [0xFF] * (7 - len(chunk)))
            cid = ids.ID_TPDT_RX | (0xFF00 if bam else 0)
            if s == bad:
                if fault == 1:
                    continue                                   # gap
                if fault == 2:
                    pk.append((cid, d))                        # duplicate
                elif fault == 3:
                    d = bytes([s + 1]) + d[1:]                 # wrong seq
                elif fault == 4:
                    d = d[:3]                                  # short DLC
                elif fault == 5:
                    cid = (cid & ~0xFF00) | 0x5700             # wrong DA
                elif fault == 6:
                    break                                      # stall: T1/T2
                elif fault == 7:
                    pk.append((ids.ID_TPCM_RX, cm))            # RTS again (same PGN)
            pk.append((cid, d))
        x = _rand(x)
        split = x % 3                                          # packets over passes
        if split == 0:
            passes.append((10, pk))
        else:
            h = len(pk) // 2
            passes.append((10, pk[:h]))
            passes.append((10 if split == 1 else 400, pk[h:]))
        if fault == 6:
            passes.append((900, []))
            passes.append((900, []))
        if fault == 8 and not bam:
            passes.append((10, [(ids.ID_TPCM_RX, bytes([0xFF, 3, 0xFF, 0xFF, 0xFF, pgn & 0xFF, pgn >> 8, 0]))]))
        passes.append((10, []))
    return passes


def _run_link(passes, t0):
    r = LinkRecorder()
    bms = BmsData()
    link = BmsLink(r.send, None, bms, {})
    out = []

    def h(now, pgn, st):
        if pgn in (ids.PGN_BCS, ids.PGN_BMV, ids.PGN_BMT, ids.PGN_BSP) and link.tp.length > 8:
            out.append((now, pgn, bytes(link.tp.buf[:link.tp.length])))
    link.set_handler(h)
    q = Q()
    f = CanFrame()
    now = t0
    for dt, frames in passes:
        now = time.ticks_add(now, dt)
        for cid, d in frames:
            q.put(cid, d)
        link.drain(now, q.recv, f, 256, 100000)
        link.poll(now)
    return r.sent, out, link.tp


def _run_tp(passes, t0):
    r = LinkRecorder()
    tp = TransportReceiver(r.send, ids.CHARGER, ids.BMS, cfg={})
    out = []
    now = t0
    for dt, frames in passes:
        now = time.ticks_add(now, dt)
        for cid, d in frames:
            if (cid & 0xFF) != ids.BMS or ((cid >> 8) & 0xFF) not in (ids.CHARGER, ids.GLOBAL):
                continue                       # what the link filters out
            pgn = tp.on_frame(now, cid, d, len(d))
            if pgn and tp.length > 8:
                out.append((now, pgn, bytes(tp.buf[:tp.length])))
        tp.poll(now)
    return r.sent, out, tp


def test_tp_fast_window_matches_the_receiver_frame_by_frame():
    pgns = (ids.PGN_BCS, ids.PGN_BMV, ids.PGN_BMT, ids.PGN_BSP)
    # long ticks too: on the unix port ticks run past 2**31 (the link keeps
    # 30-bit images), on the target they wrap at 2**30
    for t0 in (0, time.ticks_add(0, -700), 0x7FFFFF00 if time.ticks_add(0, -1) > 0x3FFFFFFF else 5):
        for seed in range(1, 13):
            passes = _scenario(seed * 7919, pgns)
            sa, oa, ta = _run_link(passes, t0)
            sb, ob, tb = _run_tp(passes, t0)
            eq([(hex(c), d) for c, d in sa], [(hex(c), d) for c, d in sb], "bus, seed %d" % seed)
            eq(oa, ob, "messages, seed %d" % seed)
            eq((ta.completed, ta.errors, ta.dups, ta.retransmits, ta.aborts_sent),
               (tb.completed, tb.errors, tb.dups, tb.retransmits, tb.aborts_sent),
               "counters, seed %d" % seed)
            true(tb.completed > 0, "some messages complete")


mptest.main(globals())
