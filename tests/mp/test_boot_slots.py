"""Issue 13, C-3 through the real boot sequence (firmware/bootseq.py), as a
field engineer sees it: which firmware version runs after each reboot.

The app of every bundle is ``evapp`` (tests/gen_secvectors.py): ``main``
enters its loop (``board.idle``) and returns its VERSION, or raises at
start (APP_V3_CRASH).  The image's own ``evapp`` does not exist, so a boot
without a valid slot (factory fallback) fails to import it: ``_boot``
returns "image" then.  Runs on unix micropython and on the QEMU image."""
import os
import sys
import time
import mptest
from mptest import eq, true
from apprig import tmpdir
import secvectors as V
from security import update as U
import bootseq


class Board:
    def __init__(self):
        self.safe = 0
        self.looped = 0

    def idle(self, until):
        self.looped += 1

    def force_safe(self):
        self.safe += 1


def _root(name):
    d = tmpdir("boot_" + name)
    for s in ("slot_a", "slot_b"):
        try:
            U._clear(d + "/" + s)
            os.rmdir(d + "/" + s)
        except OSError:
            pass
    return d


def _bundle(d, data):
    p = d + "/in.evu"
    with open(p, "wb") as f:
        f.write(data)
    return p


def _boot(d):
    """One power-up: the version the board runs, "image" (no slot), or the
    exception the app raised; the outputs must be safe afterwards."""
    sys.modules.pop("evapp", None)
    sys.path[:] = [p for p in sys.path if "/slot_" not in p]
    b = Board()

    def start(board):
        try:
            import evapp
        except ImportError:
            return "image"
        return evapp.main(board)
    try:
        got = bootseq.run(lambda: b, start, lambda board: board.force_safe(), d)
    except RuntimeError as e:
        got = "crash: %s" % e
    eq(b.safe, 1, "outputs made safe when the app ended")
    return got


def _install(d, data):
    return U.install(_bundle(d, data), V.PUB, d)


def test_good_bundle_next_boot_runs_new_version_and_stays():
    d = _root("good")
    eq(_boot(d), "image", "factory: the image's firmware")
    eq(_install(d, V.APP_V2), 2, "installed")
    eq(_boot(d), 2, "next boot runs version 2 (trial)")
    eq(U.state(d)["pending"], "", "the healthy trial confirmed itself")
    eq(_boot(d), 2, "and keeps running it")
    eq(_install(d, V.APP_V4), 4, "v4 into the other slot")
    eq(_boot(d), 4, "v4 runs")
    eq(_boot(d), 4, "v4 stays")
    eq(U.state(d)["active"], "a", "v4 is in slot a")


def test_forged_tampered_older_refused_old_firmware_boots():
    d = _root("refuse")
    _install(d, V.APP_V4)
    eq(_boot(d), 4, "v4 running")
    before = U.state(d)
    for what, data, why in (("forged (wrong key)", V.APP_V5_FORGED, "signature"),
                            ("tampered file", V.TAMPERED, "hash"),
                            ("older version", V.APP_V2, "downgrade")):
        try:
            _install(d, data)
            true(False, "%s installed" % what)
        except U.UpdateError as e:
            true(why in str(e), "%s: %s" % (what, e))
        eq(U.state(d), before, what + ": slots unchanged")
        eq(_boot(d), 4, what + ": v4 still boots")


def test_app_raising_at_start_rolls_back_on_next_boot():
    d = _root("crash")
    _install(d, V.APP_V2)
    eq(_boot(d), 2, "v2 running")
    _install(d, V.APP_V3_CRASH)
    eq(_boot(d), "crash: v3 broken", "the trial of v3 raises at start")
    eq(_boot(d), 2, "next boot: rolled back to v2")
    st = U.state(d)
    eq((st["version"], st["pending"], st["rolled_back"]), (2, "", 3), "state after rollback")
    eq(_boot(d), 2, "v2 stays")


def test_reset_during_trial_rolls_back():
    d = _root("reset")
    _install(d, V.APP_V2)
    eq(_boot(d), 2, "v2 running")
    _install(d, V.APP_V4)
    eq(bootseq.enter(d), (d + "/slot_a", True), "v4 trial starts ... power cut, no confirm")
    eq(_boot(d), 2, "next boot: back on v2")


def test_power_loss_during_install_leaves_old_slot_bootable():
    d = _root("power")
    _install(d, V.APP_V2)
    eq(_boot(d), 2, "v2 running (slot b)")
    real = U._save

    def cut(root, st):
        raise OSError(5)           # power lost: slot a written, state never saved
    U._save = cut
    try:
        _install(d, V.APP_V4)
        true(False, "install survived the power cut")
    except OSError:
        pass
    finally:
        U._save = real
    with open(d + "/slot_a/evapp.py", "wb") as f:
        f.write(b"VERSION = 9\ndef main(b")     # and a half-written file on top
    eq(_boot(d), 2, "v2 still boots")
    eq(_install(d, V.APP_V4), 4, "the install can be repeated")
    eq(_boot(d), 4, "then v4 runs")


def test_no_valid_slot_falls_back_to_the_image():
    d = _root("factory")
    _install(d, V.APP_V2)
    eq(_boot(d), 2, "v2 running")
    U._clear(d + "/slot_b")                     # the slot's files lost
    eq(_boot(d), "image", "the image's firmware boots")


