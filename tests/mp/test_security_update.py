"""Issue 13, C-3 (signed update, A/B, rollback) and the SM3/SM2 known
answers on the board's own code (vectors from gmssl: tests/mp/secvectors.py).

A forged or tampered bundle is refused and the old firmware still boots;
a pending firmware that never confirms is rolled back; an old signed
bundle cannot be installed again (downgrade / replay)."""
import os
import mptest
from mptest import eq, true
from apprig import tmpdir
import secvectors as V
from security.sm3 import sm3, SM3
from security import sm2
from security import update as U


def test_c3_sm3_known_answers():
    for m, d in V.SM3:
        eq(sm3(m), d, "SM3 of %d bytes" % len(m))
    h = SM3()
    for k in range(0, 200, 7):
        h.update(bytes(range(200))[k:k + 7])
    eq(h.digest(), V.SM3[3][1], "SM3 fed in pieces")


def test_c3_sm2_verify_known_answer_and_rejections():
    true(sm2.verify(V.PUB, V.MSG, V.SIG), "gmssl's signature verifies")
    true(not sm2.verify(V.PUB, V.MSG + b"x", V.SIG), "other message")
    true(not sm2.verify(V.PUB2, V.MSG, V.SIG), "other key")
    bad = bytearray(V.SIG)
    bad[5] ^= 1
    true(not sm2.verify(V.PUB, V.MSG, bytes(bad)), "tampered signature")
    true(not sm2.verify(V.PUB, V.MSG, bytes(64)), "zero signature")
    true(not sm2.verify(bytes(64), V.MSG, V.SIG), "point not on the curve")


def _root(name):
    d = tmpdir("upd_" + name)
    for s in ("slot_a", "slot_b"):
        try:
            U._clear(d + "/" + s)
        except OSError:
            pass
    return d


def _bundle(d, data, name="b.evu"):
    p = d + "/" + name
    with open(p, "wb") as f:
        f.write(data)
    return p


def test_c3_signed_bundle_installs_pending_then_confirmed():
    d = _root("good")
    eq(U.select(d), ("", False), "fresh board: the image's own firmware")
    eq(U.install(_bundle(d, V.GOOD), V.PUB, d), 2, "installed version 2")
    eq(U.state(d)["pending"], "b", "slot b pending")
    with open(d + "/slot_b/main.mpy", "rb") as f:
        true(f.read().startswith(b"M\x06print('v2')"), "file written")
    true(os.stat(d + "/slot_b/gbt/x.mpy")[6] == 768, "package file")
    eq(U.select(d), (d + "/slot_b", True), "boot 1: trial of slot b")
    true(U.confirm(d), "confirmed")
    eq(U.select(d), (d + "/slot_b", False), "slot b is the firmware now")
    eq(U.state(d)["version"], 2, "version")


def test_c3_forged_and_tampered_bundles_refused_old_firmware_still_boots():
    d = _root("bad")
    U.install(_bundle(d, V.GOOD), V.PUB, d)
    U.select(d)
    U.confirm(d)                                   # version 2 running in slot b
    before = U.state(d)
    for what, data in (("forged", V.FORGED), ("tampered file", V.TAMPERED),
                       ("tampered manifest", V.MAN_TAMPERED), ("truncated", V.NEWER[:-1]),
                       ("not a bundle", b"MZ" + bytes(100))):
        try:
            U.install(_bundle(d, data), V.PUB, d)
            true(False, "%s installed" % what)
        except U.UpdateError as e:
            true(str(e), what)
        eq(U.state(d), before, "%s: slots unchanged" % what)
        eq(U.select(d), (d + "/slot_b", False), "%s: the old firmware still boots" % what)
    try:
        U.install(_bundle(d, V.OLD), V.PUB, d)
        true(False, "downgrade installed")
    except U.UpdateError as e:
        true("downgrade" in str(e), str(e))
    try:
        U.install(_bundle(d, V.GOOD), V.PUB, d)
        true(False, "replay installed")
    except U.UpdateError as e:
        true("replay" in str(e), str(e))


def test_c3_failed_boot_rolls_back():
    d = _root("rollback")
    U.install(_bundle(d, V.GOOD), V.PUB, d)
    U.select(d)
    U.confirm(d)                                   # v2 in slot b
    eq(U.install(_bundle(d, V.NEWER), V.PUB, d), 3, "v3 into slot a")
    eq(U.select(d), (d + "/slot_a", True), "trial boot (v3 crashed before confirming)")
    eq(U.select(d), (d + "/slot_b", False), "rolled back to v2")
    st = U.state(d)
    eq((st["active"], st["pending"], st["version"], st["rolled_back"]), ("b", "", 2, 3), "state")
    true(not U.confirm(d), "nothing to confirm after the rollback")


mptest.main(globals())
