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

# The scripts run on the target (raw REPL); the seal-only one is the full
# one without the console, hash, SM2, handshake and update rows.
_HEAD = r"""
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
"""

_EXTRA = r"""t("hmac_sha256 64 B", lambda: hmac_sha256(k, d64))
t("console unlock check (role key + answer, 2 HMAC)", lambda: roles.response(k, 1, 1, nonce))
t("console command parse (cfg_set line)", lambda: cmdline.parse(b'cfg_set("h8.ma", 1000)'))
t("sm3 64 B", lambda: sm3(d64))
t("sm3 1 KB", lambda: sm3(d1k))
t("sm2 verify (SM3withSM2, 18 B message)", lambda: sm2.verify(V.PUB, V.MSG, V.SIG), 1)
"""

_SEAL = r"""from security.sm4 import SM4
from security.aes128 import AES128
from security import linkrec as L
blk = bytearray(16); k16 = bytes(16)
c4 = SM4(k16); ca = AES128(k16, pure=True)
t("sm4 key schedule", lambda: SM4(k16))
t("sm4 block", lambda: c4.encrypt_into(blk, blk))
ct4 = L.CTR(c4); cta = L.CTR(ca); o1k = bytearray(1024)
t("sm4-ctr 1 KB", lambda: ct4.crypt_into(1, d1k, o1k))
t("aes-128 key schedule (pure)", lambda: AES128(k16, pure=True))
t("aes-128 block (pure)", lambda: ca.encrypt_into(blk, blk))
t("aes-128-ctr 1 KB (pure)", lambda: cta.crypt_into(1, d1k, o1k))
from security.linkrec import hmac_sm3
t("hmac-sm3 64 B", lambda: hmac_sm3(k, d64))
batch = b'{"t":1,"st":"CHARGING","v":612.5,"i":120.2,"soc":42}' * 6
b220 = bytes(range(220))
fb = bytearray(2 + 12 + 220 + 16)
_aes = L._cipher
def _pure(suite, key):
    # the target has no cryptolib; the pure path is forced all the same
    return AES128(key, pure=True) if suite == L.SUITE_AES else _aes(suite, key)
L._cipher = _pure
from security import linkservice as PL
for su, nm in ((L.SUITE_SM, "sm"), (L.SUITE_AES, "aes")):
    t("link-up %s (key schedule, HMAC keys, both directions)" % nm,
      lambda: L.RecordLayer(su, (k16, k), (k16, k)))
    a = L.RecordLayer(su, (k16, k), (k16, k)); b = L.RecordLayer(su, (k16, k), (k16, k))
    ctr = a.tx.ctr; mac = a.tx.mac
    ctr.start(1)
    t("seal unit %s: CTR block" % nm, lambda: ctr.blocks(fb, 14, 220, 3, 1))
    t("seal unit %s: 4 CTR blocks" % nm, lambda: ctr.blocks(fb, 14, 220, 3, 4))
    t("seal unit %s: hash compression" % nm, lambda: mac.block(fb, 0))
    t("seal unit %s: outer hash + tag" % nm, lambda: mac.finish(fb, 0, 4))
    t("record seal %s, telemetry batch %d B" % (nm, len(batch)), lambda: a.seal(L.T_TELEMETRY, batch))
    t("record seal %s, telemetry batch 220 B (one shot)" % nm, lambda: a.seal(L.T_TELEMETRY, b220))
    fr = [a.seal(L.T_TELEMETRY, batch) for _ in range(3)]
    t("record open %s, telemetry batch %d B" % (nm, len(batch)), lambda: b.open(fr.pop(0)))
    stops = [b.seal(L.T_STOP, b"stop") for _ in range(3)]
    t("record open %s, sealed stop" % nm, lambda: a.open(stops.pop(0)))
    t("record seal %s, command result" % nm, lambda: a.seal(L.T_RESULT, b"stopped"))
    for budget in (30, 45, 60):
        s = a.sealer
        s.budget = budget
        worst = total = steps = 0
        for n in (220, 172, 160, 92):
            s.begin(L.T_TELEMETRY, b220, 0, n, fb, 2)
            while True:
                x = time.ticks_us()
                d = s.step()
                dt = time.ticks_diff(time.ticks_us(), x)
                worst = dt if dt > worst else worst
                total += dt
                steps += 1
                if d:
                    break
        res["stepped seal %s, budget %d: largest step" % (nm, budget)] = worst
        res["stepped seal %s, budget %d: steps for 220+172+160+92 B" % (nm, budget)] = steps
        res["stepped seal %s, budget %d: total for 220+172+160+92 B" % (nm, budget)] = total
    # the sealing task in service, as the app runs it (load, steps, send)
    cfg = {"sec.hs_steps": 16, "sec.hs_retry_s": 60, "sec.rekey_s": 0, "sec.batch_ms": 1000,
           "sec.batch_fill": 160, "sec.seal_kinstr": 45, "sec.tel_delta": 1}
    pl = PL.PlatformLink("require", None, lambda: None, lambda c, x, y: None)
    pl.serve(lambda mv: None, time.ticks_ms, lambda: 0, cfg, None)
    pl.records = L.RecordLayer(su, (k16, k), (k16, k))
    rec = bytearray(80); rec[0] = 0xA5; rec[3] = 80
    rmv = memoryview(rec)
    worst = 0
    for r in range(800):
        if r % 10 == 0:
            x = time.ticks_us()
            pl.record(rmv)
            dt = time.ticks_diff(time.ticks_us(), x)
            res["link record (queue an 80 B record, records pass)"] = dt
            continue                # no sealing step in the records pass
        if r % 10 == 9:
            pl.task(time.ticks_ms())
        x = time.ticks_us()
        pl.seal_task(0)
        dt = time.ticks_diff(time.ticks_us(), x)
        if r >= 400:                # the frame lengths' views made in the first half
            worst = dt if dt > worst else worst
    res["sealing task %s in service, largest run (sec.seal_kinstr %d)" % (nm, cfg["sec.seal_kinstr"])] = worst
    res["sealing task %s in service: frames sealed, records dropped" % nm] = "%d, %d" % (pl.sealed_frames, pl.dropped)
L._cipher = _aes
"""

_HANDSHAKE = r"""from security import ecstep as E
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
"""

_END = r"""import json
print("RESULT " + json.dumps(res))
"""

SCRIPT = _HEAD + _EXTRA + _SEAL + _HANDSHAKE + _END
SEAL_SCRIPT = _HEAD + _SEAL + _END


def measure(image: Path | None = None, seal_only: bool = False) -> dict:
    from host_tools.sil.qemu import QemuMachine, ensure_image
    img = image or ensure_image("QEMU_M3", "test")
    m = QemuMachine(image=img)
    try:
        m.raw_repl()
        out, err = m.raw_exec(SEAL_SCRIPT if seal_only else SCRIPT, timeout=900)
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
        if isinstance(v, str):
            rows.append("| %s | %s | |" % (k, v))
            continue
        ms = v * US_PER_KINSTR / 1000.0
        rows.append("| %s | %s | %s |" % (k, format(v, ","),
                                          ("%.2f ms" % ms) if ms < 1000 else ("%.2f s" % (ms / 1000))))
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.secbench")
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seal", action="store_true",
                    help="only the platform link's record layer (ciphers, seal units and steps)")
    a = ap.parse_args(argv)
    res = measure(a.image, a.seal)
    print(json.dumps(res, indent=1) if a.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
