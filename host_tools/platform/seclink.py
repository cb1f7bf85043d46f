"""The platform's side of the sealed record layer (issue 13, C-2), written
on the host references (gmssl SM4/SM3, pycryptodomex AES, CPython hmac) so
that it checks the board's firmware/security/linkrec.py independently.

Same layout as the firmware (docs/security.md, "C-2 record layout").
``PlatformHandshake`` answers the charger's handshake; ``PlatformEndpoint`` puts the handshake and the record
layer together for the link in service (the ingest uses it)."""
import hashlib
import os
import hmac
import struct

from Cryptodome.Cipher import AES
from gmssl import sm4 as _sm4

SUITE_SM, SUITE_AES = 1, 2
HEADER, TAG = 12, 16


def sm3(data: bytes) -> bytes:
    from host_tools.update_bundle import sm3 as _h
    return _h(data)


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    if len(key) > 64:
        key = sm3(key)
    key = key.ljust(64, b"\0")
    inner = sm3(bytes(k ^ 0x36 for k in key) + data)
    return sm3(bytes(k ^ 0x5C for k in key) + inner)


def sm4_block(key: bytes, block: bytes) -> bytes:
    c = _sm4.CryptSM4()
    c.set_key(key, _sm4.SM4_ENCRYPT)
    return c.crypt_ecb(block)[:16]         # gmssl pads: the first block is ours


def aes_block(key: bytes, block: bytes) -> bytes:
    return AES.new(key, AES.MODE_ECB).encrypt(block)


def _ctr(suite, key, seq, data):
    out = bytearray()
    for b in range(0, len(data), 16):
        ctr = struct.pack(">QII", seq, 0, b // 16)
        ks = sm4_block(key, ctr) if suite == SUITE_SM else aes_block(key, ctr)
        out += bytes(x ^ y for x, y in zip(data[b:b + 16], ks))
    return bytes(out)


def _mac(suite, key, data):
    if suite == SUITE_SM:
        return hmac_sm3(key, data)[:TAG]
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG]


class RecordLayer:
    def __init__(self, suite, tx_keys, rx_keys):
        self.suite = suite
        self.tx, self.rx = tx_keys, rx_keys
        self.tx_seq = self.rx_seq = 0
        self.rejected = {"short": 0, "tag": 0, "replay": 0}

    def seal(self, rtype: int, payload: bytes) -> bytes:
        self.tx_seq += 1
        head = struct.pack(">BBQH", self.suite, rtype, self.tx_seq, len(payload))
        body = head + _ctr(self.suite, self.tx[0], self.tx_seq, payload)
        return body + _mac(self.suite, self.tx[1], body)

    def open(self, frame: bytes):
        if len(frame) < HEADER + TAG:
            self.rejected["short"] += 1
            return None
        suite, rtype, seq, n = struct.unpack_from(">BBQH", frame)
        if len(frame) != HEADER + n + TAG:
            self.rejected["short"] += 1
            return None
        body = frame[:HEADER + n]
        if suite != self.suite or not hmac.compare_digest(
                _mac(suite, self.rx[1], body), frame[HEADER + n:]):
            self.rejected["tag"] += 1
            return None
        if seq <= self.rx_seq:
            self.rejected["replay"] += 1
            return None
        self.rx_seq = seq
        return rtype, _ctr(suite, self.rx[0], seq, frame[HEADER:HEADER + n])


# -- handshake, platform side (firmware/security/handshake.py is the charger) --
def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes((i,)), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:n]


def sm2_kdf(z: bytes, n: int) -> bytes:
    out, ct = b"", 1
    while len(out) < n:
        out += sm3(z + ct.to_bytes(4, "big"))
        ct += 1
    return out[:n]


