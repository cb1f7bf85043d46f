"""gbt.transport allocates nothing per frame: on_frame/poll run under
micropython.heap_lock() (any allocation raises MemoryError) over complete
transfers and every error path, repeated so that nothing grows either."""
import micropython
import time

import mptest
from mptest import eq, true

from gbt import transport as tp
from gbt.transport import TransportReceiver
from gbt.intrusion import IntrusionMonitor, IX_TP_TRICKLE, IX_TP_PREEMPT

RX_CM = 0x1CEC56F4
RX_DT = 0x1CEB56F4
BAM_CM = 0x1CECFFF4
BAM_DT = 0x1CEBFFF4

BRM = bytes(range(0x30, 0x30 + 49))
BCP = bytes(range(0xA0, 0xA0 + 13))
BCS = bytes(range(0x10, 0x10 + 9))

F = 0       # script step: frame (F, t, id, data, n)
P = 1       # poll (P, t)
TXOK = 2    # board TX queue accepts (TXOK, 1) or refuses (TXOK, 0)


class Sink:
    """Allocation-free fake CAN send: counts frames by control byte."""

    def __init__(self):
        self.ok = True
        self.sent = 0
        self.cts = 0
        self.eoma = 0
        self.aborts = 0
        self.refused = 0
        self.last = bytearray(8)

    def send(self, cid, buf, n):
        if not self.ok:
            self.refused += 1
            return False
        self.sent += 1
        c = buf[0]
        if c == 0x11:
            self.cts += 1
        elif c == 0x13:
            self.eoma += 1
        elif c == 0xFF:
            self.aborts += 1
        for i in range(8):
            self.last[i] = buf[i]
        return True


def cm(ctrl, b1, b2, b3, b4, pgn):
    return bytearray([ctrl, b1, b2, b3, b4, pgn & 0xFF, (pgn >> 8) & 0xFF, pgn >> 16])


def rts(size, pgn=0x0200, npk=None, maxpk=0xFF, ctrl=0x10):
    if npk is None:
        npk = (size + 6) // 7
    return cm(ctrl, size & 0xFF, size >> 8, npk, maxpk, pgn)


def dt(msg, seq):
    d = bytearray(8)
    d[0] = seq
    for i in range(7):
        j = (seq - 1) * 7 + i
        d[1 + i] = msg[j] if j < len(msg) else 0xFF
    return d


