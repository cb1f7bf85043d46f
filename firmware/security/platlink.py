"""The platform link's entry at boot (issue 13, C-2).

``charger.py`` calls ``install`` when ``security.settings.link_configured``
says the site has a link.  This module is kept small on purpose: the link
itself (security/linkservice.py ``PlatformLink``, the record layer, their
buffers, the console commands; ~5 KB of heap) is imported and built by the
link task's first four runs, from 45 ms after boot, not here.  The scheduler builds
its table right after ``install``, and on a PYBv1.1 heap (the QEMU target)
that build failed with MemoryError when the link had been imported and
built first (docs/security.md, "C-2 in service")."""


import gc
from micropython import const

# stages IDLE, CONNECTED, LOCKING, HANDSHAKE (CHM/BHM: the aux supply at
# most) and DONE: the main output cannot be on (gbt/stages.py)
_OUTPUT_OFF = const(0x200F)


def _idle(now):
    pass


def install(app):
    """Put the platform link into service in ``app`` (charger.ChargerApp):
    its two tasks (``link``, ``seal``), the telemetry sink and
    (``sec.vin_auth``) the VIN gate; the ``PlatformLink`` is built by the
    link task's first four runs.  Until then telemetry is what the policy allows
    before a handshake (held under require, plain under prefer) and the VIN
    gate refuses.  Returns None; ``app.platlink`` is set when the link is
    built."""
    cfg = app.cfg
    pm = cfg["sched.protect_ms"]
    tel = app.tel
    out = tel._w                       # the board's telemetry channel
    require = cfg["sec.policy"] == "require"
    cell = []                           # the PlatformLink, once built
    early = [0]                         # records before it: held / plain

    def before(mv):
        early[0] += 1
        if not require:
            out(mv)
    tel._w = before

    # The link is built over the link task's first four runs, one piece a
    # run: each is a pass of its own (outputs off, from 45 ms after boot), and
    # in one run they were ~3 Mkinstr (~45 ms of an F405): the record
    # layer and batch queue imported; the link service and its builder
    # imported and the key file checked; a collection (else the next run's
    # allocations start one); the link built and wired to the telemetry
    # and the console.  Its first task run (a handshake's start) is the run
    # after that.
    # Only in stages where the main output cannot be on (up to the BMS
    # handshake, and done): a charger that boots with a vehicle plugged in
    # builds its link in the ~150 ms before the insulation test, or else
    # after that session.
    state = [0, False]
    session = app.session

    def boot(now):
        if not (_OUTPUT_OFF >> session.stage) & 1:
            return
        try:
            s = state[0]
            if s == 0:
                import security.linkqueue       # (and security.linkrec)
            elif s == 1:
                from security.linkbuild import have_keys    # (and security.linkservice)
                state[1] = have_keys(app)
            elif s == 2:
                gc.collect()        # the imports' garbage: not in the next run's allocations
            else:
                link = _build(app, out, state[1])
                if require:
                    link.held += early[0]
                else:
                    link.plain_sent += early[0]
                cell.append(link)
                app.platlink = link
                t_link.fn = link.task
                t_seal.fn = link.seal_task
                return
            state[0] = s + 1
        except Exception:
            return                      # next run (a broken link never fails the charger safe)
    t_link = app.sched.add("link", boot, cfg["sec.link_ms"], 9 * pm)
    # the steps of a seal: every protection-grid pass at the default 5 ms
    # (the records task's pass is skipped, see seal_task)
    t_seal = app.sched.add("seal", _idle, cfg["sec.seal_ms"], pm % cfg["sec.seal_ms"])
    if cfg["sec.vin_auth"]:
        check = app.session.vin_check

        def vin_gate(vin):
            ok, why = check(vin)
            if ok and not (cell and cell[0].pvin_check(vin.encode())):
                app.event("refused", "VIN %s: not authorised by the platform" % vin)
                return False, "VIN not authorised by the platform"
            return ok, why
        app.session.vin_check = vin_gate
    # The scheduler builds its table next (~10 KB of short-lived lists and
    # dicts, blocks up to 4 KB): collect the boot's garbage first (no task
    # runs yet).  Without it the build failed with MemoryError on the QEMU
    # target's PYBv1.1 heap whenever the link was configured.
    gc.collect()
    return None


def _build(app, out, have):
    """The ``PlatformLink`` built and wired (a seam: the target benchmark
    installs session keys here, host_tools/benchlib/target.py)."""
    from security.linkbuild import build, wire
    link = build(app, out, have)
    wire(app, link)
    return link


