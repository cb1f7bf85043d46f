"""Issue 13, part 5: hypothesis fuzzing of every GB/T-facing parser.

On CPython (pure-Python firmware modules, ``micropython.const`` shim as in
tests/test_security_host.py): the configuration JSON parser
(``config.parse``), the host's event-log scanner and telemetry record
decoder.  On the real ``micropython`` (viper modules: ``ptr8`` does not exist
on CPython): the BMS message decoders (``gbt.dec``), the J1939 TP receiver
(``gbt.transport``, arbitrary TP.CM/TP.DT sequences) and the SIL link's
packet reader (``simlink``), in batches through tests/fuzz_mp_driver.py
(hypothesis generates the inputs here, one micropython process checks
BATCH of them).  The console command line and the update manifest parsers
are fuzzed in tests/test_security_host.py.

``make test`` runs EVC_FUZZ_EXAMPLES (default 300 here: the micropython batches check ~80 inputs/s) per parser;
``make fuzz`` 10**6.  A batch failure names the input (hex) that broke the
parser.
"""
import json
import os
import struct
import subprocess
import sys
import types

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from conftest import ROOT, micropython_bin, mp_path

FUZZ = int(os.environ.get("EVC_FUZZ_EXAMPLES", "300"))
BATCH = 20000
DRIVER = ROOT / "tests" / "fuzz_mp_driver.py"

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

_FZ = settings(max_examples=FUZZ, deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))


def _run_batch(kind, recs, tmp_path):
    p = tmp_path / ("%s.bin" % kind)
    with open(p, "wb") as f:
        for r in recs:
            f.write(struct.pack("<I", len(r)) + r)
    r = subprocess.run([micropython_bin(), "-X", "heapsize=4M", str(DRIVER), kind, str(p)],
                       capture_output=True, text=True, timeout=3600,
                       env=dict(os.environ, MICROPYPATH=mp_path(ROOT / "boards" / "simlink")),
                       cwd=str(ROOT), stdin=subprocess.DEVNULL)
    out = r.stdout.strip().splitlines()
    last = out[-1] if out else ""
    if not last.startswith("OK"):
        idx = last.split()[1] if last.startswith("FAIL") else "?"
        bad = recs[int(idx)].hex() if idx.isdigit() and int(idx) < len(recs) else "?"
        pytest.fail("%s: %s\ninput: %s\n%s%s" % (kind, last, bad, r.stdout[-3000:], r.stderr[-2000:]))
    assert int(last.split()[1]) == len(recs)
    return len(recs)


def _mp_fuzz(kind, strategy, encode, tmp_path):
    """Generate FUZZ inputs with hypothesis, check them BATCH at a time on
    micropython; returns the count checked."""
    recs, done = [], [0]

    @_FZ
    @given(strategy)
    def collect(x):
        recs.append(encode(x))
        if len(recs) >= BATCH:
            done[0] += _run_batch(kind, recs, tmp_path)
            recs.clear()
    collect()
    if recs:
        done[0] += _run_batch(kind, recs, tmp_path)
    assert done[0] >= min(FUZZ, 100)
    print("%s: %d inputs" % (kind, done[0]))


# ---- gbt.dec: the BMS -> charger message decoders ------------------------------
_BMS_PGNS = [0x2700, 0x0200, 0x0600, 0x0900, 0x1000, 0x1100, 0x1300, 0x1500, 0x1600,
             0x1700, 0x1800, 0x1900, 0x1C00, 0x1E00]
_dec_in = st.tuples(
    st.one_of(st.sampled_from(_BMS_PGNS), st.integers(-1, 0x3FFFF)),
    st.one_of(st.integers(-2, 2), st.integers(-600, 600)),
    st.one_of(st.binary(max_size=16), st.binary(max_size=520),
              st.lists(st.sampled_from([0, 0xFF, 0xFE, 0x7F, 0x80, 1, 0xC0, 0x3F]),
                       max_size=60).map(bytes)))


def _enc_dec(x):
    pgn, dn, data = x
    n = max(0, min(0xFFFF, len(data) + dn))
    return struct.pack("<IH", pgn & 0xFFFFFFFF, n) + data


def test_fuzz_gbt_message_decoders(tmp_path):
    _mp_fuzz("dec", _dec_in, _enc_dec, tmp_path)


