"""Issue 13, C-2 on the board's own code: SM4 and AES-128 known answers
(GB/T 32907 example and its 1,000,000-iteration example, FIPS 197 C.1),
HMAC-SM3, and the sealed record layer refusing forged, replayed, reordered,
tampered and truncated frames (security/linkrec.py)."""
import mptest
from mptest import eq, true
from binascii import unhexlify
from security.sm4 import SM4
from security.aes128 import AES128
from security import linkrec as L
from security import linkseal as S

_SM4_KEY = unhexlify("0123456789abcdeffedcba9876543210")


def test_c2_sm4_standard_example():
    eq(SM4(_SM4_KEY).encrypt(_SM4_KEY), unhexlify("681edf34d206965e86b3e94f536e4246"),
       "GB/T 32907 example 1")


def test_c2_sm4_million_iterations():
    c = SM4(_SM4_KEY)
    b = bytearray(_SM4_KEY)
    for _ in range(1000000):
        c.encrypt_into(b, b)
    eq(bytes(b), unhexlify("595298c7c6fd271f0402f804c33d3f66"), "GB/T 32907 example 2")


def test_c2_aes128_fips197_c1_pure_and_cryptolib():
    k = unhexlify("000102030405060708090a0b0c0d0e0f")
    p = unhexlify("00112233445566778899aabbccddeeff")
    want = unhexlify("69c4e0d86a7b0430d8cdb78070b4c55a")
    eq(AES128(k, pure=True).encrypt(p), want, "viper AES")
    eq(AES128(k).encrypt(p), want, "port AES (cryptolib where present)")