class Script:
    def __init__(self):
        self.steps = []
        self.t = 0

    def f(self, cid, data, n=8, dt_ms=1):
        self.t += dt_ms
        self.steps.append((F, self.t, cid, data, n))

    def poll(self, dt_ms):
        self.t += dt_ms
        self.steps.append((P, self.t))

    def txok(self, ok):
        self.steps.append((TXOK, 1 if ok else 0))

    def transfer(self, msg, pgn, seqs=None, cm_id=RX_CM, dt_id=RX_DT, bam=False):
        self.f(cm_id, rts(len(msg), pgn, ctrl=0x20 if bam else 0x10))
        if seqs is None:
            seqs = range(1, (len(msg) + 6) // 7 + 1)
        for s in seqs:
            self.f(dt_id, dt(msg, s))


def build():
    """Every path of the receiver once; returns (script, completions)."""
    s = Script()
    done = 0
    # normal transfers, windows of 2 (cfg) -> re-CTS
    s.transfer(BRM, 0x0200)
    s.transfer(BCP, 0x0600)
    s.transfer(BCS, 0x1100)
    done += 3
    # BAM
    s.transfer(BCP, 0x0600, cm_id=BAM_CM, dt_id=BAM_DT, bam=True)
    done += 1
    # gap -> retransmission request -> resync ignore -> complete
    s.transfer(BRM, 0x0200, seqs=(1, 3, 4, 2, 3, 4, 5, 6, 7))
    done += 1
    # duplicates
    s.transfer(BRM, 0x0200, seqs=(1, 1, 2, 2, 1, 3, 4, 5, 6, 7))
    done += 1
    # retransmission limit -> Abort 5
    s.transfer(BRM, 0x0200, seqs=(1, 3, 2, 3, 5, 4, 7))
    # bad sequence numbers -> Abort 7
    s.transfer(BRM, 0x0200, seqs=(1,))
    d0 = dt(BRM, 2)
    d0[0] = 0
    s.f(RX_DT, d0)
    s.transfer(BRM, 0x0200, seqs=(1,))
    d9 = dt(BRM, 2)
    d9[0] = 9
    s.f(RX_DT, d9)
    # invalid RTS: mismatch, size 0, > buffer, > 1785, PGN not allowed
    s.f(RX_CM, rts(49, npk=3))
    s.f(RX_CM, rts(0, npk=0))
    s.f(RX_CM, rts(400, 0x1500))
    s.f(RX_CM, rts(1786, 0x1500, npk=255))
    s.f(RX_CM, rts(20, 0x2000))
    # RTS other PGN while open (preempt by default / busy with
    # tp.rts_preempt 0), same PGN restart, then complete
    s.f(RX_CM, rts(49))
    s.f(RX_DT, dt(BRM, 1))
    s.f(RX_CM, rts(13, 0x0600))
    s.f(RX_DT, dt(BRM, 2))
    s.transfer(BRM, 0x0200)
    done += 1
    # trickle: one TP.DT every 700 ms outlives 1250 + 7 x 200 ms: Abort 3
    # (E_SLOW) by poll at 2700 ms, before T1 of the 3rd packet
    s.f(RX_CM, rts(49))
    for q in (1, 2, 3):
        s.f(RX_DT, dt(BRM, q), dt_ms=700)
    s.poll(600)
    # the same as a BAM, found by on_frame at the 4th packet: dropped silently
    s.f(BAM_CM, rts(49, ctrl=0x20))
    for q in (1, 2, 3, 4):
        s.f(BAM_DT, dt(BRM, q), dt_ms=700)
    # BAM while RTS open, RTS replaces BAM
    s.f(RX_CM, rts(9, 0x1100))
    s.f(BAM_CM, rts(13, 0x0600, ctrl=0x20))
    s.f(RX_DT, dt(BCS, 1))
    s.f(RX_DT, dt(BCS, 2))
    done += 1
    s.f(BAM_CM, rts(13, 0x0600, ctrl=0x20))
    s.transfer(BCS, 0x1100)
    done += 1
    # addresses, DLC, no session, unexpected control bytes, non-TP id
    s.f(0x1CEC56F5, rts(49))
    s.f(0x1CEC57F4, rts(49))
    s.f(BAM_CM, rts(49))
    s.f(RX_CM, rts(13, 0x0600, ctrl=0x20))
    s.f(RX_CM, rts(49), 7)
    s.f(RX_DT, dt(BRM, 1))
    s.f(RX_CM, cm(0x11, 1, 1, 0xFF, 0xFF, 0x0200))
    s.f(RX_CM, cm(0x13, 49, 0, 7, 0xFF, 0x0200))
    s.f(RX_CM, cm(0x55, 0, 0, 0, 0, 0))
    s.f(0x1C0256F4, dt(BRM, 1))
    s.f(RX_CM, rts(9, 0x1100))
    s.f(0x1CEB56F5, dt(BCS, 1))
    s.f(BAM_DT, dt(BCS, 1))
    s.f(RX_DT, dt(BCS, 1), 4)                 # short DT: lost
    s.f(RX_DT, dt(BCS, 1))
    s.f(RX_DT, dt(BCS, 2), 3)                 # short last packet, enough
    done += 1
    # received Abort (matching / other PGN / no session)
    s.f(RX_CM, rts(49))
    s.f(RX_CM, cm(0xFF, 3, 0xFF, 0xFF, 0xFF, 0x0600))
    s.f(RX_CM, cm(0xFF, 3, 0xFF, 0xFF, 0xFF, 0x0200))
    s.f(RX_CM, cm(0xFF, 3, 0xFF, 0xFF, 0xFF, 0x0200))
    # timeouts: T2 after CTS, T1 between packets, BAM T1, late packet
    s.f(RX_CM, rts(49))
    s.poll(1300)
    s.f(RX_CM, rts(49))
    s.f(RX_DT, dt(BRM, 1))
    s.poll(800)
    s.f(BAM_CM, rts(13, 0x0600, ctrl=0x20))
    s.poll(800)
    s.f(RX_CM, rts(49))
    s.f(RX_DT, dt(BRM, 1), dt_ms=1300)        # after T2: late, no session
    # TX refused: retried within Tr, then given up after Tr
    s.txok(False)
    s.f(RX_CM, rts(9, 0x1100))
    s.poll(50)
    s.txok(True)
    s.poll(10)
    s.f(RX_DT, dt(BCS, 1))
    s.txok(False)
    s.f(RX_DT, dt(BCS, 2))                    # EOMA refused
    done += 1
    s.poll(100)
    s.poll(150)                               # > Tr: given up
    s.txok(True)
    s.poll(10)
    return s, done


def run(r, sink, steps, base):
    """The measured loop: indexes only, no iterator or tuple building."""
    completed = 0
    i = 0
    n = len(steps)
    while i < n:
        st = steps[i]
        k = st[0]
        if k == F:
            if r.on_frame(base + st[1], st[2], st[3], st[4]):
                completed += 1
        elif k == P:
            r.poll(base + st[1])
        else:
            sink.ok = st[1] == 1
        i += 1
    return completed


def _locked(r, sink, steps, passes, span):
    base = 0
    total = 0
    micropython.heap_lock()
    try:
        for _ in range(passes):
            total += run(r, sink, steps, base)
            base += span
    finally:
        micropython.heap_unlock()
    return total


def test_heap_lock_catches_allocation():
    # guard: the tests below mean something only if heap_lock bites here
    x = None
    micropython.heap_lock()
    try:
        try:
            x = [1, 2, 3]
        except MemoryError:
            x = "caught"
    finally:
        micropython.heap_unlock()
    eq(x, "caught", "allocation under heap_lock raises MemoryError")


def test_no_allocation_over_all_paths():
    # both answers to an RTS for another PGN: preempt (default, Abort 1 to
    # the open transfer, intrusion noted) and J1939-21 busy (tp.rts_preempt 0)
    s, done = build()
    for preempt in (1, 0):
        sink = Sink()
        ix = IntrusionMonitor()
        r = TransportReceiver(sink.send, cfg={"tp.cts_window": 2, "tp.rts_preempt": preempt},
                              size=256, ix=ix)
        passes = 20
        total = _locked(r, sink, s.steps, passes, s.t + 10000)
        eq(total, done * passes, "completions")
        eq(r.completed, done * passes, "completed counter")
        # the error paths really ran
        true(r.aborts_sent >= 10 * passes, "aborts sent: %d" % r.aborts_sent)
        true(r.retransmits >= 3 * passes, "retransmits")
        true(r.dups >= 3 * passes, "dups")
        true(r.aborts_rcvd == passes, "aborts received")
        true(sink.refused >= 2 * passes, "tx refused")
        eq(r.state, tp.S_IDLE, "idle at end")
        eq(ix.count[IX_TP_TRICKLE], 2 * passes, "trickles noted (RTS/CTS and BAM)")
        true((ix.count[IX_TP_PREEMPT] >= passes) == (preempt == 1),
             "preempts noted: %d" % ix.count[IX_TP_PREEMPT])


def test_no_allocation_each_error_code_reached():
    # run the script step by step (unlocked) and record which last_error
    # codes occur, so the locked run above is known to cover them all
    s, done = build()
    sink = Sink()
    r = TransportReceiver(sink.send, cfg={"tp.cts_window": 2}, size=256,
                          ix=IntrusionMonitor())
    seen = set()
    for st in s.steps:
        if st[0] == F:
            r.on_frame(st[1], st[2], st[3], st[4])
        elif st[0] == P:
            r.poll(st[1])
        else:
            sink.ok = st[1] == 1
        seen.add(r.last_error)
    for code in range(1, len(tp.ERROR_NAMES)):
        true(code in seen, "path for %s not exercised" % tp.ERROR_NAMES[code])
    true(r.peer_abort == 3, "abort received")


def test_no_allocation_counter_wrap():
    # counters near the small-int limit must wrap, not become long ints
    sink = Sink()
    r = TransportReceiver(sink.send)
    r.errors = 0x3FFFFFFF
    r.completed = 0x3FFFFFFF
    d = dt(BCS, 1)
    a = rts(9, 0x1100)
    b = dt(BCS, 2)
    micropython.heap_lock()
    try:
        r.on_frame(0, RX_DT, d, 8)           # no session -> errors wraps
        r.on_frame(1, RX_CM, a, 8)
        r.on_frame(2, RX_DT, d, 8)
        p = r.on_frame(3, RX_DT, b, 8)
    finally:
        micropython.heap_unlock()
    eq((r.errors, r.completed, p), (0, 0, 0x1100), "wrapped")


def _rnd(x):
    """ZX81 LCG: products stay far inside the small-int range (no heap)."""
    return (x * 75 + 74) % 65537


def _flood(r, d, ids, frames):
    x = 4242
    t = 0
    for _ in range(frames):
        x = _rnd(x)
        cid = ids[x % 7]
        for i in range(8):
            x = _rnd(x)
            d[i] = x & 0xFF
        if x & 0x300 == 0:
            d[0] = 0x10                         # plenty of RTS
        if x & 0x700 == 0x100:
            d[0] = (x >> 4) & 7                 # plausible sequence numbers
        x = _rnd(x)
        t += x & 15
        r.on_frame(t, cid, d, (x >> 4) & 15)    # DLC 0..15
        if x & 0x1F00 == 0:
            r.poll(t)
    return t


def test_no_allocation_random_flood():
    sink = Sink()
    r = TransportReceiver(sink.send, size=256, ix=IntrusionMonitor())
    d = bytearray(8)
    ids = (RX_CM, RX_DT, BAM_CM, BAM_DT, 0x1CEC56F5, 0x1CEB57F4, 0x1C0256F4)
    micropython.heap_lock()
    try:
        t = _flood(r, d, ids, 20000)
    finally:
        micropython.heap_unlock()
    true(t > 0 and r.errors > 1000 and sink.sent > 100,
         "flood reached the paths: %d errors, %d sent" % (r.errors, sink.sent))


def test_cost_per_frame_measured():
    s = Script()
    for _ in range(20):
        s.transfer(BRM, 0x0200)
    sink = Sink()
    r = TransportReceiver(sink.send)
    steps = s.steps
    best = 1 << 29
    got = 0
    micropython.heap_lock()
    try:
        for k in range(5):                  # best of 5: skip cold-start noise
            t0 = time.ticks_us()
            got += run(r, sink, steps, k * 100000)
            us = time.ticks_diff(time.ticks_us(), t0)
            if us < best:
                best = us
    finally:
        micropython.heap_unlock()
    eq(got, 100, "transfers")
    print("MEASURE transport: %d frames, best %d us, %d ns/frame (unix port)"
          % (len(steps), best, best * 1000 // len(steps)))


mptest.main(globals())
