"""Issue 13, part 5: hypothesis fuzzing of the firmware's parsers of outside input.

On CPython (pure-Python firmware modules, ``micropython.const`` shim as in
tests/test_security_host.py): the configuration JSON parser
(``config.parse`` = ``cfgjson.parse``), the host's event-log scanner (the
firmware's ``diag.eventlog.scan``) and telemetry record decoder.  On the real
``micropython`` (viper modules: ``ptr8`` does not exist on CPython): the BMS
message decoders (``gbt.dec`` with ``gbt.decdetail``), the J1939 TP receiver
(``gbt.transport``, TP.CM/TP.DT sequences of 1..40 frames), the SIL link's
packet reader (``simlink``), the platform link's record ``open``
(``security.linkrec``), the handshake's reading of the platform's REPLY
(``security.handshake``) and the console's ``link("<text>")`` that carries
both (``security.linkservice``): hypothesis generates the inputs here,
tests/fuzz_mp_driver.py checks 100,000 per micropython process.  The
console command line and the update bundle parsers are fuzzed in
tests/test_security_host.py, the host tools in tests/test_fuzz_host.py.

``make test`` runs EVC_FUZZ_EXAMPLES (default 2,000) per parser, ``make
fuzz`` 10**6 (tests/fuzzkit.py: 200 inputs per hypothesis example, one draw
per input).  A batch failure names the input (hex) that broke the parser.
"""
import json
import struct
import sys
import types

from hypothesis import strategies as st

from conftest import ROOT
from fuzzkit import count, fuzz, fuzz_mp

FUZZ = count(2000)

if "micropython" not in sys.modules:
    _m = types.ModuleType("micropython")
    _m.const = lambda x: x
    _m.viper = _m.native = lambda f: f
    sys.modules["micropython"] = _m
if str(ROOT / "firmware") not in sys.path:
    sys.path.insert(0, str(ROOT / "firmware"))
sys.path.insert(0, str(ROOT))
import config  # noqa: E402
from host_tools import eventlog as HEL, telemetry as HTL  # noqa: E402


# ---- gbt.dec: the BMS -> charger message decoders ------------------------------
_BMS_PGNS = [0x2700, 0x0200, 0x0600, 0x0900, 0x1000, 0x1100, 0x1300, 0x1500, 0x1600,
             0x1700, 0x1800, 0x1900, 0x1C00, 0x1E00]
_FILL = [0, 0xFF, 0xFE, 0x7F, 0x80, 1, 0xC0, 0x3F]


def _enc_dec(b):
    """One binary draw -> <u32 pgn> <u16 n> <data>: mostly a BMS PGN, ``n``
    near the data length (-2..+2, or anything within +-600), data raw or
    made of fill/limit bytes."""
    pgn = _BMS_PGNS[b[0] % 14] if b[0] < 176 else (b[0] << 10 ^ b[1] << 2 ^ b[2]) & 0x3FFFF
    dn = b[1] % 5 - 2 if b[1] < 192 else (b[1] << 8 | b[2]) % 1201 - 600
    data = b[3:]
    if b[2] & 0x30 == 0x30:                  # long messages (BRM 49, BMV/BMT/BSP up to 512)
        data = ((data or b"\0") * 512)[:(8, 41, 49, 128, 255, 256, 300, 512)[b[2] % 8]]
    if b[2] & 0xC0 == 0xC0:
        data = bytes(_FILL[x % 8] for x in data)
    n = max(0, min(0xFFFF, len(data) + dn))
    return struct.pack("<IH", pgn, n) + data


_dec_in = st.binary(min_size=3, max_size=523)


def test_fuzz_gbt_message_decoders(tmp_path):
    fuzz_mp("dec", _dec_in, _enc_dec, FUZZ, tmp_path)


# ---- gbt.transport: arbitrary TP.CM / TP.DT sequences ---------------------------
# One binary draw per sequence (a draw costs ~30 us; 5 per frame made 10**6
# sequences take hours), each 12-byte chunk mapped onto a frame with the
# bias that reaches the deep states: mostly the peer's TP identifiers, 8-byte
# frames, allowed PGNs, small sizes/packet counts/sequence numbers, short gaps.
_TP_PGNS = [0x0200, 0x0600, 0x1100, 0x1500, 0x1600, 0x1700, 0x1C00, 0x1234, 0]
_TP_IDS = [0x1CEC56F4, 0x1CEB56F4, 0x1CECFFF4, 0x1CEBFFF4,
           0x1CEC56F3, 0x1CEB5600, 0x18EC56F4, 0x1C0256F4]
_TP_CTRL = [16, 17, 19, 32, 255, 0, 18, 21]


