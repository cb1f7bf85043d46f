"""Charger side of the platform-link handshake (issue 13, C-2): mutual
authentication and key agreement, run in small steps from a low-priority
slot (docs/security.md, "C-2 handshake").

Suite sm: both sides sign the transcript with SM2 (the charger's key and
the platform's key are in protected config), ephemeral SM2 ECDH, keys from
the SM3 KDF of the shared point and the transcript hash.  Suite aes: a
per-charger pre-shared link key, HMAC-SHA256 challenge-response both ways,
keys from HKDF-SHA256 (symmetric: whoever has the link key can play either
end).  Messages:

    HELLO  C->P  "EVH1" suite(1) charger_id(4) Nc(16) [sm: Ec(64)]
    REPLY  P->C  "EVR1" Np(16) [sm: Ep(64) sigP(64) | aes: macP(32)]
    FINISH C->P  "EVF1" [sm: sigC(64) | aes: macC(32)]

Transcript T = HELLO || REPLY up to (not including) sigP/macP.  Keys (96
bytes) = charger->platform cipher 16 | MAC 32, platform->charger cipher 16 |
MAC 32.  ``step(now_ms)`` does at most ~4 products of 256-bit numbers
(security/ecstep.py); every stage has a deadline from configuration
(``sec.hs_reply_s`` for the platform's answer, ``sec.hs_stage_s`` for each
computing stage).

The handshake's code (this module, security/ecstep.py, security/sm2.py:
~1.7 KB of heap on the target) is dropped from ``sys.modules`` once a
handshake has finished (``take`` of the FINISH): the sealed link needs none
of it, and the next handshake (re-keying: between sessions only) imports it
again.  A failed handshake keeps it: its retry may begin in a session, where
importing it again would lengthen a control pass."""
import struct
import sys
from security import ecstep as E
from security import linkrec as L
from security.hmac256 import hmac_sha256, equal
from security.sm3 import sm3

SUITES = {"sm": L.SUITE_SM, "aes": L.SUITE_AES}
KEYS_LEN = 96

# Stages
KEYGEN = "keygen"        # sm: ephemeral key Ec = e*G
SEND_HELLO = "hello"     # HELLO ready in ``outbox``
WAIT_REPLY = "wait"      # waiting for the platform's REPLY
VERIFY = "verify"        # sm: the platform's signature over T
ECDH = "ecdh"            # sm: e*Ep
SIGN = "sign"            # sm: the charger's signature over T
SEND_FINISH = "finish"   # FINISH ready in ``outbox``; ``records`` usable
DONE = "done"
FAILED = "failed"


def _forget():
    """Drop the modules only a handshake needs (security/rng.py stays: its
    hash chain is state); the running handshake keeps its own references
    until the link lets it go."""
    pkg = sys.modules.get("security")
    for sub in ("handshake", "ecstep", "sm2"):
        m = getattr(pkg, sub, None)
        if m is not None:
            sys.modules.pop(m.__name__, None)
            delattr(pkg, sub)


def hkdf_sha256(ikm, salt, info, n):
    prk = hmac_sha256(salt, ikm)
    out = b""
    t = b""
    i = 1
    while len(out) < n:
        t = hmac_sha256(prk, t, info, bytes((i,)))
        out += t
        i += 1
    return out[:n]


def split_keys(k):
    """(charger->platform keys, platform->charger keys)."""
    return (k[0:16], k[16:48]), (k[48:64], k[64:96])


