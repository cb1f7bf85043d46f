"""Signing on the host (issue 13, C-3): SM2 keys and signatures with gmssl.

``new_keypair() -> (priv 32 bytes, pub 64 bytes x||y)``;
``sign(priv, pub, msg) -> 64 bytes r||s`` (SM3withSM2, default user id);
``verify(pub, msg, sig)``.  The board verifies with firmware/security/sm2.py
(our own code); the known-answer tests check both against each other.

gmssl 3.2.2 fails now and then on points whose coordinates have a leading
zero nibble (its hex strings get shorter, ``_double_point`` returns None):
key generation and signing retry with another random value, and
verification here is a small affine implementation of its own (Python
integers, GB/T 32918.2 section 7) with gmssl's SM3, so that ``make deploy``
never refuses a good bundle by accident.
"""
from __future__ import annotations

import os

from gmssl import sm2 as _sm2

_N = int(_sm2.default_ecc_table["n"], 16)


def _crypt(priv_hex: str | None, pub_hex: str) -> "_sm2.CryptSM2":
    return _sm2.CryptSM2(private_key=priv_hex, public_key=pub_hex)


_T = _sm2.default_ecc_table
_P, _A, _B = int(_T["p"], 16), int(_T["a"], 16), int(_T["b"], 16)
_G = (int(_T["g"][:64], 16), int(_T["g"][64:], 16))


def _add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % _P == 0:
            return None
        lam = (3 * x1 * x1 + _A) * pow(2 * y1, -1, _P) % _P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, _P) % _P
    x3 = (lam * lam - x1 - x2) % _P
    return x3, (lam * (x1 - x3) - y1) % _P


def _mul(k: int, p):
    r = None
    while k:
        if k & 1:
            r = _add(r, p)
        p = _add(p, p)
        k >>= 1
    return r


def pub_of(priv: bytes) -> bytes:
    x, y = _mul(int.from_bytes(priv, "big"), _G)
    return x.to_bytes(32, "big") + y.to_bytes(32, "big")


def new_keypair() -> tuple[bytes, bytes]:
    while True:
        d = int.from_bytes(os.urandom(32), "big")
        if 1 <= d < _N - 1:
            break
    priv = d.to_bytes(32, "big")
    return priv, pub_of(priv)


def sign(priv: bytes, pub: bytes, msg: bytes, k: bytes | None = None) -> bytes:
    c = _crypt(priv.hex(), pub.hex())
    for _ in range(64):
        try:
            s = c.sign_with_sm3(msg, k.hex() if k else None)
        except TypeError:                  # gmssl's leading-zero defect: another k
            s = None
        if s and verify(pub, msg, bytes.fromhex(s)):
            return bytes.fromhex(s)
        k = None
    raise RuntimeError("gmssl could not sign")


def verify(pub: bytes, msg: bytes, sig: bytes) -> bool:
    from gmssl import sm3, func
    if len(pub) != 64 or len(sig) != 64:
        return False
    q = (int.from_bytes(pub[:32], "big"), int.from_bytes(pub[32:], "big"))
    if (q[1] ** 2 - q[0] ** 3 - _A * q[0] - _B) % _P:
        return False
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (1 <= r < _N and 1 <= s < _N) or (r + s) % _N == 0:
        return False
    z = bytes.fromhex("0080" + "31323334353637383132333435363738" + _T["a"] + _T["b"] +
                      _T["g"]) + pub
    za = bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(z)))
    e = int(sm3.sm3_hash(func.bytes_to_list(za + msg)), 16)
    pt = _add(_mul(s, _G), _mul((r + s) % _N, q))
    return pt is not None and (e + pt[0]) % _N == r