def test_engineer_install_command_with_key_file():
    d = _root("cmd")
    import binascii
    with open(d + "/keys.json", "w") as f:
        f.write('{"update_pub": "%s"}' % binascii.hexlify(V.PUB).decode())
    _bundle(d, V.APP_V5_FORGED)
    eq(bootseq.install(d + "/in.evu", d + "/keys.json", d), 0, "forged bundle refused")
    eq(bootseq.install(d + "/in.evu", d + "/nokeys.json", d), 0, "no key provisioned: refused")
    _bundle(d, V.APP_V2)
    eq(bootseq.install(d + "/in.evu", d + "/keys.json", d), 2, "good bundle installed")
    eq(_boot(d), 2, "reset: v2 runs")


class _Session:
    stage = 0


class _Log:
    def __init__(self):
        self.recs = []

    def log(self, t, code, a=0, b=0, text=None, sync=True):
        self.recs.append((t, code, a, b, text))


class _App:
    """What bootseq needs of a running charger.ChargerApp."""

    def __init__(self):
        self.session = _Session()
        self.log = _Log()
        self.console = None

    def rtc_s(self):
        return 1234

    def updates(self):
        return [r[2:] for r in self.log.recs if r[1] == bootseq.EV_UPDATE]


def _keys(d):
    import binascii
    with open(d + "/keys.json", "w") as f:
        f.write('{"update_pub": "%s"}' % binascii.hexlify(V.PUB).decode())
    return d + "/keys.json"


def test_c3_install_refused_while_a_vehicle_is_connected_and_logged():
    from gbt.stages import CONNECTED, CHARGING, DONE
    d = _root("busy")
    app = _App()
    # boot steps of earlier cases in this process (no app was attached to
    # take them) are queued; this case counts only its own records
    del bootseq.EVENTS[:]
    bootseq.attach(app)
    try:
        _bundle(d, V.APP_V2)
        before = U.state(d)
        for st in (CONNECTED, CHARGING, DONE):
            app.session.stage = st
            eq(bootseq.install(d + "/in.evu", _keys(d), d), 0, "refused in stage %d" % st)
            eq(U.state(d), before, "slots unchanged")
        eq(app.updates(), [(bootseq.UP_BUSY, st, "console") for st in (CONNECTED, CHARGING, DONE)],
           "each refusal logged: what (busy, stage), who")
        eq(app.log.recs[0][0], 1234, "when: the record's time")
        app.session.stage = 0
        eq(bootseq.install(d + "/in.evu", _keys(d), d), 2, "unplugged: installed")
        _bundle(d, V.APP_V5_FORGED)
        eq(bootseq.install(d + "/in.evu", _keys(d), d), 0, "forged: refused")
        eq(app.updates()[3:], [(bootseq.UP_INSTALLED, 2, "console"), (bootseq.UP_REFUSED, 0, "console")],
           "install and refusal logged")
    finally:
        bootseq.APP = None


def test_c3_rollback_and_confirm_go_to_the_event_log():
    d = _root("evlog")
    bootseq.APP = None
    _install(d, V.APP_V2)
    eq(_boot(d), 2, "v2 on trial, confirmed by its loop")
    eq(bootseq.EVENTS, [(bootseq.UP_CONFIRMED, 2, "boot")], "confirm queued (no app attached)")
    _install(d, V.APP_V3_CRASH)
    del bootseq.EVENTS[:]
    eq(_boot(d), "crash: v3 broken", "v3's trial raises")
    eq(bootseq.EVENTS, [(bootseq.UP_ROLLED_BACK, 3, "failed")], "the at-once roll-back queued")
    _install(d, V.APP_V4)
    del bootseq.EVENTS[:]
    sys.path[:] = [p for p in sys.path if "/slot_" not in p]
    bootseq.enter(d)                        # v4's trial: the board resets during it
    sys.path[:] = [p for p in sys.path if "/slot_" not in p]
    del bootseq.EVENTS[:]
    bootseq.enter(d)                        # ... next boot rolls it back
    eq(bootseq.EVENTS, [(bootseq.UP_ROLLED_BACK, 4, "boot")], "rolled back at the selection")
    app = _App()
    bootseq.attach(app)
    try:
        eq(app.updates(), [(bootseq.UP_ROLLED_BACK, 4, "boot")], "written once the app is up")
        eq(bootseq.EVENTS, [], "queue emptied")
    finally:
        bootseq.APP = None


def test_slot_selection_cost():
    """Not an assert on time: prints the boot-time cost of the selection
    (ticks_us; on the QEMU image under icount, 1 tick = 1 kinstr)."""
    d = _root("cost")
    _install(d, V.APP_V2)
    _boot(d)
    sys.path[:] = [p for p in sys.path if "/slot_" not in p]
    t0 = time.ticks_us()
    slot, trial = bootseq.enter(d)
    dt = time.ticks_diff(time.ticks_us(), t0)
    eq((slot, trial), (d + "/slot_b", False), "confirmed slot")
    print("COST select_confirmed_us %d" % dt)
    _install(d, V.APP_V4)
    sys.path[:] = [p for p in sys.path if "/slot_" not in p]
    t0 = time.ticks_us()
    slot, trial = bootseq.enter(d)
    dt = time.ticks_diff(time.ticks_us(), t0)
    eq(trial, True, "trial")
    print("COST select_trial_us %d" % dt)
    t0 = time.ticks_us()
    bootseq.healthy(d)
    print("COST confirm_us %d" % time.ticks_diff(time.ticks_us(), t0))


mptest.main(globals())
