"""The boot sequence every board runs (issue 13, C-3): slot, trial, app.
(Not named ``boot``: that is the board's own /boot.py on stm32/esp32.)

``run(build, start, fail_safe)`` is the whole of a board's ``main.py``:

1. ``security.update.select`` picks the firmware to run: the confirmed slot,
   or the freshly installed one for one trial boot; the image's own
   (frozen) modules when no slot holds a valid firmware (factory fallback).
   The chosen slot directory goes first on ``sys.path``, so the app's
   modules (``charger`` and everything it imports) come from the slot.
   This module, ``security.update`` and ``config`` (its parser) are the
   boot loader: they always come from the image, a bundle cannot replace
   them (``config`` is dropped from ``sys.modules`` after the selection so
   the app gets the slot's copy when the slot ships one).
2. ``build()`` makes the board, ``start(board)`` runs the app forever.
3. The app is healthy once its main loop is running: the first call of the
   board's ``run`` (SIL/QEMU boards) or ``idle`` (the default loop of
   ``charger.main``) after the app was built.  A trial boot is confirmed
   there (``security.update.confirm``: the slot becomes the firmware).
4. An exception before that, on a trial boot, rolls the slot back at once
   (``security.update.fail``); a reset or power cut during the trial is
   rolled back by ``select`` at the next boot.  Whatever ends the app, the
   outputs are made safe first (``fail_safe``, H-9) and the exception then
   propagates (to the REPL; the watchdog resets a running board).
"""
import sys

UPDATE_ROOT = "update"      # on the board's flash: slots.json, slot_a/, slot_b/

# Event log (diag.eventlog.EV_UPDATE, a = action): who/when/what of every
# update step.  Steps taken before the app exists (the slot selection's
# roll-back) wait in EVENTS until the app attaches itself (``attach``).
EV_UPDATE = 19
UP_INSTALLED = 1            # b: version; text: who (the console role)
UP_REFUSED = 2              # b: 0; text: who (the console prints the reason)
UP_ROLLED_BACK = 3          # b: the version that never confirmed; text: "boot"/"failed"
UP_CONFIRMED = 4            # b: version; text: "boot"
UP_BUSY = 5                 # refused: a vehicle connected / a session runs; b: stage
APP = None                  # the running charger.ChargerApp (``attach``)
EVENTS = []

SLOT = ""                   # the slot directory running now ("" = the image)
TRIAL = False               # this boot is the trial of a new slot
HEALTHY = False


def enter(root=UPDATE_ROOT):
    """Select the slot and put it first on sys.path; returns (slot, trial)."""
    global SLOT, TRIAL, HEALTHY
    had = "security.update" in sys.modules
    from security import update
    slot, trial = update.select(root)
    if update.LAST_ROLLBACK:
        note(UP_ROLLED_BACK, update.LAST_ROLLBACK, "boot")
        update.LAST_ROLLBACK = 0
    if not had:
        _forget("security.update")     # a boot loader, not kept in RAM
    SLOT, TRIAL, HEALTHY = slot, trial, not trial
    if slot:
        if slot not in sys.path:
            sys.path.insert(0, slot)
        if "config" in sys.modules:
            del sys.modules["config"]
    return slot, trial


def attach(app):
    """The app is built: the update's refusal while a vehicle is connected
    needs its session, and the event log takes the boot's update steps."""
    global APP
    APP = app
    q = EVENTS[:]
    del EVENTS[:]
    for e in q:
        note(*e)


def note(action, version, who):
    """One EV_UPDATE record (queued until the app is attached)."""
    app = APP
    if app is None:
        EVENTS.append((action, version, who))
        return
    try:
        app.log.log(app.rtc_s(), EV_UPDATE, action, version, who)
    except Exception:
        pass


def _who(app):
    # the console role that asked (C-1), "console" when roles are off
    try:
        from security.roles import ROLE_NAMES
        return ROLE_NAMES[app.console.gate.auth.role()]
    except Exception:
        return "console"


def _forget(name):
    # drop a module imported only for the boot: its globals and functions
    # (~1.5 KB of heap) would otherwise stay for the life of the app; a
    # later ``import`` (confirm, install) loads it again
    try:
        del sys.modules[name]
        pkg, _, sub = name.rpartition(".")
        if pkg in sys.modules:
            delattr(sys.modules[pkg], sub)
    except (KeyError, AttributeError, TypeError):
        pass


def healthy(root=UPDATE_ROOT):
    """The app runs: confirm a trial boot (idempotent, cheap after the first)."""
    global HEALTHY
    if HEALTHY:
        return
    HEALTHY = True
    if TRIAL:
        from security import update
        st = update.state(root)
        if update.confirm(root):
            note(UP_CONFIRMED, st.get("pversion", 0), "boot")


