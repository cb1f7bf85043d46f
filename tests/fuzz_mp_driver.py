"""Batch fuzz driver on the real ``micropython`` (tests/test_fuzz_gbt.py).

The GB/T decoders, the TP receiver and the SIL link's packet reader use
viper (``ptr8``), so they run on MicroPython only.  The host writes many
hypothesis-generated inputs into one batch file; this driver feeds each to
the parser in one process and prints ``OK <count>`` or, at the first
broken input, ``FAIL <index> <why>`` (then the traceback).

    micropython tests/fuzz_mp_driver.py dec|tp|link BATCHFILE

Batch file: records ``<u32 LE length> <payload>``, payload per kind:

* dec:  <u32 pgn> <u16 n> <data>: ``gbt.dec.decode(pgn, data, n, bms)``
  returns OK/E_LEN/E_RANGE/E_UNKNOWN, E_LEN when ``n`` exceeds the data,
  and a rejected message leaves ``bms`` exactly as it was.
* tp:   frames of 15 bytes <u16 dt_ms> <u32 can id> <u8 n> <8 data>:
  one fresh ``TransportReceiver`` per record, fed every frame and polled;
  a completed message is an allowed PGN of 1..1785 bytes, every frame the
  receiver sends is 8 bytes with the TP.CM identifier to the peer.
* link: the byte stream from the harness: packets read and applied
  (``_read_packet``/``_handle``) until the stream ends; the input table
  keeps its size, the receive FIFO never holds more than its depth (64;
  word 1 of ``_q``: private consts are not module attributes).
"""
import struct
import sys


AT = [-1]        # index of the record being fed (reported when a parser raises)


def _records(path):
    with open(path, "rb") as f:
        while True:
            AT[0] += 1
            h = f.read(4)
            if len(h) < 4:
                return
            n = struct.unpack("<I", h)[0]
            yield f.read(n)


def _snapshot(obj):
    out = []
    for k in sorted(dir(obj)):
        if k.startswith("__"):
            continue
        v = getattr(obj, k)
        if isinstance(v, (int, str, bool)) or v is None:
            out.append((k, v))
        elif isinstance(v, (bytes, bytearray)):
            out.append((k, bytes(v)))
        elif hasattr(v, "typecode") or type(v).__name__ == "array":
            out.append((k, list(v)))
        elif isinstance(v, (list, tuple)):
            out.append((k, repr(v)))
        elif hasattr(v, "__dict__"):          # a value object (BmsData.cells, .end)
            out.append((k, _snapshot(v)))
    return out


def run_dec(path):
    from gbt import dec
    from gbt.bmsdata import BmsData
    bms = BmsData()
    i = -1
    for i, rec in enumerate(_records(path)):
        if i % 64 == 0:
            bms.reset()
        pgn, n = struct.unpack_from("<IH", rec, 0)
        data = bytearray(rec[6:])
        before = _snapshot(bms)
        s = dec.decode(pgn, data, n, bms)
        if s not in (dec.OK, dec.E_LEN, dec.E_RANGE, dec.E_UNKNOWN):
            return i, "status %r" % (s,)
        if s != dec.E_UNKNOWN and n > len(data) and s != dec.E_LEN:
            return i, "n %d > %d bytes not E_LEN (%d)" % (n, len(data), s)
        if s != dec.OK and _snapshot(bms) != before:
            return i, "rejected message (%d) changed bms" % s
    return None, i + 1


def run_tp(path):
    from gbt import transport as T
    from gbt.ids import PGN_TPCM
    sent = []

    def send(cid, buf, n):
        sent.append((cid, n))
        return len(sent) % 7 != 0            # now and then the CAN TX is full
    i = -1
    for i, rec in enumerate(_records(path)):
        rx = T.TransportReceiver(send)
        sent.clear()
        now = 0
        for o in range(0, len(rec) - 14, 15):
            dt, cid, n = struct.unpack_from("<HIB", rec, o)
            data = bytearray(rec[o + 7:o + 15])
            now += dt
            if cid & 1:
                rx.poll(now)
            p = rx.on_frame(now, cid & 0x1FFFFFFF, data, n)
            if p:
                if p not in rx._pgns or not 0 < rx.length <= 1785 or p != rx.pgn:
                    return i, "completed pgn %r length %d" % (p, rx.length)
            if rx.state not in (T.S_IDLE, T.S_CMDT, T.S_BAM):
                return i, "state %r" % (rx.state,)
        rx.poll(now + 100000)
        if rx.state != T.S_IDLE:
            return i, "transfer open after every timeout"
        for cid, n in sent:
            if n != 8 or (cid >> 16) & 0xFF != PGN_TPCM >> 8:
                return i, "sent id %x n %d" % (cid, n)
    return None, i + 1


def run_link(path):
    import simlink as L
    import simwire as W

    class Board(L.LinkBoard):
        def __init__(self, stream):
            super().__init__(True)
            self.src = stream
            self.pos = 0

        def _recv(self, off, n):
            k = min(n, len(self.src) - self.pos)
            self.rbuf[off:off + k] = self.src[self.pos:self.pos + k]
            self.pos += k
            return k

        def _send(self, buf, n):
            pass
    i = -1
    for i, rec in enumerate(_records(path)):
        b = Board(rec)
        n_in = len(b.inputs)
        while True:
            try:
                n = b._read_packet()
            except OSError:
                break                       # the stream ended: link closed
            t = b._handle(b.last_type, n)
            if b.last_type == W.T_STEP and not 0 <= t < (1 << 30):
                return i, "step target %r" % t
        if len(b.inputs) != n_in or b._q[1] > 64:
            return i, "inputs %d queue %d" % (len(b.inputs), b._q[1])
    return None, i + 1


def main():
    kind, path = sys.argv[1], sys.argv[2]
    fn = {"dec": run_dec, "tp": run_tp, "link": run_link}[kind]
    try:
        bad, what = fn(path)
    except Exception as e:
        sys.print_exception(e)
        # which record: re-run counting is cheap enough for a failure
        print("FAIL %d exception %r" % (AT[0], e))
        return
    if bad is None:
        print("OK %d" % what)
    else:
        print("FAIL %d %s" % (bad, what))


main()