def _table_words(t):
    # a word table as the viper code reads it: the bytes constant itself
    # (little-endian words) or its copy in an array (CPUs that fault on an
    # unaligned word load)
    import struct
    return list(t) if not isinstance(t, bytes) else list(struct.unpack("<%dI" % (len(t) // 4), t))


def test_c2_constant_tables_match_their_definitions():
    """The AES S-box and round table and the SHA-256 round constants are
    stored constants (flash, not heap): they are what their definitions
    give (FIPS 197 5.1.1 and 5.1.3: the module's own derivation, used where
    the CPU cannot read the constant as words; FIPS 180-4 4.2.2)."""
    import security.aes128 as A
    import security.sha256 as H
    box = A._make_sbox()
    eq(bytes(A._sbox), box, "AES S-box")
    eq(box[0x00] == 0x63 and box[0x01] == 0x7C and box[0x53] == 0xED and box[0xFF] == 0x16, True,
       "FIPS 197 figure 7 entries")
    eq(_table_words(A._te), list(A._make_te(box)), "AES round table (2s, s, s, 3s)")
    primes = [n for n in range(2, 312) if all(n % d for d in range(2, n))][:64]
    k = []
    for n in primes:                # floor(cbrt(n) * 2**32) mod 2**32
        lo, hi = 0, 1 << 40
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if mid ** 3 <= n << 96:
                lo = mid
            else:
                hi = mid - 1
        k.append(lo & 0xFFFFFFFF)
    eq(_table_words(H._K), k, "SHA-256 round constants")


def test_c2_key_length_checked():
    for cls in (SM4, AES128):
        try:
            cls(b"short")
        except ValueError:
            continue
        true(False, "%s accepted a 5-byte key" % cls.__name__)


def _expand(p):
    """A delta batch back to its records (this test's own reading of the
    entry layout, apart from the platform's host_tools/platform/seclink.py)."""
    out = b""
    last = {}
    prev = b""
    i = 0
    while i < len(p):
        n = p[i]
        if n == 0:
            eq(p[i:], bytes(len(p) - i), "zeros pad the batch")
            true(len(p) % 16 == 0, "to whole blocks")
            break
        nb = (n + 7) // 8
        ng = (nb + 7) // 8
        gm = 0
        for j in range(ng):
            gm |= p[i + 1 + j] << (8 * j)
        i += 1 + ng
        groups = [g for g in range(nb) if gm & (1 << g)]
        masks = p[i:i + len(groups)]
        i += len(groups)
        rec = bytearray(last.get(n, (prev + bytes(n))[:n]))
        for g, m in zip(groups, masks):
            for b in range(8):
                if m & (1 << b):
                    rec[8 * g + b] = p[i]
                    i += 1
        last[n] = prev = bytes(rec)
        out += rec
    return out


def _pair(suite):
    a = (b"\x11" * 16, b"\x22" * 32)
    b = (b"\x33" * 16, b"\x44" * 32)
    return L.RecordLayer(suite, a, b), L.RecordLayer(suite, b, a)


def test_c2_records_round_trip_both_suites():
    for suite in (L.SUITE_SM, L.SUITE_AES):
        charger, platform = _pair(suite)
        for n in (0, 1, 15, 16, 17, 300):
            msg = bytes(range(256)) * 2
            f = charger.seal(L.T_TELEMETRY, msg[:n])
            true(n < 4 or msg[:n] not in f, "payload is encrypted")
            eq(platform.open(f), (L.T_TELEMETRY, msg[:n]), "suite %d, %d bytes" % (suite, n))
        eq(charger.open(platform.seal(L.T_STOP, b"stop")), (L.T_STOP, b"stop"), "other way")


# Frames sealed by the one-shot seal of main (cda51e2, before the stepped
# sealer): SHA-256 of the whole 248-byte frame and its tag, per suite.
_KAT_TX = (bytes(range(16)), bytes(range(100, 132)))
_KAT_P = bytes((i * 7 + 3) & 0xFF for i in range(220))
_KAT = {L.SUITE_SM: ("aae33bce2c27e447cbe2b595c37d4ad783a925d7ed1baa9ecfd4f39541bd22af",
                     "5c962726d5ea06afb259f24f8676fa34"),
        L.SUITE_AES: ("876d1e879e9b8d8c117a3288fd936f5a149734f9513672c284663529c447508c",
                      "3986d2b3d59202dad8bee966233703f1")}


def _kat_layer(suite):
    lay = L.RecordLayer(suite, _KAT_TX, (bytes(16), bytes(32)))
    lay.seal(L.T_TELEMETRY, _KAT_P)          # the known frame is record 2
    return lay


def test_c2_stepped_seal_gives_the_one_shot_frames():
    import hashlib
    from binascii import hexlify
    for suite in (L.SUITE_SM, L.SUITE_AES):
        f = _kat_layer(suite).seal(L.T_TELEMETRY, _KAT_P)
        eq(hexlify(f[-16:]).decode(), _KAT[suite][1], "suite %d: tag of the known frame" % suite)
        eq(hexlify(hashlib.sha256(f).digest()).decode(), _KAT[suite][0], "suite %d: frame" % suite)
        for budget in (1, 20, 50, 69, 500):
            lay = _kat_layer(suite)
            out = bytearray(3 + len(f))
            s = lay.sealer
            s.budget = budget
            s.begin(L.T_TELEMETRY, b"xy" + _KAT_P, 2, len(_KAT_P), out, 1)
            steps = 1
            while not s.step():
                steps += 1
            eq(bytes(out[1:1 + len(f)]), f, "suite %d, step budget %d" % (suite, budget))
            true(not s.busy, "idle when done")
            if budget >= 69:
                true(steps < 20, "suite %d: %d steps of %d" % (suite, steps, budget))


def test_c2_seal_steps_bounded_and_allocation_free():
    import micropython
    for suite in (L.SUITE_SM, L.SUITE_AES):
        charger, platform = _pair(suite)
        s = charger.sealer
        s.budget = 50
        unit = S._UNIT[suite]
        out = bytearray(2 + 12 + 220 + 16)
        for n in (220, 160, 43, 44, 52, 0):     # tails of 55, 56 (two pad blocks), 0 bytes
            src = bytes(range(n))
            micropython.heap_lock()
            try:
                s.begin(L.T_TELEMETRY, src, 0, n, out, 2)
                steps = 1
                while not s.step():
                    steps += 1
            finally:
                micropython.heap_unlock()
            eq(platform.open(bytes(out[2:2 + 12 + n + 16])), (L.T_TELEMETRY, src),
               "suite %d, %d bytes: the stepped frame opens" % (suite, n))
        one = S.STEP_COST + max(unit)
        true(s.largest <= max(50, one), "suite %d: largest step %d within the budget (or one unit)"
             % (suite, s.largest))
        true(s.largest >= 40, "the budget is used, not one unit a step")


def test_c2_hmac_of_the_record_layer_matches_hashlib():
    import hashlib
    from security.hmac256 import hmac_sha256
    for n in (0, 1, 55, 56, 63, 64, 65, 119, 120, 300):
        msg = bytes((i * 13) & 0xFF for i in range(n))
        for key in (b"k" * 32, b"x" * 70):
            out = bytearray(32)
            L.Mac(L.SUITE_AES, key).mac_into(msg, 0, n, out, 0, 8)
            eq(bytes(out), hmac_sha256(key, msg), "HMAC-SHA256, %d bytes" % n)
    from security.sm3 import sm3
    # HMAC-SM3 from its definition on the (hashlib-free) SM3 of the board
    key = b"\x0b" * 20
    ip = bytes(b ^ 0x36 for b in key + bytes(44))
    op = bytes(b ^ 0x5C for b in key + bytes(44))
    for n in (0, 55, 56, 64, 200):
        msg = bytes(range(n))
        eq(L.hmac_sm3(key, msg), sm3(op + sm3(ip + msg)), "HMAC-SM3, %d bytes" % n)


def test_c2_replayed_and_reordered_records_refused():
    charger, platform = _pair(L.SUITE_SM)
    f1 = platform.seal(L.T_STOP, b"stop 1")
    f2 = platform.seal(L.T_STOP, b"stop 2")
    eq(charger.open(f2), (L.T_STOP, b"stop 2"), "newer first")
    eq(charger.open(f1), None, "older after newer (reordered)")
    eq(charger.open(f2), None, "the same record again (replayed)")
    eq(charger.rejected[L.REJECT_REPLAY], 2, "counted as replay")


def test_c2_tampered_forged_truncated_records_refused():
    for suite in (L.SUITE_SM, L.SUITE_AES):
        charger, platform = _pair(suite)
        f = platform.seal(L.T_STOP, b"stop now")
        for i in (0, 1, 5, 11, 12, 19, len(f) - 1):
            t = bytearray(f)
            t[i] ^= 0x01
            eq(charger.open(bytes(t)), None, "bit flipped at %d" % i)
        eq(charger.open(f[:-1]), None, "one byte short")
        eq(charger.open(f[:8]), None, "header only")
        eq(charger.open(f + b"\0"), None, "one byte long")
        other = L.RecordLayer(suite, (b"\x33" * 16, b"\x55" * 32), (b"\0" * 16, b"\0" * 32))
        eq(charger.open(other.seal(L.T_STOP, b"stop now")), None, "sealed with another MAC key")
        # Byte 11 is the length field: that flip is refused as a length mismatch.
        eq(charger.rejected[L.REJECT_TAG], 7, "tag refusals counted")
        eq(charger.rejected[L.REJECT_SHORT], 4, "length refusals counted")
        eq(charger.rejected[L.REJECT_REPLAY], 0, "nothing taken for a replay")
        eq(charger.open(f), (L.T_STOP, b"stop now"), "the genuine frame still opens")


def _rng(n):
    return bytes(range(1, n + 1))


def _hs(suite, now=0):
    from security import handshake as H
    keys = {"link_psk": b"\x5a" * 32, "sm2_priv": 7, "sm2_pub": bytes(64),
            "platform_pub": bytes(64)}
    return H, H.ChargerHandshake(suite, 3, keys, _rng, 10000, 60000, now)


def test_c2_handshake_reply_timeout():
    H, hs = _hs("aes")
    hello = hs.take(0)
    eq(hello[:5] + hello[5:9], b"EVH1\x02" + b"\x00\x00\x00\x03", "aes HELLO: suite, charger id")
    eq(len(hello), 25, "aes HELLO length")
    true(hs.step(10000), "still waiting at the deadline")
    true(not hs.step(10001), "no reply: failed after sec.hs_reply_s")
    eq(hs.reason, "no reply from the platform", "reason")
    eq(hs.records, None, "no keys")


def test_c2_handshake_stage_timeout():
    H, hs = _hs("sm", now=0)
    eq(hs.stage, H.KEYGEN, "sm starts with the ephemeral key")
    true(hs.step(1), "one step")
    true(not hs.step(60001), "the stage took longer than sec.hs_stage_s")
    eq(hs.reason, "stage keygen timed out", "reason")


def test_c2_handshake_forged_or_malformed_reply_refused():
    H, hs = _hs("aes")
    hs.take(0)
    true(hs.feed(b"EVR1" + bytes(16) + bytes(32), 5), "a REPLY of the right form is taken")
    eq(hs.stage, H.REPLY, "checked by the next step, not in feed's (the console's) call")
    true(not hs.step(6), "an aes REPLY with a wrong MAC")
    eq(hs.reason, "platform not authenticated", "reason")
    H, hs = _hs("aes")
    hs.take(0)
    true(not hs.feed(b"EVR1" + bytes(16), 5), "a truncated REPLY")
    eq(hs.reason, "malformed reply", "reason")
    eq(hs.take(6), None, "nothing is sent after a refusal")


class _Site:
    """A PlatformLink with an aes-suite handshake against a platform
    played here with the same code (the host tests use gmssl/CPython)."""

    def __init__(self, policy, psk=b"\x5a" * 32, plat_psk=None):
        from security import handshake as H
        from security import linkservice as PL
        from security.hmac256 import hmac_sha256
        self.H, self.PL, self.hmac = H, PL, hmac_sha256
        self.events = []
        self.stopped = 0
        self.psk = plat_psk or psk
        keys = {"link_psk": psk}
        self.link = PL.PlatformLink(
            policy, lambda: H.ChargerHandshake("aes", 9, keys, _rng, 10000, 60000, 0),
            self._stop, lambda c, a, b: self.events.append((c, a, b)))

    def _stop(self):
        self.stopped += 1

    def handshake(self):
        """Run it to the end; the platform's record layer, or None."""
        H = self.H
        link = self.link
        link.start()
        hello = link.poll(1)
        np_ = b"\x77" * 16
        t = hello + b"EVR1" + np_
        link.reply(b"EVR1" + np_ + self.hmac(self.psk, b"evc-c2-aes|platform|", t), 2)
        fin = None
        now = 3
        while fin is None and link.hs is not None:   # the REPLY checked, keys, FINISH: steps
            fin = link.poll(now)
            now += 1
        if fin is None:
            return None
        k = H.hkdf_sha256(self.psk, hello[9:25] + np_, b"evc-c2-aes|" + H.sm3(t), 96)
        up, down = H.split_keys(k)
        return L.RecordLayer(L.SUITE_AES, down, up)


def test_c2_policy_off_plain_as_before():
    s = _Site("off")
    s.link.start()
    eq(s.link.poll(1), None, "no handshake under off")
    eq(s.link.telemetry(b"REC"), b"REC", "telemetry plain")
    true(s.link.plain_command(), "the plain stop is obeyed as today")
    eq(s.events, [], "nothing logged")


def test_c2_policy_prefer_seals_when_the_platform_answers_else_plain():
    s = _Site("prefer")
    eq(s.link.telemetry(b"REC"), b"REC", "before the handshake: plain")
    eq(s.link.plain_sent, 1, "counted")
    plat = s.handshake()
    true(s.link.sealed, "sealed after the handshake")
    f = s.link.telemetry(b"REC")
    eq(plat.open(f), (L.T_TELEMETRY, b"REC"), "telemetry sealed for the platform")
    s2 = _Site("prefer", plat_psk=b"\x00" * 32)
    eq(s2.handshake(), None, "an impostor platform")
    true(not s2.link.sealed, "not sealed")
    eq(s2.events[-1][:2], (16, s2.PL.IXL_HANDSHAKE), "failed handshake logged")
    eq(s2.link.telemetry(b"REC"), b"REC", "prefer falls back to plain")


def test_c2_handshake_code_not_resident_once_sealed():
    """The handshake's modules (~1.7 KB of heap on the target) leave
    sys.modules when a handshake finishes; a failed one keeps them (its
    retry may begin in a session); the next handshake imports them again."""
    import sys
    import security
    names = ("security.handshake", "security.ecstep", "security.sm2")
    s2 = _Site("prefer", plat_psk=b"\x00" * 32)
    eq(s2.handshake(), None, "an impostor platform")
    for name in names:
        true(name in sys.modules, "%s kept after a failed handshake" % name)
    s = _Site("require")
    plat = s.handshake()
    true(s.link.sealed, "sealed")
    for name in names:
        true(name not in sys.modules, "%s dropped after the FINISH" % name)
        true(not hasattr(security, name[9:]), "%s: no package attribute" % name)
    eq(plat.open(s.link.telemetry(b"REC")), (L.T_TELEMETRY, b"REC"), "the link seals without them")
    from security import handshake as H
    true(hasattr(H, "ChargerHandshake") and "security.ecstep" in sys.modules,
         "a later handshake imports them again")


def test_c2_policy_require_holds_telemetry_and_refuses_plain_stop():
    s = _Site("require")
    eq(s.link.telemetry(b"REC"), None, "held before the handshake")
    eq(s.link.held, 1, "counted")
    true(not s.link.plain_command(), "a plain stop is refused")
    eq(s.events[-1][:2], (16, s.PL.IXL_PLAIN), "logged as an intrusion")
    eq(s.stopped, 0, "no stop")
    plat = s.handshake()
    eq(plat.open(s.link.telemetry(b"REC")), (L.T_TELEMETRY, b"REC"), "sealed once up")


def test_c2_sealed_stop_obeyed_forged_replayed_tampered_refused():
    s = _Site("require")
    plat = s.handshake()
    stop = plat.seal(L.T_STOP, b"stop")
    res = s.link.command(stop)
    eq(s.stopped, 1, "the sealed stop stopped the session")
    eq(plat.open(res), (L.T_RESULT, b"stopped"), "answered sealed on cmd/result")
    eq(s.link.command(stop), None, "the same stop replayed")
    t = bytearray(plat.seal(L.T_STOP, b"stop"))
    t[13] ^= 0x10
    eq(s.link.command(bytes(t)), None, "tampered")
    forger = L.RecordLayer(L.SUITE_AES, (bytes(16), bytes(32)), (bytes(16), bytes(32)))
    eq(s.link.command(forger.seal(L.T_STOP, b"stop")), None, "forged (no key)")
    eq(s.link.command(stop[:20]), None, "truncated")
    eq(s.stopped, 1, "none of them stopped anything")
    PL = s.PL
    eq([e[1] for e in s.events], [PL.IXL_REPLAY, PL.IXL_TAG, PL.IXL_TAG, PL.IXL_SHORT],
       "each refusal is an intrusion event")


def _cfg(rekey_s=0, batch_fill=200, tel_delta=1):
    """The ``sec.*`` settings a link in service reads (the defaults of
    security/settings.py, except re-keying off unless asked)."""
    return {"sec.hs_steps": 16, "sec.hs_retry_s": 60, "sec.rekey_s": rekey_s,
            "sec.batch_ms": 1000, "sec.batch_fill": batch_fill, "sec.seal_kinstr": 45,
            "sec.tel_delta": tel_delta}


def _record(seq, n):
    # a telemetry record as the link queues it: byte 3 is its length
    r = bytearray(n)
    r[0] = 0xA5
    r[3] = n
    r[4] = seq & 0xFF
    r[5] = seq >> 8
    return r


def test_c2_in_service_batches_sealed_in_steps_in_order():
    """The app's task table played here: records every 50 ms (offset 5),
    the link task at 45, the sealing task every 5 ms.  Every record
    reaches the platform once, in order, in frames with consecutive
    sequence numbers; no sealing step in a records pass; a sealed stop that
    arrives while a batch is half sealed is answered after that batch."""
    import micropython
    from security import linkservice as PL
    for suite, delta in ((L.SUITE_SM, 1), (L.SUITE_AES, 1), (L.SUITE_SM, 0)):
        cfg = _cfg(batch_fill=160, tel_delta=delta)
        charger, platform = _pair(suite)
        sent = []
        now = [0]
        locked = [False]

        def out(mv):
            # the channel (here: a list) may allocate; the link may not
            if locked[0]:
                micropython.heap_unlock()
            sent.append(bytes(mv))
            if locked[0]:
                micropython.heap_lock()
        link = PL.PlatformLink("require", None, lambda: None, lambda c, a, b: None)
        from array import array
        rt = array("i", [0])             # the records task's run count
        link.serve(out, lambda: now[0], lambda: 0, cfg, (rt, 0))
        link.records = charger
        seq = 0
        stepped_in_records_pass = 0
        stop_at = 2400 if suite == L.SUITE_SM else 3200
        answer = None
        frames_before_stop = 0
        for t in range(0, 6000, 5):
            now[0] = t
            records_pass = t % 50 == 5
            if records_pass:
                rt[0] += 1
                # demand every 50 ms (80 B), status every 250 ms (92 B)
                link.record(memoryview(_record(seq, 80)))
                seq += 1
                if t % 250 == 5:
                    link.record(memoryview(_record(seq, 92)))
                    seq += 1
            if t % 50 == 45:
                link.task(t)
            before = charger.sealer.largest, charger.sealer.busy, len(sent), charger.tx.seq
            if t > 3300 and answer is not None and len(sent) > frames_before_stop + 1:
                # the views of each length exist by now (a command's result,
                # rare, makes a view of its own)
                locked[0] = True
                micropython.heap_lock()
            try:
                link.seal_task(t)
            finally:
                if locked[0]:
                    micropython.heap_unlock()
                    locked[0] = False
            if records_pass and before != (charger.sealer.largest, charger.sealer.busy,
                                           len(sent), charger.tx.seq):
                stepped_in_records_pass += 1
            if answer is None and t >= stop_at and charger.sealer.busy:
                # a batch is half sealed when the stop comes
                frames_before_stop = len(sent)
                busy_seq = charger.tx.seq
                answer = link.command(platform.seal(L.T_STOP, b"stop"))
                eq(answer, b"", "in service the result is the sealing task's")
                eq((len(sent), charger.tx.seq), (frames_before_stop, busy_seq),
                   "nothing finished or sealed in the command's own call")
        eq(stepped_in_records_pass, 0, "no sealing step in a records pass")
        got = []
        results = 0
        for f in sent:
            r = platform.open(f[2:])
            true(r is not None, "suite %d: every frame opens, in order (%r)" % (suite, platform.rejected))
            if r[0] == L.T_RESULT:
                results += 1
                eq(r[1], b"stopped", "the stop's result")
                eq(sent.index(f), frames_before_stop + 1, "right after the half-sealed batch")
                eq(f[:2], bytes((PL.LINK_MAGIC, 0)), "a link envelope, no records")
                continue
            eq(r[0], L.T_TELEMETRY_DELTA if delta else L.T_TELEMETRY, "batch type (sec.tel_delta)")
            p = _expand(r[1]) if delta else r[1]
            k = 0
            c = 0
            while k < len(p):
                got.append(p[k + 4] | (p[k + 5] << 8))
                k += p[k + 3]
                c += 1
            eq(c, f[1], "the envelope counts the batch's records")
        eq(results, 1, "one result")
        true(answer is not None and frames_before_stop > 0, "the stop came mid-batch")
        eq(link.dropped, 0, "the sealer keeps up (suite %d)" % suite)
        true(len(got) > 100, "records went out")
        eq(got, list(range(len(got))), "suite %d: every record once, in order" % suite)
        # the rest: the batch still open (at most sec.batch_ms = 1 s of
        # records, 24) and the one being sealed
        true(seq - len(got) <= (6 if not delta else 30), "what is left is the last batch still waiting")




def test_c2_rekey_sends_the_half_sealed_batch_with_the_old_keys_first():
    """sec.rekey_s: when a new handshake finishes while a telemetry batch
    is half sealed, that batch is finished and sent with the old keys
    before the link switches (the platform still holds the old keys until
    it takes the FINISH); the next batches are sealed with the new keys."""
    s = _Site("require")
    link = s.link
    sent = []
    cfg = _cfg(rekey_s=3600, batch_fill=160, tel_delta=0)
    link.serve(lambda mv: sent.append(bytes(mv)), lambda: 0, lambda: 0, cfg)
    old = s.handshake()
    true(old is not None and link.keyed == 1, "sealed")
    seq = 0
    while not link.records.sealer.busy:
        link.record(memoryview(_record(seq, 80)))
        seq += 1
        link.task(0)
        link.seal_task(0)
    eq(sent, [], "nothing sent yet: the first batch is half sealed")
    new = s.handshake()
    true(new is not None and link.keyed == 2, "re-keyed")
    eq(len(sent), 1, "the half-sealed batch went out when the FINISH was taken")
    r = old.open(sent[0][2:])
    true(r is not None and r[0] == L.T_TELEMETRY, "sealed with the old keys")
    for i in range(4):
        link.record(memoryview(_record(seq, 80)))
        seq += 1
    link.task(0)
    for i in range(40):
        link.seal_task(0)
    true(len(sent) >= 2, "the next batch went out")
    r = new.open(sent[1][2:])
    true(r is not None and r[0] == L.T_TELEMETRY, "sealed with the new keys")


def test_c2_sealing_task_sleeps_while_nothing_waits():
    """The sealing task parks itself (Scheduler.park) when nothing waits to
    be sealed or sent, and is woken when a batch is cut: the records pass
    cutting a full batch, or the link task cutting by sec.batch_ms."""
    from security import linkservice as PL
    charger, platform = _pair(L.SUITE_SM)
    parked = []
    sent = []
    cfg = _cfg()
    link = PL.PlatformLink("require", None, lambda: None, lambda c, a, b: None)
    now = [0]
    link.serve(lambda mv: sent.append(bytes(mv)), lambda: now[0], lambda: 0, cfg, None,
               parked.append)
    link.records = charger
    link.seal_task(0)
    eq(parked, [1], "nothing to seal: parked")
    link.record(memoryview(_record(0, 80)))
    eq(parked, [1], "a record in the open batch: still parked")
    now[0] = 999
    link.task(999)
    eq(parked, [1], "the batch is not due yet")
    now[0] = 1000
    link.task(1000)
    eq(parked, [1, 0], "cut by sec.batch_ms: woken")
    while parked[-1] == 0:
        link.seal_task(now[0])
    eq(len(sent), 1, "the batch went out before the task parked again")
    r = platform.open(sent[0][2:])
    eq(r[0], L.T_TELEMETRY_DELTA, "a delta batch")
    eq(bytes(_expand(r[1])), bytes(_record(0, 80)), "that record")
    seq = 1
    while parked[-1] == 1:
        link.record(memoryview(_record(seq, 80)))
        seq += 1
    true(seq > 2, "woken by the records pass when the open batch was full (%d records)" % seq)


def test_c2_command_result_longer_than_a_frame_is_sealed_at_once():
    """In service a command's result is the sealing task's, in the frame
    buffer (220 bytes of payload); a result that does not fit (a VIN
    authorisation of 250 bytes) is sealed at once and handed back, never
    written past the buffer."""
    from security import linkservice as PL
    charger, platform = _pair(L.SUITE_AES)
    sent = []
    cfg = _cfg()
    link = PL.PlatformLink("require", None, lambda: None, lambda c, a, b: None)
    link.serve(lambda mv: sent.append(bytes(mv)), lambda: 0, lambda: 0, cfg)
    link.records = charger
    vin = b"V" * 250
    res = link.command(platform.seal(PL.T_VIN, vin))
    true(len(res) > 250, "sealed at once")
    eq(platform.open(res), (L.T_RESULT, b"vin " + vin), "the result")
    eq(link.vin, vin, "taken")
    res = link.command(platform.seal(PL.T_VIN, b"LVIN0123456789012"))
    eq(res, b"", "a short one: the sealing task's")
    for _ in range(40):
        link.seal_task(0)
    eq(len(sent), 1, "sent by the sealing task")
    eq(platform.open(sent[0][2:]), (L.T_RESULT, b"vin LVIN0123456789012"), "in order after the first")


def test_c2_require_keeps_held_records_and_seals_them_once_up():
    """Under require nothing leaves plain before the handshake; the held
    records are kept in the batch queue while it has room and go out
    sealed, in order, once the link is up; what did not fit is counted
    (dropped), never sent plain."""
    s = _Site("require")
    link = s.link
    sent = []
    cfg = _cfg()
    link.serve(lambda mv: sent.append(bytes(mv)), lambda: 0, lambda: 0, cfg)
    for seq in range(200):
        link.record(memoryview(_record(seq, 80)))
    eq(sent, [], "nothing sent plain")
    eq(link.held, 200, "all held")
    true(0 < link.dropped < 200, "some kept, the rest counted (%d)" % link.dropped)
    kept = 200 - link.dropped
    plat = s.handshake()
    true(plat is not None, "sealed")
    sent.clear()                    # (the handshake's HELLO and FINISH)
    for t in range(2000, 4000, 5):
        if t % 50 == 45:
            link.task(t)
        link.seal_task(t)
    got = []
    for f in sent:
        r = plat.open(f[2:])
        true(r is not None and r[0] == L.T_TELEMETRY_DELTA, "sealed telemetry")
        p = _expand(r[1])
        k = 0
        while k < len(p):
            got.append(p[k + 4] | (p[k + 5] << 8))
            k += p[k + 3]
    eq(got, list(range(kept)), "the kept records, in order, the oldest first")


mptest.main(globals())