# ---- gbt.transport: arbitrary TP.CM / TP.DT sequences ---------------------------
_TP_PGNS = [0x0200, 0x0600, 0x1100, 0x1500, 0x1600, 0x1700, 0x1C00, 0x1234, 0]
_cm = st.tuples(st.sampled_from([16, 17, 19, 32, 255, 0, 18, 21]),
                st.one_of(st.integers(0, 60), st.integers(0, 0xFFFF)),
                st.one_of(st.integers(0, 12), st.integers(0, 255)),
                st.integers(0, 255), st.sampled_from(_TP_PGNS)).map(
    lambda t: bytes([t[0], t[1] & 0xFF, t[1] >> 8, t[2], t[3], t[4] & 0xFF, (t[4] >> 8) & 0xFF, 0]))
_dt = st.tuples(st.one_of(st.integers(0, 12), st.integers(0, 255)),
                st.binary(min_size=7, max_size=7)).map(lambda t: bytes([t[0]]) + t[1])
_ids = st.one_of(st.sampled_from([0x1CEC56F4, 0x1CEB56F4, 0x1CECFFF4, 0x1CEBFFF4,
                                  0x1CEC56F3, 0x1CEB5600, 0x18EC56F4, 0x1C0256F4]),
                 st.integers(0, 0x1FFFFFFF))
_frame = st.tuples(st.one_of(st.integers(0, 20), st.integers(0, 3000)), _ids,
                   st.one_of(st.just(8), st.integers(0, 8)),
                   st.one_of(_cm, _dt, st.binary(min_size=8, max_size=8)))


def _enc_tp(frames):
    return b"".join(struct.pack("<HIB", dt, cid, n) + d for dt, cid, n, d in frames)


def test_fuzz_j1939_transport_receiver(tmp_path):
    # CM before DT most of the time: frames in realistic order reach the
    # deep states (windows, retransmission, completion)
    _mp_fuzz("tp", st.lists(_frame, min_size=1, max_size=40), _enc_tp, tmp_path)


# ---- simlink: the SIL link's packet reader (host -> firmware) ----------------------
_pk = st.one_of(
    st.tuples(st.integers(1, 7), st.binary(max_size=20)).map(
        lambda t: bytes([t[0], len(t[1])]) + t[1]),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40)).map(
        lambda t: bytes([t[0], t[1]]) + t[2]))


def test_fuzz_sil_link_packet_reader(tmp_path):
    _mp_fuzz("link", st.lists(_pk, max_size=30).map(b"".join), lambda b: b, tmp_path)


# ---- CPython parsers -----------------------------------------------------------------
_jtok = st.sampled_from(['{', '}', '[', ']', ':', ',', '"a"', '"k.x"', '1', '-0', '1e400',
                         '0x1', 'true', 'false', 'null', ' ', '"\\u00e9"', '"\\', '1.5',
                         '9' * 30, '"\x00"', 'NaN', '\n', '{"a": {"b": [1, 2]}}'])
_json_in = st.one_of(st.binary(max_size=300), st.lists(_jtok, max_size=40).map(
    lambda t: "".join(t).encode()),
    st.recursive(st.one_of(st.integers(), st.booleans(), st.none(), st.text(max_size=8)),
                 lambda c: st.one_of(st.lists(c, max_size=4),
                                     st.dictionaries(st.text(max_size=6), c, max_size=4)),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()))


@_FZ
@given(_json_in)
def test_fuzz_config_json_parser(text):
    try:
        v = config.parse(text)
    except ValueError:
        return
    assert v is None or isinstance(v, (dict, list, int, float, str, bool))


_EL = HEL.FW


def _el_record(body):
    rec = bytearray(bytes([_EL.MAGIC]) + (body * 30)[:29] + b"\0\0")
    c = _EL.crc16(rec, 0, 30)
    rec[30], rec[31] = c & 0xFF, c >> 8
    return bytes(rec)


_el_in = st.one_of(st.binary(max_size=400),
                   st.lists(st.one_of(st.binary(max_size=40),
                                      st.binary(min_size=1, max_size=29).map(_el_record),
                                      st.just(bytes([_EL.MAGIC]))),
                            max_size=20).map(b"".join))


@_FZ
@given(_el_in)
def test_fuzz_event_log_record_scanner(data):
    recs, skipped = HEL.scan(data)
    assert 0 <= skipped and skipped + _EL.REC_SIZE * len(recs) <= len(data)
    for r in recs:
        assert len(r) == len(HEL.FIELDS) and isinstance(r[-1], str)


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


_tel_in = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(st.tuples(st.integers(1, len(_TW.SIZES) - 1),
                                 st.binary(min_size=1, max_size=64)).map(lambda t: _tel_record(*t)),
                       st.binary(max_size=30)), max_size=6).map(b"".join))


@_FZ
@given(_tel_in)
def test_fuzz_telemetry_record_decoder(data):
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