class ChargerHandshake:
    """One handshake attempt.  ``keys``: dict with ``sm2_priv`` (int),
    ``sm2_pub`` and ``platform_pub`` (64 bytes) for sm, ``link_psk`` for aes."""

    def __init__(self, suite, charger_id, keys, rng, reply_ms, stage_ms, now_ms=0):
        self.suite = SUITES[suite]
        self.charger_id = charger_id
        self._keys = keys
        self._rng = rng
        self._reply_ms = reply_ms
        self._stage_ms = stage_ms
        self.records = None
        self.outbox = None
        self.reason = None
        self.max_step_products = 0
        self._nc = rng(16)
        self._op = None
        self._t = None
        self._reply = None
        self._e = None
        self._ec = None
        self._goto(KEYGEN if self.suite == L.SUITE_SM else SEND_HELLO, now_ms)
        if self.suite == L.SUITE_SM:
            self._e = self._scalar()
            self._op = E.Op(E.mul(self._e, E.G))
        else:
            self._hello(b"")

    def _scalar(self):
        while True:
            k = E.i32(self._rng(32))
            if 1 <= k < E.N:
                return k

    def _goto(self, stage, now_ms):
        self.stage = stage
        self._since = now_ms

    def _fail(self, why):
        self.stage = FAILED
        self.reason = why
        self.outbox = None
        return False

    def _hello(self, eph):
        self.outbox = b"EVH1" + bytes((self.suite,)) + struct.pack(">I", self.charger_id) + \
            self._nc + eph
        self._t = self.outbox
        self.stage = SEND_HELLO

    def take(self, now_ms):
        """The message to send now (HELLO or FINISH), or None."""
        m = self.outbox
        if m is None:
            return None
        self.outbox = None
        if self.stage == SEND_HELLO:
            self._goto(WAIT_REPLY, now_ms)
        elif self.stage == SEND_FINISH:
            self._goto(DONE, now_ms)
            _forget()
        return m

    def feed(self, reply, now_ms):
        """The platform's REPLY.  False (stage FAILED, ``reason``) if refused."""
        if self.stage != WAIT_REPLY:
            return False
        n = 20 + (64 if self.suite == L.SUITE_SM else 0)     # up to sigP / macP
        if len(reply) != n + (64 if self.suite == L.SUITE_SM else 32) or reply[:4] != b"EVR1":
            return self._fail("malformed reply")
        self._t = self._t + reply[:n]
        self._reply = reply
        np_ = reply[4:20]
        if self.suite == L.SUITE_AES:
            psk = self._keys["link_psk"]
            if not equal(hmac_sha256(psk, b"evc-c2-aes|platform|", self._t), reply[n:]):
                return self._fail("platform not authenticated")
            k = hkdf_sha256(psk, self._nc + np_, b"evc-c2-aes|" + sm3(self._t), KEYS_LEN)
            self._established(k, hmac_sha256(psk, b"evc-c2-aes|charger|", self._t), now_ms)
            return True
        ep = E.point_of(reply[20:84])
        if ep is None:
            return self._fail("platform ephemeral key not on the curve")
        pub = self._keys["platform_pub"]
        self._op = E.Op(E.verify(pub, E.digest(pub, self._t + b"platform"), reply[84:148]))
        self._goto(VERIFY, now_ms)
        return True

    def _established(self, k, auth, now_ms):
        tx, rx = split_keys(k)
        self.records = L.RecordLayer(self.suite, tx, rx)
        self.outbox = b"EVF1" + auth
        self._goto(SEND_FINISH, now_ms)

    def step(self, now_ms):
        """One small piece of work; False once the handshake has failed."""
        st = self.stage
        if st == FAILED:
            return False
        if st in (DONE, SEND_HELLO, SEND_FINISH):
            return True
        if st == WAIT_REPLY:
            if now_ms - self._since > self._reply_ms:
                return self._fail("no reply from the platform")
            return True
        if now_ms - self._since > self._stage_ms:
            return self._fail("stage %s timed out" % st)
        if not self._op.step():
            return True
        r = self._op.result
        if st == KEYGEN:
            self._ec = E.point_bytes(r)
            self._hello(self._ec)
        elif st == VERIFY:
            if not r:
                return self._fail("platform signature refused")
            ep = E.point_of(self._reply[20:84])
            self._op = E.Op(E.mul(self._e, ep))
            self._goto(ECDH, now_ms)
        elif st == ECDH:
            if r is None:
                return self._fail("shared point at infinity")
            self._shared = E.point_bytes(r)
            self._e = None
            self._sign(now_ms)
        elif st == SIGN:
            if r is None:
                self._sign(now_ms)
                return True
            k = E.kdf(self._shared + sm3(self._t), KEYS_LEN)
            self._shared = None
            self._established(k, r, now_ms)
        return True

    def _sign(self, now_ms):
        pub = self._keys["sm2_pub"]
        e = E.digest(pub, self._t + b"charger")
        self._op = E.Op(E.sign(self._keys["sm2_priv"], e, self._scalar()))
        self._goto(SIGN, now_ms)


def load_keys(path="keys.json"):
    """The link keys of the charger's key file (host_tools/seckeys.py new)."""
    import json
    from binascii import unhexlify
    with open(path) as f:
        d = json.load(f)
    keys = {}
    if "link_priv" in d:
        keys["sm2_priv"] = E.i32(unhexlify(d["link_priv"]))
        keys["sm2_pub"] = unhexlify(d["link_pub"])
        keys["platform_pub"] = unhexlify(d["platform_pub"])
    if "link_psk" in d:
        keys["link_psk"] = unhexlify(d["link_psk"])
    return keys
