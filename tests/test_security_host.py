"""Issue 13 on the host: the board's crypto against the references, the host
tools, and hypothesis fuzzing of the security parsers.

* C-1: the host tool's console answer equals the firmware's; HMAC-SHA256 of
  the board equals CPython's ``hmac`` on random keys/messages.
* C-2/C-3: SM3 and SM2 of the board (firmware/security, run on the real
  ``micropython``) against gmssl on random inputs; tests/mp/secvectors.py
  regenerates identically; the update bundle built and checked on the host
  (``host_tools.update_bundle``) and a forged / tampered one refused, also
  through the CLI ``make deploy`` runs.
* Fuzzing: the console's command parser (security.cmdline), the bundle
  header and manifest parsers (security.update) and the key/config parser
  (config.parse) run under CPython on hypothesis inputs: nothing but their
  documented error escapes.  ``make test`` runs EVC_FUZZ_EXAMPLES (default
  2,000) per parser; ``make fuzz`` runs 10**6 (tests/fuzzkit.py batches them).
"""
import hashlib
import hmac
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from conftest import run_mp, ROOT
import fuzzkit

sys.path.insert(0, str(ROOT))
from host_tools import secsign, seckeys, update_bundle as UB  # noqa: E402

FUZZ = fuzzkit.count(2000)


def _firmware_on_cpython():
    """Import the pure-Python firmware parsers under CPython (micropython.const shim)."""
    if "micropython" not in sys.modules:
        m = types.ModuleType("micropython")
        m.const = lambda x: x
        m.viper = m.native = lambda f: f
        sys.modules["micropython"] = m
    fw = str(ROOT / "firmware")
    if fw not in sys.path:
        sys.path.insert(0, fw)
    import config
    from security import cmdline, update
    return config, cmdline, update


config, cmdline, update = _firmware_on_cpython()


def _mp(tmp_path, code):
    p = tmp_path / "s.py"
    p.write_text(code)
    r = run_mp(p, heapsize="400wK")
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


# -- C-1 -----------------------------------------------------------------------
def test_c1_host_answer_equals_the_board_and_hmac_matches_cpython(tmp_path):
    key = os.urandom(32)
    nonce = os.urandom(16)
    msgs = [os.urandom(n) for n in (0, 1, 55, 64, 65, 200)]
    out = _mp(tmp_path, """
from security import roles as R
from security.hmac256 import hmac_sha256
from binascii import hexlify, unhexlify
k = unhexlify(%r); n = unhexlify(%r)
print(hexlify(R.response(k, R.OPERATOR, 7, n)).decode())
print(hexlify(R.response(k, R.MAINTAINER, 7, n)).decode())
for m in %r:
    print(hexlify(hmac_sha256(k * 3, unhexlify(m))).decode())
""" % (key.hex(), nonce.hex(), [m.hex() for m in msgs])).split()
    assert out[0] == seckeys.answer(key, "operator", 7, nonce).hex()
    assert out[1] == seckeys.answer(key, "maintainer", 7, nonce).hex()
    rk = seckeys.role_key(key, "operator")
    assert out[0] == seckeys.answer(None, "operator", 7, nonce, rk).hex()
    for m, h in zip(msgs, out[2:]):
        assert h == hmac.new(key * 3, m, hashlib.sha256).hexdigest()


# -- C-2 / C-3 known answers -------------------------------------------------------
def test_c3_board_sm3_and_sm2_match_gmssl_on_random_inputs(tmp_path):
    msgs = [os.urandom(n) for n in (0, 3, 55, 56, 63, 64, 65, 127, 128, 1000)]
    keys = [secsign.new_keypair() for _ in range(3)]
    sigs = [(pub, m, secsign.sign(priv, pub, m)) for priv, pub in keys for m in msgs[:3]]
    out = _mp(tmp_path, """
from security.sm3 import sm3
from security import sm2
from binascii import hexlify, unhexlify
for m in %r:
    print(hexlify(sm3(unhexlify(m))).decode())
for p, m, s in %r:
    p, m, s = unhexlify(p), unhexlify(m), unhexlify(s)
    print(sm2.verify(p, m, s), sm2.verify(p, m + b"!", s))
""" % ([m.hex() for m in msgs], [(p.hex(), m.hex(), s.hex()) for p, m, s in sigs])).splitlines()
    for m, h in zip(msgs, out):
        assert h == UB.sm3(m).hex()
    assert out[len(msgs):] == ["True False"] * len(sigs)


