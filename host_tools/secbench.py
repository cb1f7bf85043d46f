"""Cost of each cryptographic step on the target (issue 13; docs/security.md).

    python -m host_tools.secbench [--image build/firmware/QEMU_M3-test]

Boots the QEMU test image (the firmware and tests/mp frozen in: the KAT
vectors of tests/mp/secvectors.py) under ``-icount shift=0`` and times each
step with ``time.ticks_us`` (= 1,000 guest instructions), best of 3.
Prints kinstr and the F405 time at 14.43 µs per kinstr (benchlib/target.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

US_PER_KINSTR = 14.43

SCRIPT = r"""
import qemu.main as m
m.prepare()
import os, time, gc
try:
    os.mkdir('/tmp')
except OSError:
    pass
import secvectors as V
from security.sm3 import sm3
from security import sm2, update, roles, cmdline
from security.hmac256 import hmac_sha256
from gbt.link import BmsLink
from gbt.bmsdata import BmsData
from gbt.ixwatch import IxWatch
from rt.clock import SimClock
res = {}
def t(name, fn, n=3):
    best = None
    for _ in range(n):
        gc.collect()
        a = time.ticks_us()
        fn()
        d = time.ticks_diff(time.ticks_us(), a)
        best = d if best is None or d < best else best
    res[name] = best
k = bytes(32); nonce = bytes(16); d64 = bytes(64); d1k = bytes(1024)
t("hmac_sha256 64 B", lambda: hmac_sha256(k, d64))
t("console unlock check (role key + answer, 2 HMAC)", lambda: roles.response(k, 1, 1, nonce))
t("console command parse (cfg_set line)", lambda: cmdline.parse(b'cfg_set("h8.ma", 1000)'))
t("sm3 64 B", lambda: sm3(d64))
t("sm3 1 KB", lambda: sm3(d1k))
t("sm2 verify (SM3withSM2, 18 B message)", lambda: sm2.verify(V.PUB, V.MSG, V.SIG), 1)
from security.sm4 import SM4
from security.aes128 import AES128
from security import linkrec as L
blk = bytearray(16); k16 = bytes(16)
c4 = SM4(k16); ca = AES128(k16, pure=True)
t("sm4 key schedule", lambda: SM4(k16))
t("sm4 block", lambda: c4.encrypt_into(blk, blk))
ct4 = L.CTR(c4); cta = L.CTR(ca); o1k = bytearray(1024)
t("sm4-ctr 1 KB", lambda: ct4.crypt_into(1, d1k, o1k))
t("aes-128 block (pure)", lambda: ca.encrypt_into(blk, blk))
t("aes-128-ctr 1 KB (pure)", lambda: cta.crypt_into(1, d1k, o1k))
from security.linkrec import hmac_sm3
t("hmac-sm3 64 B", lambda: hmac_sm3(k, d64))
batch = b'{"t":1,"st":"CHARGING","v":612.5,"i":120.2,"soc":42}' * 6
for su, nm in ((L.SUITE_SM, "sm"), (L.SUITE_AES, "aes")):
    a = L.RecordLayer(su, (k16, k), (k16, k)); b = L.RecordLayer(su, (k16, k), (k16, k))
    t("record seal %s, telemetry batch %d B" % (nm, len(batch)), lambda: a.seal(L.T_TELEMETRY, batch))
    fr = [a.seal(L.T_TELEMETRY, batch) for _ in range(3)]
    t("record open %s, telemetry batch %d B" % (nm, len(batch)), lambda: b.open(fr.pop(0)))
from security import ecstep as E
from security import handshake as H
def stepped(name, gen):
    op = E.Op(gen)
    worst = total = 0
    while True:
        if op.steps % 64 == 0:
            gc.collect()            # as the slow task does between passes
        a = time.ticks_us()
        d = op.step()
        dt = time.ticks_diff(time.ticks_us(), a)
        total += dt
        worst = dt if dt > worst else worst
        if d:
            break
    res["handshake %s, %d steps: total" % (name, op.steps)] = total
    res["handshake %s: largest step" % name] = worst
    return op.result
eph = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDE
ec = stepped("sm keygen (e*G)", E.mul(eph, E.G))
stepped("sm verify platform signature", E.verify(V.PUB, E.digest(V.PUB, V.MSG), V.SIG))
stepped("sm ECDH (e*Ep)", E.mul(eph, E.point_of(V.PUB)))
stepped("sm sign transcript", E.sign(eph, E.digest(V.PUB, V.MSG), eph // 3))
t("handshake sm digest of transcript (Z_A + e)", lambda: E.digest(V.PUB, bytes(250)))
t("handshake sm KDF 96 B", lambda: E.kdf(bytes(96), 96))
t("handshake aes HKDF-SHA256 96 B", lambda: H.hkdf_sha256(k, nonce + nonce, bytes(40), 96))
with open('/tmp/b.evu', 'wb') as f:
    f.write(V.GOOD)
t("update bundle verify (2 files, %d B)" % len(V.GOOD), lambda: update.verify('/tmp/b.evu', V.PUB), 1)
link = BmsLink(lambda c, b, n: True, SimClock(), BmsData())
w = IxWatch(link, link.bms)
w.tick(0, True)
t("intrusion look (IxWatch.tick, charging)", lambda: w.tick(1000, True))
import json
print("RESULT " + json.dumps(res))
"""


def measure(image: Path | None = None) -> dict:
    from host_tools.sil.qemu import QemuMachine, ensure_image
    img = image or ensure_image("QEMU_M3", "test")
    m = QemuMachine(image=img)
    try:
        m.raw_repl()
        out, err = m.raw_exec(SCRIPT, timeout=900)
    finally:
        m.proc.kill()
        m.close()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError("no result from the target:\n%s\n%s" % (out[-3000:], err[-3000:]))


def table(res: dict) -> str:
    rows = ["| step | kinstr | F405 168 MHz |", "|---|---:|---:|"]
    for k, v in res.items():
        ms = v * US_PER_KINSTR / 1000.0
        rows.append("| %s | %s | %s |" % (k, format(v, ","),
                                          ("%.2f ms" % ms) if ms < 1000 else ("%.2f s" % (ms / 1000))))
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.secbench")
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = measure(a.image)
    print(json.dumps(res, indent=1) if a.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