class PlatformHandshake:
    """Answers one charger's HELLO and checks its FINISH.  ``keys``: for sm
    ``platform_priv``/``platform_pub`` and the charger's ``charger_pub``; for
    aes the charger's ``link_psk``.  ``records`` is set once FINISH verifies."""

    def __init__(self, keys: dict):
        self.keys = keys
        self.records = None
        self.charger_id = None
        self._t = None

    def answer(self, hello: bytes) -> bytes | None:
        from host_tools import secsign
        if len(hello) < 25 or hello[:4] != b"EVH1":
            return None
        suite = hello[4]
        self.charger_id = int.from_bytes(hello[5:9], "big")
        nc, np_ = hello[9:25], os.urandom(16)
        self.suite = suite
        if suite == SUITE_AES and len(hello) == 25:
            psk = self.keys["link_psk"]
            self._t = hello + b"EVR1" + np_
            self._keys = hkdf_sha256(psk, nc + np_, b"evc-c2-aes|" + sm3(self._t), 96)
            return b"EVR1" + np_ + hmac.new(psk, b"evc-c2-aes|platform|" + self._t,
                                            hashlib.sha256).digest()
        if suite == SUITE_SM and len(hello) == 89:
            ec = hello[25:89]
            ecp = (int.from_bytes(ec[:32], "big"), int.from_bytes(ec[32:], "big"))
            x, y = ecp
            if (y * y - x * x * x - secsign._A * x - secsign._B) % secsign._P:
                return None
            e = int.from_bytes(os.urandom(32), "big") % (secsign._N - 1) + 1
            ep = secsign._mul(e, secsign._G)
            epb = ep[0].to_bytes(32, "big") + ep[1].to_bytes(32, "big")
            self._t = hello + b"EVR1" + np_ + epb
            s = secsign._mul(e, ecp)
            self._keys = sm2_kdf(s[0].to_bytes(32, "big") + s[1].to_bytes(32, "big")
                                 + sm3(self._t), 96)
            sig = secsign.sign(self.keys["platform_priv"], self.keys["platform_pub"],
                               self._t + b"platform")
            return b"EVR1" + np_ + epb + sig
        return None

    def finish(self, fin: bytes) -> bool:
        from host_tools import secsign
        if self._t is None or fin[:4] != b"EVF1":
            return False
        if self.suite == SUITE_AES:
            want = hmac.new(self.keys["link_psk"], b"evc-c2-aes|charger|" + self._t,
                            hashlib.sha256).digest()
            ok = hmac.compare_digest(want, fin[4:])
        else:
            ok = len(fin) == 68 and secsign.verify(self.keys["charger_pub"],
                                                   self._t + b"charger", fin[4:])
        if not ok:
            return False
        k = self._keys
        self.records = RecordLayer(self.suite, (k[48:64], k[64:96]), (k[0:16], k[16:48]))
        return True


# -- the link in service: what the TCU relays (docs/security.md "C-2 in service") --
LINK_MAGIC = 0xEC                 # firmware security/linkservice.py: envelope on the telemetry channel
T_TELEMETRY, T_STOP, T_RESULT, T_VIN = 1, 2, 3, 4
T_TELEMETRY_DELTA = 5             # a batch of delta entries (sec.tel_delta; expand_delta)
LINK_HDR = struct.Struct("<QIH")  # MQTT evc/<id>/link payload: first_n, boot, record count; frame


def load_platform_keys(path) -> dict:
    """``keys.platform.json`` (host_tools/seckeys.py new) as PlatformHandshake keys."""
    import json
    d = json.loads(open(path).read())
    k = {"charger_id": d.get("charger_id")}
    for name in ("platform_priv", "platform_pub", "charger_pub", "link_psk"):
        if name in d:
            k[name] = bytes.fromhex(d[name])
    return k


