"""Batch fuzz driver on the real ``micropython`` (tests/test_fuzz_gbt.py).

The GB/T decoders, the TP receiver and the SIL link's packet reader use
viper (``ptr8``), so they run on MicroPython only.  The host writes many
hypothesis-generated inputs into one batch file; this driver feeds each to
the parser in one process and prints ``OK <count>`` or, at the first
broken input, ``FAIL <index> <why>`` (then the traceback).

    micropython tests/fuzz_mp_driver.py dec|tp|link|rec|hs|plink BATCHFILE

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
* rec:  <mode> <rest>: the platform link's record ``open`` (see run_rec).
* hs:   the platform's REPLY fed to the charger's handshake (run_hs).
* plink: <mode> <rest>: the console's ``link("<text>")`` of a sealed link
  (what the TCU types; see run_plink).
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
    """Every instance attribute's value (arrays/buffers copied).  BmsData
    keeps all its state in instance attributes, so ``__dict__`` is all of
    it and far cheaper than ``dir()`` per input."""
    out = []
    d = obj.__dict__
    for k in sorted(d):
        v = d[k]
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v)
        elif hasattr(v, "typecode") or type(v).__name__ == "array":
            v = list(v)
        elif isinstance(v, (list, tuple)):
            v = repr(v)
        elif hasattr(v, "__dict__"):          # a value object (BmsData.cells, .end)
            v = _snapshot(v)
        out.append((k, v))
    return out


def run_dec(path):
    from gbt import dec
    from gbt.bmsdata import BmsData
    bms = BmsData()
    ref = _snapshot(bms)        # the state before the current input
    i = -1
    for i, rec in enumerate(_records(path)):
        if i % 64 == 0:
            bms.reset()
            ref = _snapshot(bms)
        pgn, n = struct.unpack_from("<IH", rec, 0)
        data = bytearray(rec[6:])
        s = dec.decode(pgn, data, n, bms)
        if s not in (dec.OK, dec.E_LEN, dec.E_RANGE, dec.E_UNKNOWN):
            return i, "status %r" % (s,)
        if s != dec.E_UNKNOWN and n > len(data) and s != dec.E_LEN:
            return i, "n %d > %d bytes not E_LEN (%d)" % (n, len(data), s)
        now = _snapshot(bms)
        if s != dec.OK and now != ref:
            return i, "rejected message (%d) changed bms" % s
        ref = now
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


def run_rec(path):
    """Platform link record layer ``open`` (records from the platform):
    payload <mode u8> <rest>.  mode%4 == 0: ``rest`` is the frame; 1: a
    genuine frame of type rest[0] carrying rest[1:] sealed by the peer;
    2: that genuine frame with byte rest[0] flipped by rest[1]|1;
    3: the last genuine frame again (a replay).  Only a genuine fresh frame
    opens, to exactly what was sealed; anything else is None with a reason."""
    from security import linkrec as L
    i = -1
    for suite in (L.SUITE_SM, L.SUITE_AES):
        ka, kb = (b"\x11" * 16, b"\x22" * 32), (b"\x33" * 16, b"\x44" * 32)
        charger = L.RecordLayer(suite, ka, kb)
        peer = L.RecordLayer(suite, kb, ka)
        last = None
        AT[0] = -1
        for i, rec in enumerate(_records(path)):
            if not rec:
                rec = b"\0"
            mode, rest = rec[0] & 3, rec[1:]
            want = None
            if mode == 0 or not rest:
                frame = rest
            else:
                frame = peer.seal(rest[0], rest[1:])
                want = (rest[0], bytes(rest[1:]))
                if mode == 2:
                    b = bytearray(frame)
                    b[rest[0] % len(b)] ^= (rest[1] if len(rest) > 1 else 0) | 1
                    frame, want = bytes(b), None
                elif mode == 3 and last is not None:
                    frame, want = last, None
                last = frame
            n_rej = sum(charger.rejected.values())
            got = charger.open(frame)
            if want is not None and got != want:
                return i, "genuine frame opened as %r" % (got,)
            if want is None and got is not None:
                return i, "forged/replayed frame opened: %r" % (got,)
            if got is None and (sum(charger.rejected.values()) != n_rej + 1 or
                                charger.last_reject not in (L.REJECT_SHORT, L.REJECT_TAG,
                                                            L.REJECT_REPLAY)):
                return i, "refusal not counted"
    return None, i + 1


def run_hs(path):
    """The charger's handshake reading the platform's REPLY (``feed``, then
    the steps that check it), both suites, from WAIT_REPLY each time:
    nothing forged is accepted (aes: the MAC; sm: only an on-curve Ep
    reaches VERIFY)."""
    from security import handshake as H
    from security import ecstep as E

    def rng(n):
        return bytes(range(1, n + 1))
    keys = {"link_psk": b"\x5a" * 32, "sm2_priv": 7, "sm2_pub": bytes(64),
            "platform_pub": bytes(64)}
    hss = []
    for suite in ("aes", "sm"):
        hs = H.ChargerHandshake(suite, 3, keys, rng, 10000, 10 ** 9, 0)
        while hs.stage != H.SEND_HELLO:
            hs.step(0)
        hs.take(0)
        hss.append((suite, hs, dict(hs.__dict__)))
    i = -1
    for i, rec in enumerate(_records(path)):
        for suite, hs, saved in hss:
            for k in saved:
                setattr(hs, k, saved[k])
            if hs.feed(rec, 1):
                # taken by its form; checked by the steps (not in the console's call)
                while hs.stage in (H.REPLY, H.DIGEST) and hs.step(2):
                    pass
            if suite == "aes":
                if hs.stage != H.FAILED or not hs.reason:
                    return i, "aes reply accepted"
            elif hs.stage != H.FAILED:
                if hs.stage != H.VERIFY or len(rec) != 148 or rec[:4] != b"EVR1" or \
                        E.point_of(rec[20:84]) is None:
                    return i, "sm reply passed to %r" % (hs.stage,)
            elif not hs.reason:
                return i, "sm refusal without a reason"
    return None, i + 1


def run_plink(path):
    """The console's ``link(text)`` on a sealed link under require (the
    TCU types what the platform sent).  <mode> <rest>, mode & 7:
    0: ``rest`` as text (latin-1: anything, hex or not); 1: ``rest`` in hex;
    2, 3, 4: a genuine command of type rest[0] % 8 carrying rest[1:], sealed
    by the platform (2: in hex, 3: in upper-case hex, 4: with the byte
    rest[0] flipped); 5: the last genuine command again (a replay);
    6: ``EVR1`` + ``rest`` in hex (a REPLY with no handshake waiting);
    7: hex with ``rest[0] % 3`` characters cut off the end.
    Always a text answer, never an exception; only a genuine fresh command
    is obeyed (a stop stops, a VIN is taken) and answered with a sealed
    result the platform opens; ``platlink()``'s status always prints."""
    from binascii import hexlify
    from security import linkrec as L
    from security import linkservice as P
    from security import linkbuild as LB
    ka, kb = (b"\x11" * 16, b"\x22" * 32), (b"\x33" * 16, b"\x44" * 32)
    i = -1
    for suite in (L.SUITE_SM, L.SUITE_AES):
        stops = [0]

        def stop():
            stops[0] += 1
        link = P.PlatformLink("require", None, stop, lambda code, a, b: None)
        link.records = L.RecordLayer(suite, ka, kb)
        peer = L.RecordLayer(suite, kb, ka)
        outs = [0, None]            # frames sent, the last one

        def out(frame):
            outs[0] += 1
            outs[1] = frame
        link.out = out
        link._ticks = lambda: 0
        link.errors = 0
        last = None
        AT[0] = -1
        for i, rec in enumerate(_records(path)):
            AT[0] = i
            if not rec:
                rec = b"\0"
            mode, rest = rec[0] & 7, rec[1:]
            want = None
            if mode == 0:
                text = "".join(chr(c) for c in rest)
            elif mode == 1 or not rest:
                text = hexlify(rest).decode()
            elif mode in (2, 3, 4):
                t = rest[0] % 8
                frame = peer.seal(t, rest[1:])
                want = (t, bytes(rest[1:]))
                if mode == 4:
                    b = bytearray(frame)
                    b[rest[0] % len(b)] ^= 1
                    frame, want = bytes(b), None
                else:
                    last = frame
                text = hexlify(frame).decode()
                if mode == 3:
                    text = text.upper()
            elif mode == 5:
                text = hexlify(last or b"").decode()
            elif mode == 6:
                text = hexlify(b"EVR1" + rest).decode()
            else:
                text = hexlify(rest).decode()
                text = text[:len(text) - rest[0] % 3]
            n_stops, n_out, vin = stops[0], outs[0], link.vin
            ans = LB.console_link(link, text)
            if not isinstance(ans, str) or not isinstance(LB.status(link), str):
                return i, "no text answer: %r" % (ans,)
            if want is not None:
                if not ans.startswith("accepted") or outs[0] != n_out + 1:
                    return i, "genuine command %r answered %r" % (want, ans)
                r = peer.open(outs[1][2:])
                if r is None or r[0] != L.T_RESULT or outs[1][0] != P.LINK_MAGIC:
                    return i, "result does not open: %r" % (r,)
                if stops[0] != n_stops + (want[0] == L.T_STOP):
                    return i, "stop obeyed %d times for %r" % (stops[0] - n_stops, want)
                if want[0] == P.T_VIN and link.vin != want[1]:
                    return i, "VIN not taken"
            elif ans.startswith("accepted") or stops[0] != n_stops or outs[0] != n_out \
                    or link.vin != vin:
                return i, "forged/replayed input obeyed: %r -> %r" % (text[:40], ans)
    return None, i + 1


def main():
    kind, path = sys.argv[1], sys.argv[2]
    fn = {"dec": run_dec, "tp": run_tp, "link": run_link, "rec": run_rec, "hs": run_hs,
          "plink": run_plink}[kind]
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
