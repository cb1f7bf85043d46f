"""HMAC-SHA256 (RFC 2104 / FIPS 198-1) on the port's ``hashlib.sha256``.

Every port the charger runs on has ``hashlib.sha256`` (unix, stm32, esp32,
the qemu target).  Not on a hot path: console unlocks, update manifests and
the AES platform suite call it a few times per event."""
import hashlib
from micropython import const

_B = const(64)


def _pad(key, x):
    if len(key) > _B:
        key = hashlib.sha256(key).digest()
    p = bytearray(_B)
    for i in range(len(key)):
        p[i] = key[i]
    for i in range(_B):
        p[i] ^= x
    return p


def hmac_sha256(key, *parts):
    """HMAC-SHA256 of the concatenation of ``parts`` (bytes-like) with ``key``."""
    h = hashlib.sha256(_pad(key, 0x36))
    for p in parts:
        h.update(p)
    inner = h.digest()
    h = hashlib.sha256(_pad(key, 0x5C))
    h.update(inner)
    return h.digest()


def sha256(data):
    return hashlib.sha256(data).digest()


def equal(a, b):
    """Constant-time comparison of two byte strings (length is not secret)."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
