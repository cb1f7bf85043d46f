"""Issue 13, part 5: hypothesis fuzzing of the host tools that read bytes
from the bus, from files or from the network (tests/fuzzkit.py batches;
``make test`` EVC_FUZZ_EXAMPLES default 2,000 per parser, ``make fuzz``
10**6).

* CAN log decoder (``host_tools.logdecode.LogDecoder.feed`` with its TP
  reassembler): arbitrary frame sequences; every record is a dict with its
  name, PGN, direction and fields, nothing escapes.
* BMS simulator's decoder of the charger's messages (``bms.codec.decode``):
  any payload of any charger message decodes to a dict.
* Platform ingest of telemetry batches from chargers (``platform.wire``
  ``unpack_batch`` -> ``record_offsets`` -> ``decode_columns``, the path of
  ``Store.add_batch`` and its flush): only ``ValueError`` for a malformed
  batch; records walked lie inside the batch; every walked record is kept
  or counted as dropped.
* Platform side of the secured link (``platform.seclink``): ``RecordLayer
  .open`` of raw, genuine, tampered and replayed frames (only a genuine
  fresh frame opens, to what was sealed); ``PlatformHandshake.answer`` of
  any HELLO (None or an ``EVR1`` reply) and ``finish`` of a forged FINISH
  (refused).
"""
import sys

import can
import numpy as np
from hypothesis import strategies as st

from conftest import ROOT
from fuzzkit import count, fuzz

sys.path.insert(0, str(ROOT))
from host_tools import logdecode as LD  # noqa: E402
from host_tools.bms import codec as BC  # noqa: E402
from host_tools.platform import wire as W, seclink as SL  # noqa: E402

FUZZ = count(2000)
_DB = LD.load_db()
_IDS = [0x1CEC56F4, 0x1CEB56F4, 0x1CECF456, 0x1CEBF456, 0x1826F456, 0x182756F4,
        0x1CECFFF4, 0x1CEBFFF4, 0x100956F4, 0x181056F4, 0x181156F4, 0x1C1356F4,
        0x1C1656F4, 0x101A56F4, 0x1801F456, 0x1812F456]