def test_c3_kat_vectors_file_is_what_the_references_produce():
    sys.path.insert(0, str(ROOT / "tests"))
    import gen_secvectors
    assert (ROOT / "tests" / "mp" / "secvectors.py").read_text() == gen_secvectors.vectors()


def test_c3_make_sign_and_deploy_verification_refuse_forged_and_tampered(tmp_path):
    keys = tmp_path / "keys.json"
    seckeys.new_keys(keys)
    sign = tmp_path / "keys.sign.json"
    f1 = tmp_path / "a.mpy"
    f1.write_bytes(b"M\x06" + os.urandom(300))
    out = tmp_path / "u.evu"
    py = sys.executable
    r = subprocess.run([py, "-m", "host_tools.update_bundle", "sign", "--keys", str(sign),
                        "--version", "4", "--out", str(out), "main.mpy=%s" % f1],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ok = subprocess.run([py, "-m", "host_tools.update_bundle", "verify", str(out), "--pub", str(keys)],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
    b = bytearray(out.read_bytes())
    b[-1] ^= 0x80
    bad = tmp_path / "t.evu"
    bad.write_bytes(bytes(b))
    r = subprocess.run([py, "-m", "host_tools.update_bundle", "verify", str(bad), "--pub", str(keys)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "hash" in r.stdout
    other = tmp_path / "other.json"
    seckeys.new_keys(other)
    r = subprocess.run([py, "-m", "host_tools.update_bundle", "verify", str(out), "--pub", str(other)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and "signature" in r.stdout


# -- fuzzing (every security parser) -----------------------------------------------
@pytest.fixture
def cfgjson_imported_once(monkeypatch):
    """``config.parse`` re-imports cfgjson on every call (the board keeps no
    copy of it in RAM); 10**6 re-imports cost ~1 ms each here, so the fuzz
    runs the same cfgjson.parse, imported once."""
    import cfgjson
    monkeypatch.setattr(config, "_reader", lambda: cfgjson)


# one draw per input: raw bytes or a token soup
_TOKENS = [b"status", b"print", b"(", b")", b",", b"=", b"'", b'"', b"\\",
           b"0x", b"-", b"12", b"True", b"None", b" ", b";", b"\n", b"app",
           b".", b"k12", b"cfg_set", b"\x00", b"\xff", b"9" * 13]
_NAMES = [b"status", b"cfg_set", b"stop", b"faults", b"print", b"help", b"why", b"x1", b"_"]
_ARGS = [b"1", b"-12", b"0x1F", b"'h8.ma'", b'"a\\"b"', b"True", b"None", b"False", b"9" * 13,
         b"k=1", b"n=-0x10", b"app.out", b"'\x00'", b"''", b"1.5", b"x=None", b"status()"]


def _command(b):
    """A call shape: [print(] name(arg, ..., k=v) [)] [;] with literal and
    non-literal arguments: reaches the accepted path and every refusal."""
    args = b", ".join(_ARGS[x % len(_ARGS)] for x in b[2:2 + b[1] % 7])
    c = _NAMES[b[0] % len(_NAMES)] + b"(" + args + b")"
    if b[1] & 0x80:
        c = b"print(" + c + b")"
    return c + (b" ;" if b[1] & 0x40 else b"") + (b" " * (b[0] >> 6))


# one draw per input: raw bytes, a token soup or a command-shaped line
_inputs = st.binary(min_size=3, max_size=600).map(
    lambda b: bytes(b[1:]) if b[0] < 86 else
    b"".join(_TOKENS[x % len(_TOKENS)] for x in b[1:41]) if b[0] < 172 else _command(b[1:]))


def _check_cmdline(src):
    try:
        name, args, kw, printed = cmdline.parse(src)
    except ValueError:
        return
    assert isinstance(name, str) and name.isidentifier()
    assert all(a is None or isinstance(a, (int, str, bool)) for a in args + tuple(kw.values()))


def test_fuzz_console_command_parser():
    fuzzkit.fuzz("console command line", _inputs, _check_cmdline, FUZZ)


def _check_header(head):
    try:
        n = update.parse_header(head)
    except update.UpdateError:
        return
    assert head[:4] == b"EVU1" and 2 <= n <= 4096


def test_fuzz_update_header_parser():
    # a quarter of the inputs carry the magic: the length check is reached
    fuzzkit.fuzz("update header", st.binary(max_size=40).map(
        lambda b: b"EVU1" + b if b[:1] < b"\x40" else b), _check_header, FUZZ)


_MAN_KEYS = ["version", "count", "file0", "size0", "sm30", "file1", "size1", "sm31", "x"]
_MAN_VALS = [-5, 0, 1, 2, 3, 1 << 23, True, None, "", "00" * 32, "gbt/../x", "a/b/c",
             "/abs", "gbt/dec.mpy", "zz" * 32]


def _manifest(b):
    """One binary draw -> a manifest-shaped JSON object (keys of a real
    manifest, values of every JSON type, names that must be refused); half
    start from a valid manifest of 1..3 files that the pairs then alter."""
    d = {}
    if b and b[0] & 1:
        k = 1 + b[0] % 3
        d = {"version": 1 + b[0] % 5, "count": k}
        for i in range(k):
            d["file%d" % i], d["size%d" % i], d["sm3%d" % i] = "gbt/m%d.mpy" % i, 100 * i, "ab" * 32
        b = b[1:1 + 2 * (b[0] >> 6)]
    for i in range(0, len(b) - 1, 2):
        k, v = b[i], b[i + 1]
        d[_MAN_KEYS[k % len(_MAN_KEYS)]] = _MAN_VALS[v % len(_MAN_VALS)] if v < 200 else v - 210
    return json.dumps(d).encode()


def _check_manifest(text):
    try:
        ver, files = update.parse_manifest(text)
    except update.UpdateError:
        pass
    else:
        assert ver >= 1 and 1 <= len(files)
        for n, size, h in files:
            assert ".." not in n and not n.startswith("/") and n.count("/") <= 1 and len(h) == 32
    try:
        config.parse(text)                     # the key file's parser
    except ValueError:
        pass


def test_fuzz_update_manifest_and_key_file_parser(cfgjson_imported_once):
    fuzzkit.fuzz("update manifest + key file",
                 st.binary(min_size=1, max_size=300).map(
                     lambda b: bytes(b[1:]) if b[0] < 64 else _manifest(b[1:])),
                 _check_manifest, FUZZ)


# -- C-2 platform link: ciphers and sealed records against the references ------
def test_c2_sm4_aes_hmac_sm3_of_the_board_match_gmssl_and_pycryptodomex(tmp_path):
    from host_tools.platform import seclink as S
    cases = [(os.urandom(16), os.urandom(16)) for _ in range(12)]
    msgs = [(os.urandom(n), os.urandom(m)) for n, m in ((16, 0), (32, 1), (64, 63), (80, 200))]
    out = _mp(tmp_path, """
from security.sm4 import SM4
from security.aes128 import AES128
from security.linkrec import hmac_sm3
from binascii import hexlify, unhexlify
for k, p in %r:
    k = unhexlify(k); p = unhexlify(p)
    print(hexlify(SM4(k).encrypt(p)).decode(), hexlify(AES128(k, pure=True).encrypt(p)).decode(),
          hexlify(AES128(k).encrypt(p)).decode())
for k, m in %r:
    print(hexlify(hmac_sm3(unhexlify(k), unhexlify(m))).decode())
""" % ([(k.hex(), p.hex()) for k, p in cases], [(k.hex(), m.hex()) for k, m in msgs])).split("\n")
    for (k, p), line in zip(cases, out):
        sm4, aes_pure, aes_port = line.split()
        assert sm4 == S.sm4_block(k, p).hex()
        assert aes_pure == aes_port == S.aes_block(k, p).hex()
    for (k, m), line in zip(msgs, out[len(cases):]):
        assert line == S.hmac_sm3(k, m).hex()


def test_c2_platform_refuses_a_sealed_batch_that_does_not_expand():
    """A frame that opens (the charger's keys) but whose delta entries do
    not decode is refused as ``format`` and stores nothing; a good one in
    the same link still opens after it."""
    from host_tools.platform import seclink as S
    ep = S.PlatformEndpoint({})
    up, down = (b"\x01" * 16, b"\x02" * 32), (b"\x03" * 16, b"\x04" * 32)
    ep.records = S.RecordLayer(S.SUITE_AES, down, up)
    charger = S.RecordLayer(S.SUITE_AES, up, down)
    bad = charger.seal(S.T_TELEMETRY_DELTA, bytes([80, 0xFF, 0xFF]) + bytes(13))
    assert ep.uplink(bad) == ("refused", "format", None)
    assert ep.refused["format"] == 1
    rec = bytes([0xA5, 1, 3, 8, 1, 2, 3, 4])
    good = charger.seal(S.T_TELEMETRY_DELTA, bytes([8, 1, 0xFF]) + rec + bytes(5))
    assert ep.uplink(good) == ("telemetry", rec, None)


def test_c2_delta_batches_of_the_board_expand_on_the_platform(tmp_path):
    """The board's batch queue (security/linkqueue.py, sec.tel_delta 1)
    fed Table-1-like records (demand 80 B every record, status 92 B every
    fifth, an event 60 B now and then; counters, times and values that
    change a little, as a charging session's do): every cut batch expands
    on the platform (host_tools/platform/seclink.py) to exactly the records
    put into it, in order, padded to whole 16-byte blocks and within 208
    bytes; the delta batches are under half the records' bytes.  A record
    too long for a reference slot is dropped and counted, not sent broken."""
    import random
    from host_tools.platform import seclink as S
    rnd = random.Random(7)
    recs = []
    base = bytes(rnd.randrange(256) for _ in range(92))
    for k in range(400):
        for n in ((80, 92) if k % 5 == 0 else (80,)) + ((60,) if rnd.random() < 0.05 else ()):
            r = bytearray(base[:n])
            r[3] = n
            r[4:6] = k.to_bytes(2, "little")
            r[8:12] = (50 * k).to_bytes(4, "little")
            for j in rnd.sample(range(48, n - 2), 4):
                r[j] = rnd.randrange(256)
            r[n - 2:n] = rnd.randbytes(2)
            recs.append(bytes(r))
    out = _mp(tmp_path, """
from security import linkqueue as Q
from binascii import hexlify, unhexlify
class Sealer:
    # security/linkseal.py's begin: the 12-byte record header, then the payload
    def begin(self, rtype, src, so, n, out, off):
        out[off + 12:off + 12 + n] = src[so:so + n]
        self.n = n
q = Q.BatchQueue(1)
s = Sealer()
fb = bytearray(2 + 12 + 220 + 16)
def flush():
    while q.waiting():
        c = q.load(s, 5, fb, 2)
        print("B", c, hexlify(fb[14:14 + s.n]).decode())
for h in %r:
    r = q.put(memoryview(unhexlify(h)))
    print("P", r)
    flush()
q.cut()
flush()
print("P", q.put(memoryview(bytearray(97))))
""" % [r.hex() for r in recs]).split("\n")
    puts = [int(x[2:]) for x in out if x.startswith("P ")]
    assert puts[-1] == 3, "a 97-byte record: PUT_DROP"
    assert set(puts[:-1]) <= {0, 1, 2} and puts[0] == 1
    batches = [x.split() for x in out if x.startswith("B ")]
    got, sent = [], 0
    for _, count, h in batches:
        b = bytes.fromhex(h)
        assert len(b) % 16 == 0 and len(b) <= 208
        sent += len(b)
        rs = S.split_records(S.expand_delta(b))
        assert len(rs) == int(count)
        got += rs
    assert got == recs
    assert sent < sum(map(len, recs)) / 2, (sent, sum(map(len, recs)))



@pytest.mark.parametrize("suite", [1, 2], ids=["sm", "aes"])
def test_c2_records_interoperate_with_the_platform_and_foreign_ones_are_refused(tmp_path, suite):
    """The board seals telemetry the platform (host references) opens; the
    platform seals a stop the board opens; a stop sealed with another key, a
    replayed and a tampered one are refused by the board; telemetry from a
    charger without the key is refused by the platform."""
    from host_tools.platform import seclink as S
    up = (os.urandom(16), os.urandom(32))       # charger -> platform keys
    down = (os.urandom(16), os.urandom(32))     # platform -> charger keys
    platform = S.RecordLayer(suite, down, up)
    stop = platform.seal(2, b'{"cmd":"stop"}')
    forged = S.RecordLayer(suite, (down[0], os.urandom(32)), up).seal(2, b'{"cmd":"stop"}')
    tampered = bytearray(platform.seal(2, b'{"cmd":"stop"}'))
    tampered[14] ^= 0x04
    out = _mp(tmp_path, """
from security import linkrec as L
from binascii import hexlify, unhexlify
u = (unhexlify(%r), unhexlify(%r)); d = (unhexlify(%r), unhexlify(%r))
ch = L.RecordLayer(%d, u, d)
print(hexlify(ch.seal(L.T_TELEMETRY, b'{"soc": 42, "v": 612.5}' * 4)).decode())
for f in (%r, %r, %r, %r):
    r = ch.open(unhexlify(f))
    print(r[1].decode() if r else "refused:" + ch.last_reject)
""" % (up[0].hex(), up[1].hex(), down[0].hex(), down[1].hex(), suite,
       stop.hex(), forged.hex(), stop.hex(), bytes(tampered).hex())).split("\n")
    assert platform.open(bytes.fromhex(out[0])) == (1, b'{"soc": 42, "v": 612.5}' * 4)
    assert out[1:5] == ['{"cmd":"stop"}', "refused:tag", "refused:replay", "refused:tag"]
    stranger = S.RecordLayer(suite, (up[0], os.urandom(32)), down)   # no MAC key
    assert platform.open(stranger.seal(1, b'{"soc": 99}')) is None
    assert platform.rejected["tag"] == 1


_HS_BOARD = r"""
import sys
from binascii import hexlify, unhexlify
from security import handshake as H, linkrec as L
from security.rng import random_bytes
keys = {"sm2_priv": int.from_bytes(unhexlify(%r), "big"), "sm2_pub": unhexlify(%r),
        "platform_pub": unhexlify(%r), "link_psk": unhexlify(%r)}
hs = H.ChargerHandshake(%r, 7, keys, random_bytes, 10000, 600000, 0)
now = 0
def run():
    global now
    while True:
        now += 1
        if not hs.step(now):
            print("FAILED " + hs.reason)
            sys.exit(0)
        m = hs.take(now)
        if m is not None:
            return m
print(hexlify(run()).decode())
if not hs.feed(unhexlify(sys.stdin.readline().strip()), now):
    print("FAILED " + hs.reason)
    sys.exit(0)
print(hexlify(run()).decode())
print(hexlify(hs.records.seal(L.T_TELEMETRY, b'{"soc": 42}')).decode())
r = hs.records.open(unhexlify(sys.stdin.readline().strip()))
print(r[1].decode() if r else "refused")
"""


def _hs_keys():
    from host_tools import secsign
    cpriv, cpub = secsign.new_keypair()
    ppriv, ppub = secsign.new_keypair()
    return {"charger_priv": cpriv, "charger_pub": cpub, "platform_priv": ppriv,
            "platform_pub": ppub, "link_psk": os.urandom(32)}


def _hs_run(tmp_path, suite, board_keys, platform_keys):
    """The board's handshake (real micropython) against the platform's."""
    from conftest import micropython_bin, mp_path
    from host_tools.platform import seclink as S
    p = tmp_path / "hs.py"
    p.write_text(_HS_BOARD % (board_keys["charger_priv"].hex(), board_keys["charger_pub"].hex(),
                              board_keys["platform_pub"].hex(), board_keys["link_psk"].hex(),
                              suite))
    proc = subprocess.Popen([micropython_bin(), str(p)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, MICROPYPATH=mp_path()))
    plat = S.PlatformHandshake(platform_keys)
    try:
        reply = plat.answer(bytes.fromhex(proc.stdout.readline().strip()))
        assert reply is not None
        proc.stdin.write(reply.hex() + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline().strip()
        if line.startswith("FAILED"):
            return line, plat
        assert plat.finish(bytes.fromhex(line)), "the platform refused the charger's FINISH"
        assert plat.records.open(bytes.fromhex(proc.stdout.readline().strip())) == \
            (1, b'{"soc": 42}')
        proc.stdin.write(plat.records.seal(2, b'{"cmd":"stop"}').hex() + "\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip(), plat
    finally:
        proc.stdin.close()
        proc.wait(timeout=300)


@pytest.mark.parametrize("suite", ["sm", "aes"])
def test_c2_handshake_board_and_platform_agree_and_seal_both_ways(tmp_path, suite):
    k = _hs_keys()
    got, plat = _hs_run(tmp_path, suite, k, k)
    assert got == '{"cmd":"stop"}'
    assert plat.charger_id == 7


@pytest.mark.parametrize("suite", ["sm", "aes"])
def test_c2_handshake_refuses_an_impostor_platform(tmp_path, suite):
    k = _hs_keys()
    impostor = dict(_hs_keys(), charger_pub=k["charger_pub"])
    got, plat = _hs_run(tmp_path, suite, k, impostor)
    assert got == "FAILED platform signature refused" if suite == "sm" else \
        got == "FAILED platform not authenticated"
    assert plat.records is None


def test_c2_handshake_platform_refuses_a_charger_without_the_key(tmp_path):
    """A charger whose SM2 key the platform does not know: FINISH refused, no records."""
    k = _hs_keys()
    stranger = dict(_hs_keys(), platform_pub=k["platform_pub"])
    from host_tools.platform import seclink as S
    with pytest.raises(AssertionError, match="refused the charger's FINISH"):
        _hs_run(tmp_path, "sm", stranger, k)
    k2 = dict(k, link_psk=os.urandom(32))
    got, _ = _hs_run(tmp_path, "aes", k2, k)          # the charger refuses first here
    assert got == "FAILED platform not authenticated"