class PlatformEndpoint:
    """The platform's end of one charger's link: answers its handshake,
    opens its sealed frames, seals the commands for it.  ``uplink`` takes a
    frame as the charger sent it (after the TCU's header) and returns
    ``(what, value, answer)``: what is "reply" (answer: the REPLY to send
    down), "up" (the FINISH verified: sealed from now on), "telemetry"
    (value: the records, bytes), "result" (value: text), "refused" (value:
    the reason: short / tag / replay / handshake)."""

    def __init__(self, keys: dict):
        self.keys = keys
        self.hs = None
        self.records = None
        self.refused = {"short": 0, "tag": 0, "replay": 0, "handshake": 0, "format": 0}

    @property
    def sealed(self) -> bool:
        return self.records is not None

    def uplink(self, frame: bytes):
        if frame[:4] == b"EVH1":
            self.hs = PlatformHandshake(self.keys)
            reply = self.hs.answer(frame)
            if reply is None:
                self.refused["handshake"] += 1
                return "refused", "handshake", None
            return "reply", None, reply
        if frame[:4] == b"EVF1":
            if self.hs is None or not self.hs.finish(frame):
                self.refused["handshake"] += 1
                return "refused", "handshake", None
            self.records, self.hs = self.hs.records, None
            return "up", None, None
        if self.records is None:
            self.refused["tag"] += 1
            return "refused", "no link", None
        before = dict(self.records.rejected)
        r = self.records.open(frame)
        if r is None:
            why = next(k for k in before if self.records.rejected[k] != before[k])
            self.refused[why] += 1
            return "refused", why, None
        if r[0] == T_TELEMETRY:
            return "telemetry", r[1], None
        if r[0] == T_TELEMETRY_DELTA:
            try:
                return "telemetry", expand_delta(r[1]), None
            except ValueError:
                self.refused["format"] += 1
                return "refused", "format", None
        if r[0] == T_RESULT:
            return "result", r[1].decode(errors="replace"), None
        return "refused", "type %d" % r[0], None

    def seal_stop(self) -> bytes:
        return self.records.seal(T_STOP, b"stop")

    def seal_vin(self, vin: str) -> bytes:
        return self.records.seal(T_VIN, vin.encode())


def expand_delta(data: bytes) -> bytes:
    """A batch of delta entries (firmware security/linkqueue.py) back to
    the records, back to back.  An entry: the record's length n (0: the
    zeros that pad the batch to whole 16-byte blocks); the group mask,
    ceil(ceil(n/8)/8) bytes (bit g of byte g//8: the 8 bytes from 8g have
    a change); for each group in the mask, in order, its byte mask (bit i:
    byte 8g+i follows); then those bytes, in order.  The bytes not sent are
    those of the batch's last record of the same length; for a length new
    in the batch, those of the batch's previous record (cut or padded with
    zeros to the length; zeros for the batch's first record).  Anything
    else is a ValueError (an authenticated frame that does not decode is a
    broken charger, not an attacker: counted as ``format``)."""
    out = bytearray()
    refs: dict[int, bytes] = {}
    last = b""
    i, end = 0, len(data)
    while i < end:
        n = data[i]
        if n == 0:                  # the padding to whole 16-byte blocks
            if any(data[i:]) or end - i > 15:
                raise ValueError("broken padding in a sealed batch")
            break
        nb = (n + 7) >> 3
        ng = (nb + 7) >> 3
        if n < 4 or i + 1 + ng > end:
            raise ValueError("broken delta entry in a sealed batch")
        gm = int.from_bytes(data[i + 1:i + 1 + ng], "little")
        if gm >> nb:
            raise ValueError("delta group mask past the record")
        k = i + 1 + ng
        groups = [g for g in range(nb) if gm >> g & 1]
        if k + len(groups) > end:
            raise ValueError("broken delta entry in a sealed batch")
        ref = refs.get(n)
        rec = bytearray((last + bytes(n))[:n] if ref is None else ref)
        masks = data[k:k + len(groups)]
        k += len(groups)
        for g, m in zip(groups, masks):
            if not m or (m >> (n - 8 * g) if n - 8 * g < 8 else 0):
                raise ValueError("broken delta byte mask")
            for b in range(8):
                if m >> b & 1:
                    if k >= end:
                        raise ValueError("broken delta entry in a sealed batch")
                    rec[8 * g + b] = data[k]
                    k += 1
        refs[n] = last = bytes(rec)
        out += rec
        i = k
    return bytes(out)


def split_records(data: bytes) -> list[bytes]:
    """Table-1 records back to back (each carries its size in byte 3)."""
    out, i = [], 0
    while i + 4 <= len(data):
        n = data[i + 3]
        if n < 4 or i + n > len(data):
            raise ValueError("broken record in a sealed batch")
        out.append(bytes(data[i:i + n]))
        i += n
    if i != len(data):
        raise ValueError("trailing bytes in a sealed batch")
    return out