def _frames(raw):
    """12-byte chunks -> can.Message: mostly GB/T identifiers (TP, BMS and
    charger messages), DLC 0..8, now and then error/remote/standard frames."""
    out = []
    for o in range(0, len(raw) - 11, 12):
        c = raw[o:o + 12]
        cid = _IDS[c[0] % 16] if c[0] < 224 else \
            ((c[0] << 21) ^ (c[1] << 13) ^ (c[2] << 5) ^ c[3]) & 0x1FFFFFFF
        if c[0] < 112 and c[0] % 16 in (0, 2, 6):        # TP.CM: control byte RTS/BAM/CTS/abort
            c = bytes([(0x10, 0x20, 0x11, 0x13, 0xFF)[c[4] % 5]]) + c[5:12] + c[:4]
            if c[1] & 1:
                c = c[:1] + bytes([c[1] % 50, 0, 1 + (c[1] % 50 + 6) // 7]) + c[4:]
        else:
            c = c[4:] + c[:4]
        dlc = 8 if c[9] < 200 else c[9] % 9
        ext = c[10] < 250
        out.append(can.Message(timestamp=o / 1200, arbitration_id=cid if ext else cid & 0x7FF,
                               is_extended_id=ext, is_error_frame=c[11] == 0xFE,
                               is_remote_frame=c[11] == 0xFD, dlc=dlc, data=c[:dlc],
                               check=False))
    return out


def _check_logdecode(raw):
    dec = LD.LogDecoder(db=_DB)
    recs = []
    for m in _frames(raw):
        recs += dec.feed(m)
    recs += dec.finish() if hasattr(dec, "finish") else []
    for r in recs:
        assert isinstance(r, dict) and isinstance(r["name"], str) and isinstance(r["fields"], dict)
        assert r["dir"] in ("C->B", "B->C", "?")


def test_fuzz_can_log_decoder():
    fuzz("CAN log decoder", st.binary(min_size=12, max_size=360), _check_logdecode, FUZZ, per=40)


def _check_bms_codec(b):
    name = BC.CHARGER_MESSAGES[b[0] % len(BC.CHARGER_MESSAGES)]
    out = BC.decode(name, b[1:])
    assert isinstance(out, dict)


def test_fuzz_bms_simulator_charger_message_decoder():
    fuzz("BMS sim charger decoder", st.binary(min_size=1, max_size=20), _check_bms_codec, FUZZ)


_TEL_SIZES = W.FW.SIZES


def _batch(b):
    """Mostly a batch header with telemetry-shaped records (magic, type,
    size right, payload arbitrary), sometimes raw bytes."""
    if b[0] < 32:
        return bytes(b[1:])
    recs = bytearray()
    nrec, i = 0, 2
    while i < len(b):
        t = 1 + b[i] % (len(_TEL_SIZES) - 1)
        n = _TEL_SIZES[t]
        body = (b[i + 1:i + 1 + n] * n)[:n - 4] if b[i + 1:i + 2] else bytes(n - 4)
        recs += bytes([W.FW.MAGIC, W.FW.VERSION, t, n]) + body.ljust(n - 4, b"\0")
        nrec += 1
        i += 1 + max(1, b[i + 1] % 24 if i + 1 < len(b) else 1)
    if b[1] & 1:
        recs = recs[:len(recs) - b[1] % 7]          # cut inside the last record
    cnt = nrec if b[1] & 2 else (b[1] * 257 + b[0]) & 0xFFFF
    return W.BATCH_HDR.pack(W.BATCH_MAGIC, W.BATCH_VERSION, b[0] & 1, b[1], b[0] * 1000,
                            b[1] >> 4, cnt) + bytes(recs)


_PENDING = []


def _check_batch(payload):
    """``Store.add_batch``'s reading of one batch: only ValueError, the walk
    stays inside the batch; the records wait for the flush (``_flush``)."""
    try:
        cid, n0, boot, cnt, flags, recs = W.unpack_batch(payload)
    except ValueError:
        return
    offs, types = W.record_offsets(recs, cnt)
    assert len(offs) == len(types) <= cnt
    for o, t in zip(offs, types):
        assert 0 <= o and o + W.FW.SIZES[t] <= len(recs)
    _PENDING.append((bytes(recs), offs, types, n0 + np.arange(len(offs)), cid, boot))


def _flush():
    """The store's flush: every pending batch decoded in one
    ``decode_columns`` call (store.Store._decode_raw); each record walked is
    kept or counted dropped."""
    if not _PENDING:
        return
    raw = list(_PENDING)
    _PENDING.clear()
    base = np.cumsum([0] + [len(r[0]) for r in raw[:-1]])
    buf = b"".join(r[0] for r in raw)
    offs = np.concatenate([r[1] + b0 for r, b0 in zip(raw, base)])
    types = np.concatenate([r[2] for r in raw])
    ns = np.concatenate([r[3] for r in raw])
    cids = np.concatenate([np.full(len(r[1]), r[4], np.int64) for r in raw])
    boots = np.concatenate([np.full(len(r[1]), r[5], np.int64) for r in raw])
    tab, dropped = W.decode_columns(buf, ns, charger_ids=cids, boots=boots, offs=offs, types=types)
    assert tab.num_rows + dropped == len(offs)


def test_fuzz_platform_telemetry_batch_ingest():
    _PENDING.clear()
    fuzz("platform telemetry batch", st.binary(min_size=2, max_size=600).map(_batch),
         _check_batch, FUZZ, per=20, end=_flush)


_KA, _KB = (b"\x11" * 16, b"\x22" * 32), (b"\x33" * 16, b"\x44" * 32)


def _check_seclink(b):
    """<suite/mode> <rest>: raw frame, genuine, tampered or replayed.  The
    parser's checks (length, suite, tag, sequence) are the same for both
    suites; the sm suite's MAC is the gmssl reference in pure Python (~1 ms),
    so it gets 1 input in 64, aes the rest."""
    suite = SL.SUITE_SM if b[0] >= 252 else SL.SUITE_AES
    plat = SL.RecordLayer(suite, _KA, _KB)
    charger = SL.RecordLayer(suite, _KB, _KA)
    mode, rest = b[0] & 3, b[1:]
    want = None
    if mode == 0 or not rest:
        frame = bytearray(rest)
        if b[0] & 4 and len(frame) >= 28:       # a length field that fits: reaches the MAC
            frame[0] = suite
            frame[10:12] = (len(frame) - 28).to_bytes(2, "big")
        frame = bytes(frame)
    else:
        frame = charger.seal(rest[0], rest[1:])
        want = (rest[0], bytes(rest[1:]))
        if mode == 2:
            f = bytearray(frame)
            f[rest[0] % len(f)] ^= (rest[1] if len(rest) > 1 else 0) | 1
            frame, want = bytes(f), None
    got = plat.open(frame)
    assert got == want
    if mode == 3 and want is not None:
        assert plat.open(frame) is None and plat.rejected["replay"] == 1


def test_fuzz_platform_link_record_open_host():
    fuzz("platform seclink open", st.binary(min_size=1, max_size=120), _check_seclink, FUZZ)


def _delta_entries(recs):
    """This test's own encoding of delta entries (docs/security.md
    "Telemetry batches"), to give the parser valid batches too."""
    out, refs, last = bytearray(), {}, b""
    for r in recs:
        n = len(r)
        ref = refs.get(n, (last + bytes(n))[:n])
        masks = [sum(1 << b for b in range(8) if 8 * g + b < n and r[8 * g + b] != ref[8 * g + b])
                 for g in range((n + 7) // 8)]
        gm = sum(1 << g for g, m in enumerate(masks) if m)
        out += bytes([n]) + gm.to_bytes(((n + 7) // 8 + 7) // 8, "little")
        out += bytes(m for m in masks if m)
        out += bytes(x for x, y in zip(r, ref) if x != y)
        refs[n] = last = r
    return bytes(out + bytes(-len(out) % 16))


def _check_delta(b):
    """Raw bytes (mode bit 0 set): decoded or ValueError, nothing else.
    Otherwise records cut from the input (lengths 4..92, repeating bytes
    as telemetry does) encoded: decoded to exactly those records, and any
    one byte changed in the encoding decodes to something else or is a
    ValueError (never an exception of another kind)."""
    if b[0] & 1:
        try:
            r = SL.expand_delta(b[1:])
        except ValueError:
            return
        assert isinstance(r, bytes)
        return
    recs, i, prev = [], 1, b""
    while i + 1 < len(b):
        n = 4 + b[i] % 89
        body = bytes(b[i + 1:i + 1 + n])
        r = (body + prev[len(body):] + bytes(n))[:n]
        recs.append(r)
        prev = r
        i += 1 + max(1, len(body))
    enc = _delta_entries(recs)
    assert SL.expand_delta(enc) == b"".join(recs)
    if enc:
        j = b[-1] % len(enc)
        bad = bytearray(enc)
        bad[j] ^= 0x5A
        try:
            SL.expand_delta(bytes(bad))
        except ValueError:
            pass


def test_fuzz_platform_delta_batch_expand():
    fuzz("platform delta batch expand", st.binary(min_size=1, max_size=300), _check_delta, FUZZ)


_PSK = {"link_psk": b"\x5a" * 32}


def _check_handshake(b):
    hs = SL.PlatformHandshake(_PSK)
    if b[0] < 128:
        hello = b"EVH1" + bytes([SL.SUITE_AES]) + b[1:21].ljust(20, b"\0")[:20] if b[0] < 64 \
            else b"EVH1" + b[1:]
    else:
        hello = bytes(b[1:])
    r = hs.answer(hello)
    assert r is None or r[:4] == b"EVR1"
    assert not hs.finish(b"EVF1" + bytes(b[-32:]).ljust(32, b"\0"))
    assert hs.records is None


def test_fuzz_platform_handshake_host():
    fuzz("platform handshake", st.binary(min_size=1, max_size=100), _check_handshake, FUZZ)


def test_platform_batch_with_a_truncated_last_record_keeps_the_whole_ones():
    """Found by the fuzz: a batch cut inside its last record (header intact)
    made decode_columns index past the buffer (IndexError in the ingest's
    flush, every buffered batch lost).  The cut record ends the walk."""
    n = W.FW.SIZES[1]
    rec = bytes([W.FW.MAGIC, W.FW.VERSION, 1, n]) + bytes(n - 4)
    recs = rec + rec[:-1]
    payload = W.pack_batch(5, 100, 1, [rec, rec[:-1]])
    cid, n0, boot, cnt, flags, body = W.unpack_batch(payload)
    offs, types = W.record_offsets(body, cnt)
    assert cnt == 2 and list(offs) == [0] and list(types) == [1]
    tab, dropped = W.decode_columns(body, n0 + np.arange(len(offs)), offs=offs, types=types)
    assert tab.num_rows + dropped == 1