def install(path, key_path="keys.json", root=UPDATE_ROOT, app=None):
    """The field engineer's update (maintainer console, as Python)::

        import bootseq; bootseq.install("fw.evu")

    Refused while a vehicle is connected or a session runs (the session of
    the attached app, or ``app``, is not idle): the check (SM2 + SM3, ~1.1 s
    on an F405) blocks the control loop.  Otherwise verifies the bundle and
    writes it into the inactive slot; the next reset runs it on trial.
    Prints the outcome; returns the version, or 0 when refused.  Every
    outcome is an EV_UPDATE record (who: the console role)."""
    app = app or APP
    who = _who(app) if app is not None else "console"
    st = _stage(app)
    if st:
        print("update REFUSED: a vehicle is connected (stage %s): unplug it first "
              "(the running firmware stays)" % _stage_name(st))
        note(UP_BUSY, st, who)
        return 0
    from security import update
    try:
        v = update.install(path, update.load_pub(key_path), root)
    except (update.UpdateError, OSError) as e:
        print("update REFUSED: %s (the running firmware stays)" % e)
        note(UP_REFUSED, 0, who)
        return 0
    print("update version %d installed: reset (machine.reset()) to run it" % v)
    note(UP_INSTALLED, v, who)
    return v


def _stage(app):
    # 0 (IDLE: nothing plugged) or the session's stage; a session that
    # cannot be read counts as running
    if app is None:
        return 0
    try:
        return app.session.stage
    except Exception:
        return -1


def _stage_name(st):
    if st < 0:
        return "unknown"
    try:
        from gbt.stages import STAGE_NAMES
        return STAGE_NAMES[st]
    except Exception:
        return str(st)


def _first_call(board, name, fn, root):
    # One fixed argument (``run(app)``, ``idle(until_ms)``): no tuple per
    # call.  ``charger.main``'s default loop keeps the bound ``idle`` it read
    # once, so on a trial boot this wrapper stays in the loop until the next
    # reset: one extra call per idle, in idle time, allocation-free.
    def first(x):
        if not HEALTHY:
            setattr(board, name, fn)     # callers that look it up again skip us
            healthy(root)
        return fn(x)
    return first


def _watch(board, root):
    """Report healthy on the first call of the board's loop entry point."""
    for name in ("run", "idle"):
        fn = getattr(board, name, None)
        if fn is None:
            continue
        try:
            setattr(board, name, _first_call(board, name, fn, root))
        except (AttributeError, TypeError):
            healthy(root)          # cannot watch (a native object): trust the build
        return


def run(build, start, fail_safe, root=UPDATE_ROOT):
    """Boot: select the slot, build the board, run the app; see the module doc."""
    board = None
    try:
        try:
            enter(root)
        except Exception as e:     # the slot store unreadable: the image still charges
            print("boot: slot selection failed (%r), running the image" % (e,))
        board = build()
        if TRIAL:
            _watch(board, root)
        return start(board)
    except Exception:
        if TRIAL and not HEALTHY:
            from security import update
            st = update.state(root)
            if update.fail(root):
                note(UP_ROLLED_BACK, st.get("pversion", 0), "failed")
        raise
    finally:
        fail_safe(board)


def boot(build, fail_safe, config_path):
    """A pin board's ``/main.py`` (boards/stm32, boards/esp32): ``run`` with
    the board built from ``config_path`` (``build(config_path)``) and the
    charger started on it with the field console."""
    run(lambda: build(config_path), lambda b: _charger(b, config_path), fail_safe)


def _charger(board, config_path):
    import charger               # from the selected slot (enter)
    # console=True: the field engineer's mpremote reaches the running
    # charger on the REPL port (Ctrl-C no longer interrupts main.py).
    charger.main(board, config_path, console=True)


# ---- fail safe shared by the boards with real pins ---------------------------
def pins_off(load_pins):
    """Power stage, K1/K2, K3/K4 off using only ``machine`` and the pin map
    (``load_pins()`` returns the board's pins module).  Never raises."""
    try:
        import machine
        pins = load_pins()
    except Exception:
        return
    for name in ("pwr_en", "k12", "k34"):
        for e in pins.OUTPUTS:
            if e[0] == name:
                try:
                    machine.Pin(e[1], machine.Pin.OUT, value=0 if e[2] else 1)
                except Exception:
                    pass


def make_safe(board, load_pins):
    """Outputs safe, whatever state the firmware is in: the board's own
    ``force_safe``, or straight from the pin map when there is no board
    object (it could not be built).  Never raises."""
    try:
        if board is not None:
            board.force_safe()
            return
    except Exception:
        pass
    pins_off(load_pins)
