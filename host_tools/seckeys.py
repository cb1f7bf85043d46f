"""Charger keys on the host (issue 13; docs/security.md).

    python -m host_tools.seckeys new keys.json [--charger-id 1]
        a board's key file: the console master key (32 random bytes), the
        firmware-update verification key (SM2 public key; the private key
        goes to keys.sign.json next to it, which never leaves the host) and
        the platform link keys (C-2: the charger's SM2 key pair, the
        platform's public key, the link PSK of the aes suite); the
        platform's side goes to keys.platform.json (its private key, the
        charger's public key, the PSK) for host_tools.platform.
    python -m host_tools.seckeys answer keys.json ROLE NONCE [--charger-id N]
        the answer to a console challenge: prints the unlock(...) line to type.
    python -m host_tools.seckeys role-key keys.json ROLE
        the role key (hex) to give a person who may only take ROLE; answer
        with --role-key HEX instead of the key file.

The console protocol (firmware/security/roles.py) in CPython: role key
K_r = HMAC-SHA256(K, "evc-console-role:" + role); answer =
HMAC-SHA256(K_r, "evc-unlock|" + role + "|" + charger_id + "|" + nonce).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
from pathlib import Path

ROLES = ("viewer", "operator", "maintainer")


def role_key(master: bytes, role: str) -> bytes:
    return hmac.new(master, b"evc-console-role:" + role.encode(), hashlib.sha256).digest()


def answer(master: bytes | None, role: str, charger_id: int, nonce: bytes,
           rkey: bytes | None = None) -> bytes:
    k = rkey if rkey is not None else role_key(master, role)
    msg = b"evc-unlock|%s|%d|" % (role.encode(), charger_id) + nonce
    return hmac.new(k, msg, hashlib.sha256).digest()


def load(path) -> dict:
    return json.loads(Path(path).read_text())


def console_key(path) -> bytes:
    return bytes.fromhex(load(path)["console"])


def new_keys(path, charger_id: int = 1) -> dict:
    """Write a fresh key file (and the host-only signing file beside it)."""
    from host_tools import secsign
    priv, pub = secsign.new_keypair()
    link_priv, link_pub = secsign.new_keypair()        # the charger's platform-link key
    plat_priv, plat_pub = secsign.new_keypair()        # the platform's (C-2, suite sm)
    psk = os.urandom(32)                               # C-2 suite aes (symmetric)
    d = {"console": os.urandom(32).hex(),
         "update_pub": pub.hex(),
         "platform": os.urandom(16).hex(),
         "link_priv": link_priv.hex(), "link_pub": link_pub.hex(),
         "platform_pub": plat_pub.hex(), "link_psk": psk.hex()}
    p = Path(path)
    plat = p.with_name(p.stem + ".platform.json")
    plat.write_text(json.dumps({"charger_id": charger_id, "platform_priv": plat_priv.hex(),
                                "platform_pub": plat_pub.hex(), "charger_pub": link_pub.hex(),
                                "link_psk": psk.hex()}, indent=1) + "\n")
    p.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
    sign = p.with_name(p.stem + ".sign.json")
    sign.write_text(json.dumps({"update_priv": priv.hex(), "update_pub": pub.hex()},
                               indent=1) + "\n")
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.seckeys", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("new")
    n.add_argument("path")
    n.add_argument("--charger-id", type=int, default=1)
    a = sub.add_parser("answer")
    a.add_argument("path", nargs="?")
    a.add_argument("role", choices=ROLES[1:])
    a.add_argument("nonce")
    a.add_argument("--charger-id", type=int, default=1)
    a.add_argument("--role-key", default=None)
    r = sub.add_parser("role-key")
    r.add_argument("path")
    r.add_argument("role", choices=ROLES[1:])
    o = ap.parse_args(argv)
    if o.cmd == "new":
        new_keys(o.path, o.charger_id)
        print("wrote %s (and %s: keep it off the board)" % (
            o.path, Path(o.path).with_name(Path(o.path).stem + ".sign.json")))
    elif o.cmd == "answer":
        rk = bytes.fromhex(o.role_key) if o.role_key else None
        if rk is None and not o.path:
            ap.error("a key file or --role-key")
        m = None if rk is not None else console_key(o.path)
        print('unlock("%s", "%s")' % (o.role, answer(m, o.role, o.charger_id,
                                                      bytes.fromhex(o.nonce), rk).hex()))
    else:
        print(role_key(console_key(o.path), o.role).hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
