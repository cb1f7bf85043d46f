"""Signing on the host (issue 13, C-3): SM2 keys and signatures with gmssl.

``new_keypair() -> (priv 32 bytes, pub 64 bytes x||y)``;
``sign(priv, pub, msg) -> 64 bytes r||s`` (SM3withSM2, default user id);
``verify(pub, msg, sig)``.  The board verifies with firmware/security/sm2.py
(our own code); the known-answer tests check both against each other.
"""
from __future__ import annotations

import os

from gmssl import sm2 as _sm2

_N = int(_sm2.default_ecc_table["n"], 16)


def _crypt(priv_hex: str | None, pub_hex: str) -> "_sm2.CryptSM2":
    return _sm2.CryptSM2(private_key=priv_hex, public_key=pub_hex)


def pub_of(priv: bytes) -> bytes:
    c = _crypt(priv.hex(), "")
    return bytes.fromhex(c._kg(int(priv.hex(), 16), _sm2.default_ecc_table["g"]))


def new_keypair() -> tuple[bytes, bytes]:
    while True:
        d = int.from_bytes(os.urandom(32), "big")
        if 1 <= d < _N - 1:
            break
    priv = d.to_bytes(32, "big")
    return priv, pub_of(priv)


def sign(priv: bytes, pub: bytes, msg: bytes, k: bytes | None = None) -> bytes:
    c = _crypt(priv.hex(), pub.hex())
    while True:
        s = c.sign_with_sm3(msg, k.hex() if k else None)
        if s:
            return bytes.fromhex(s)
        k = None


def verify(pub: bytes, msg: bytes, sig: bytes) -> bool:
    return bool(_crypt(None, pub.hex()).verify_with_sm3(sig.hex(), msg))