def _tp_frame(c):
    dt = c[0] % 21 if c[0] < 192 else (c[0] * 12 + c[1]) % 3001
    cid = _TP_IDS[c[1] % 8] if c[1] < 200 else \
        ((c[1] << 21) ^ (c[2] << 13) ^ (c[3] << 5) ^ c[11]) & 0x1FFFFFFF
    n = 8 if c[2] < 224 else c[2] % 9
    kind = c[3] % 3
    if kind == 0:                            # TP.CM
        size = c[5] % 61 if c[6] & 1 else c[5] | (c[6] << 8)
        packets = c[7] % 13 if c[8] & 1 else c[7]
        pgn = _TP_PGNS[c[10] % 9]
        d = bytes([_TP_CTRL[c[4] % 8], size & 0xFF, size >> 8, packets, c[9],
                   pgn & 0xFF, pgn >> 8, 0])
    elif kind == 1:                          # TP.DT
        d = bytes([c[4] % 13 if c[3] & 4 else c[4]]) + bytes(c[5:12])
    else:
        d = bytes(c[4:12])
    return struct.pack("<HIB", dt, cid, n) + d


def _enc_tp(raw):
    """Byte 0: how many frames (1..40); the 12-byte chunks of the rest are
    reused when the draw is short (hypothesis draws are mostly short), the
    control/sequence byte advanced by the frame index so that reused TP.DT
    frames carry the next sequence numbers."""
    k, body = 1 + raw[0] % 40, raw[1:]
    chunks = [body[o:o + 12] for o in range(0, len(body) - 11, 12)]
    out = []
    for j in range(k if chunks else 0):
        c = bytearray(chunks[j % len(chunks)])
        if j >= len(chunks):
            c[4] = (c[4] + j // len(chunks)) & 0xFF
        out.append(_tp_frame(c))
    return b"".join(out)


def test_fuzz_j1939_transport_receiver(tmp_path):
    fuzz_mp("tp", st.binary(min_size=13, max_size=481), _enc_tp, FUZZ, tmp_path)


# ---- simlink: the SIL link's packet reader (host -> firmware) ----------------------
def _link_stream(raw):
    """Mostly well-formed packets (type 1..7, length byte, payload), now and
    then a run of raw bytes (bad types, lengths beyond the payload)."""
    out, i = bytearray(), 0
    while i < len(raw):
        t = raw[i]
        if t < 208:
            ln = raw[i + 1] % 21 if i + 1 < len(raw) else 0
            out += bytes([1 + t % 7, ln]) + raw[i + 2:i + 2 + ln]
            i += 2 + ln
        else:
            chunk = raw[i + 1:i + 3 + t % 41]
            out += chunk
            i += 1 + len(chunk)
    return bytes(out)


def test_fuzz_sil_link_packet_reader(tmp_path):
    # byte 0: the draw repeated 1..8 times (longer streams from short draws)
    fuzz_mp("link", st.binary(min_size=1, max_size=600),
            lambda b: _link_stream(b[1:] * (1 + b[0] % 8)), FUZZ, tmp_path)


# ---- security.linkrec: records from the platform ----------------------------------
def _enc_rec(raw):
    """Mode byte (see fuzz_mp_driver.run_rec); raw frames with bit 2 of the
    mode set get a length field matching their size so they reach the MAC."""
    if raw and raw[0] & 3 == 0 and raw[0] & 4 and len(raw) >= 29:
        f = bytearray(raw[1:])
        f[0] = 1 + (raw[0] >> 3) % 2
        struct.pack_into(">H", f, 10, len(f) - 28)
        return raw[:1] + bytes(f)
    return raw


def test_fuzz_platform_link_record_open(tmp_path):
    fuzz_mp("rec", st.binary(max_size=160), _enc_rec, FUZZ, tmp_path)


# ---- security.handshake: the platform's REPLY ----------------------------------------
_hs_in = st.one_of(st.binary(max_size=200),
                   st.binary(min_size=144, max_size=144).map(lambda b: b"EVR1" + b),
                   st.binary(min_size=48, max_size=48).map(lambda b: b"EVR1" + b))


def test_fuzz_platform_handshake_reply(tmp_path):
    fuzz_mp("hs", _hs_in, lambda b: b, FUZZ, tmp_path, per=40)


# ---- security.linkservice: the console's link("<text>") on a sealed link ------------------
def test_fuzz_platform_link_console_input(tmp_path):
    fuzz_mp("plink", st.binary(max_size=120), lambda b: b, FUZZ, tmp_path)


# ---- CPython parsers -----------------------------------------------------------------
_JTOK = ['{', '}', '[', ']', ':', ',', '"a"', '"k.x"', '1', '-0', '1e400',
         '0x1', 'true', 'false', 'null', ' ', '"\\u00e9"', '"\\', '1.5',
         '9' * 30, '"\x00"', 'NaN', '\n', '{"a": {"b": [1, 2]}}']
_JLEAF = [0, -1, 1 << 40, -(1 << 70), 1.5, True, False, None, "", "a", "\u00e9\x00", "k.x"]


def _json_value(b, i, depth):
    """A JSON value built from the bytes of one draw (nested lists/objects,
    leaves from _JLEAF or integers/strings made of the bytes)."""
    if i >= len(b):
        return None, i
    c = b[i]
    i += 1
    if c < 40 and depth < 4:
        out = []
        for _ in range(c % 5):
            v, i = _json_value(b, i, depth + 1)
            out.append(v)
        return out, i
    if c < 80 and depth < 4:
        out = {}
        for k in range(c % 5):
            v, i = _json_value(b, i, depth + 1)
            out[_JLEAF[(c + k) % 4 + 8] + str(k)] = v
        return out, i
    if c < 160:
        return _JLEAF[c % len(_JLEAF)], i
    if c < 208:
        return int.from_bytes(b[i:i + c % 9], "little", signed=True), i + c % 9
    return b[i:i + c % 9].decode("latin-1"), i + c % 9


# one draw per input: raw bytes, a token soup, or a JSON document
_json_in = st.binary(min_size=1, max_size=300).map(lambda b: (
    bytes(b[1:]) if b[0] < 86 else
    "".join(_JTOK[x % len(_JTOK)] for x in b[1:41]).encode() if b[0] < 172 else
    json.dumps(_json_value(b, 1, 0)[0]).encode() if b[0] < 230 else
    json.dumps({"k%d" % (x % 7): _JLEAF[x % len(_JLEAF)] for x in b[1:]}).encode()))


def _check_json(text):
    try:
        v = config.parse(text)
    except ValueError:
        return
    assert v is None or isinstance(v, (dict, list, int, float, str, bool))


def test_fuzz_config_json_parser(monkeypatch):
    # config.parse re-imports cfgjson per call (no RAM kept on the board):
    # ~1 ms each here; the fuzz runs the same cfgjson.parse imported once
    import cfgjson
    monkeypatch.setattr(config, "_reader", lambda: cfgjson)
    fuzz("config JSON", _json_in, _check_json, FUZZ)


_EL = HEL.FW


def _el_record(body):
    rec = bytearray(bytes([_EL.MAGIC]) + (body * 30)[:29] + b"\0\0")
    c = _EL.crc16(rec, 0, 30)
    rec[30], rec[31] = c & 0xFF, c >> 8
    return bytes(rec)


def _pieces(raw, make_record, magic):
    """One draw -> a stream: each piece is a valid record (body from the
    draw), a run of raw bytes, or a lone magic byte (a false start)."""
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i]
        k = 1 + c % 40
        if c < 100:
            out += make_record(c, raw[i + 1:i + 1 + k] or b"\0")
        elif c < 120:
            out.append(magic)
            k = 0
        else:
            out += raw[i + 1:i + 1 + k]
        i += 1 + k
    return bytes(out)


