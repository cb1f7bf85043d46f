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
(security/ecstep.py), or one of the pieces that are not products: checking
the REPLY (its MAC, or its ephemeral point and the transcript digest), a
KDF, one direction's key schedules, the FINISH's MAC or digest; after such
a piece ``heavy`` is set (the link task ends its run there).  ``feed``
only takes the REPLY (its length and magic): everything the REPLY needs
runs in ``step``, which the link task calls only between sessions, never
in the console's slot that received it.  Every stage has a deadline from
configuration (``sec.hs_reply_s`` for the platform's answer,
``sec.hs_stage_s`` for each computing stage).

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
REPLY = "reply"          # the REPLY taken, to be checked (``step``)
DIGEST = "digest"        # sm: the platform's point checked, the digest of T next
KDF = "kdf"              # the session keys from the shared secret
KEYS = "keys"            # the sending direction's cipher key schedule
KEYS_TX = "keys-tx"      # ... its MAC keys (inner and outer chaining values)
KEYS_RX = "keys-rx"      # the receiving direction's cipher key schedule
KEYS_END = "keys-end"    # ... its MAC keys, the record layer, FINISH
SIGN_PREP = "sign-prep"  # sm: the digest of T to sign
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
        self._k = None
        self._auth = None
        self._tx = None
        self._ctr = None
        self.heavy = False              # the last step was a long piece (see the module)
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
        """The platform's REPLY: taken if its length and magic fit (checked
        by ``step``).  False (stage FAILED, ``reason``) if refused."""
        if self.stage != WAIT_REPLY:
            return False
        n = 20 + (64 if self.suite == L.SUITE_SM else 0)     # up to sigP / macP
        if len(reply) != n + (64 if self.suite == L.SUITE_SM else 32) or reply[:4] != b"EVR1":
            return self._fail("malformed reply")
        self._t = self._t + reply[:n]
        self._reply = reply
        self._goto(REPLY, now_ms)
        return True

    def _check_reply(self, now_ms):
        reply = self._reply
        np_ = reply[4:20]
        if self.suite == L.SUITE_AES:
            psk = self._keys["link_psk"]
            if not equal(hmac_sha256(psk, b"evc-c2-aes|platform|", self._t), reply[20:]):
                return self._fail("platform not authenticated")
            self._k = (self._nc + np_, b"evc-c2-aes|" + sm3(self._t))
            self._goto(KDF, now_ms)
            return True
        if E.point_of(reply[20:84]) is None:
            return self._fail("platform ephemeral key not on the curve")
        self._goto(DIGEST, now_ms)
        return True

    def _established(self, k, now_ms):
        self._k = split_keys(k)
        self._goto(KEYS, now_ms)

    def _piece(self, st, now_ms):
        """The stages that are one piece each (not products)."""
        if st == REPLY:
            return self._check_reply(now_ms)
        if st == DIGEST:
            pub = self._keys["platform_pub"]
            self._op = E.Op(E.verify(pub, E.digest(pub, self._t + b"platform"),
                                     self._reply[84:148]))
            self._goto(VERIFY, now_ms)
        elif st == SIGN_PREP:
            pub = self._keys["sm2_pub"]
            e = E.digest(pub, self._t + b"charger")
            self._op = E.Op(E.sign(self._keys["sm2_priv"], e, self._scalar()))
            self._goto(SIGN, now_ms)
        elif st == KDF:
            if self.suite == L.SUITE_AES:
                psk = self._keys["link_psk"]
                salt, info = self._k
                self._established(hkdf_sha256(psk, salt, info, KEYS_LEN), now_ms)
            else:
                k = E.kdf(self._shared + sm3(self._t), KEYS_LEN)
                self._shared = None
                self._established(k, now_ms)
        elif st == KEYS or st == KEYS_RX:
            # a direction's cipher key schedule (one step), then its MAC's
            self._ctr = L.cipher_of(self.suite, self._k[0 if st == KEYS else 1][0])
            self._goto(KEYS_TX if st == KEYS else KEYS_END, now_ms)
        elif st == KEYS_TX:
            self._tx = L.Direction(self.suite, None, self._k[0][1], self._ctr)
            self._goto(KEYS_RX, now_ms)
        else:                           # KEYS_END
            if self.suite == L.SUITE_AES:
                self._auth = hmac_sha256(self._keys["link_psk"], b"evc-c2-aes|charger|", self._t)
            rx = L.Direction(self.suite, None, self._k[1][1], self._ctr)
            self.records = L.RecordLayer(self.suite, None, None, self._tx, rx)
            self._k = self._tx = self._ctr = None
            self.outbox = b"EVF1" + self._auth
            self._auth = None
            self._goto(SEND_FINISH, now_ms)
        return True

    def step(self, now_ms):
        """One small piece of work; False once the handshake has failed."""
        self.heavy = False
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
        if st in (REPLY, DIGEST, SIGN_PREP, KDF, KEYS, KEYS_TX, KEYS_RX, KEYS_END):
            self.heavy = True
            return self._piece(st, now_ms)
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
            self._goto(SIGN_PREP, now_ms)
        elif st == SIGN:
            if r is None:
                self._goto(SIGN_PREP, now_ms)      # a new nonce
                return True
            self._auth = r
            self._goto(KDF, now_ms)
        return True


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
