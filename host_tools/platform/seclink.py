"""The platform's side of the sealed record layer (issue 13, C-2), written
on the host references (gmssl SM4/SM3, pycryptodomex AES, CPython hmac) so
that it checks the board's firmware/security/linkrec.py independently.

Same layout as the firmware (docs/security.md, "C-2 record layout").  The
handshake that would produce the keys is not built yet: callers pass the
per-direction keys."""
import hashlib
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