_el_in = st.binary(min_size=1, max_size=400).map(
    lambda b: bytes(b[1:]) if b[0] < 64 else
    _pieces(b[1:], lambda c, body: _el_record(body[:29]), _EL.MAGIC))


def _check_eventlog(data):
    recs, skipped = HEL.scan(data)
    assert 0 <= skipped and skipped + _EL.REC_SIZE * len(recs) <= len(data)
    for r in recs:
        assert len(r) == len(HEL.FIELDS) and isinstance(r[-1], str)


def test_fuzz_event_log_record_scanner():
    fuzz("event log", _el_in, _check_eventlog, FUZZ)


_TW = HTL.FW


def _tel_record(typ, body):
    n = _TW.SIZES[typ]
    rec = bytearray(n)
    rec[0], rec[1], rec[2], rec[3] = _TW.MAGIC, _TW.VERSION, typ, n
    rec[4:n - 2] = (body * n)[:n - 6]
    import binascii
    c = binascii.crc_hqx(bytes(rec[:n - 2]), 0xFFFF)
    rec[n - 2], rec[n - 1] = c & 0xFF, c >> 8
    return bytes(rec)


_tel_in = st.binary(min_size=1, max_size=400).map(
    lambda b: bytes(b[1:]) if b[0] < 64 else
    _pieces(b[1:], lambda c, body: _tel_record(1 + c % (len(_TW.SIZES) - 1), body[:64]),
            _TW.MAGIC))


def _check_telemetry(data):
    stats = {}
    total = 0
    for rec in HTL.split_stream(data, stats):
        d = HTL.decode_record(rec)            # a record the splitter accepts decodes
        assert d["type"] == rec[2]
        total += len(rec)
    assert total + stats.get("skipped", 0) == len(data)
    try:
        HTL.decode_record(data)
    except ValueError:
        pass


def test_fuzz_telemetry_record_decoder():
    fuzz("telemetry", _tel_in, _check_telemetry, FUZZ)
