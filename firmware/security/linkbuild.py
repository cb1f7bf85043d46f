"""Building the platform link into the app (issue 13, C-2): the
``PlatformLink`` with its key check, handshake factory, event-log notes and
platform stop, the sealing task's statistics hook, the telemetry channel
taken over, and the console's ``link``/``pstop``/``pvin``/``platlink``
commands.  Called by the link task's fourth run
(security/platlink.py ``install``)."""
from security import linkrec as L
from security.linkservice import (PlatformLink, EV_INTRUSION, EV_OPERATOR, OP_STOP,
                                  IXL_NOKEYS, T_VIN)


def _path(app):
    return getattr(app.board, "keys_path", None) or "keys.json"


def have_keys(app):
    """Does the key file hold the link key of ``sec.suite``?  (Its name in
    the file's text: parsing the JSON cost ~0.55 Mkinstr of a boot pass;
    the handshake parses and checks the keys themselves when it loads
    them, ``handshake.load_keys``.)"""
    try:
        with open(_path(app)) as f:
            return ('"link_priv"' if app.cfg["sec.suite"] == "sm" else '"link_psk"') in f.read()
    except Exception:
        return False


def build(app, out, have=None):
    """The ``PlatformLink`` in service in ``app``, ``out`` the board's
    telemetry channel (security/platlink.py ``install``: a run of the link
    task after the imports; ``have``: ``have_keys`` when not given);
    ``wire`` (the next run) gives it the telemetry and the console."""
    cfg = app.cfg
    path = _path(app)
    suite = cfg["sec.suite"]
    if have is None:
        have = have_keys(app)
    cid = cfg["charger.id"]
    clock = app.clock
    log = app.log
    keys = []

    def make():
        # The handshake's code (~1.7 KB of heap with SM2) and the keys are
        # loaded by the first handshake, not while the link is being built.
        from security import handshake as H
        from security.rng import random_bytes
        if not keys:
            keys.append(H.load_keys(path))
        return H.ChargerHandshake(suite, cid, keys[0], random_bytes, cfg["sec.hs_reply_s"] * 1000,
                                  cfg["sec.hs_stage_s"] * 1000, clock.ticks_ms())

    def note(code, a, b):
        log.log(app.rtc_s(), code, a, b)
        if code == EV_INTRUSION:
            app.event("intrusion", "platform link 0x%x %d" % (a, b))

    def stop():
        app.session.operator_stop()
        log.log(app.rtc_s(), EV_OPERATOR, OP_STOP, 1, "platform")
        app.event("platform", "stop")

    link = PlatformLink(cfg["sec.policy"], make if have else None, stop, note)
    if not have:
        note(EV_INTRUSION, IXL_NOKEYS, 0)
    sched = app.sched
    runs = None
    for t in sched.tasks:
        if t.name == "records":
            # the run count in the scheduler's statistics (read each sealing
            # run: the Task attribute is a Python __getattr__, ~4 kinstr)
            from rt.scheduler import _TFIELDS
            runs = (sched._T, t._i * (len(sched._T) // len(sched.tasks)) + _TFIELDS.index("runs"))
    seal = None
    for t in sched.tasks:
        if t.name == "seal":
            seal = t
    link.serve(out, clock.ticks_ms, lambda: app.session.stage, cfg, runs,
               None if seal is None else (lambda on: sched.park(seal, on)))
    return link


def wire(app, link):
    """The telemetry sink and the console's commands of ``link``."""
    app.tel._w = link.record
    con = app.console
    if con is not None:
        w = con.out.write

        def cmd_link(h):
            w(console_link(link, h) + "\n")

        def cmd_pstop():
            if link.plain_command():
                link._stop()
                w("stop requested (plain platform stop)\n")
            else:
                w("refused: sec.policy require: sealed stop only\n")

        def cmd_pvin(v):
            w(("VIN %s authorised (plain)" % v if link.plain_vin(v.encode()) else
               "refused: sec.policy require: sealed authorisation only") + "\n")

        def cmd_status():
            w(status(link) + "\n")
        con.add("link", cmd_link)
        con.add("pstop", cmd_pstop)
        con.add("pvin", cmd_pvin)
        con.add("platlink", cmd_status)
    return link


def console_link(link, hexframe):
    """Console ``link("<hex>")``: a frame from the platform (the TCU
    passes it on).  A REPLY goes to the handshake, a sealed command is
    opened and obeyed here (the answer says so at once); its sealed result
    follows on the telemetry channel, sealed in steps by the sealing task
    after the telemetry batch being sealed.  Refusals are logged as
    intrusion events."""
    from binascii import unhexlify
    try:
        frame = unhexlify(hexframe)
    except Exception:
        frame = b""
    if frame[:4] == b"EVR1":
        if link.hs is None:
            return "no handshake waiting: REPLY ignored"
        link.reply(frame, link._ticks())
        if link.hs is None:
            return "REPLY refused: %s" % link.reason
        return "REPLY taken"
    res = link.command(frame)
    if res is None:
        return "refused (%s)" % (link.records.last_reject if link.records else "no link")
    if res:
        link._send(0, res)              # (not in service: sealed at once)
    t = link.last_type
    return "accepted: %s" % ("stop" if t == L.T_STOP else "VIN authorisation" if t == T_VIN
                             else "unknown command")


def status(link):
    """Console ``platlink()``: the link's state and counters."""
    hs = link.hs
    st = "sealed" if link.sealed else ("handshake " + hs.stage if hs else "not sealed")
    r = link.records.rejected if link.records else {}
    return ("platform link: policy %s, %s\n"
            "telemetry: frames sealed %d, records plain %d, held %d, dropped %d\n"
            "platform commands: stops %d, VIN authorisations %d, refused %d\n"
            "refused sealed frames: short %d, tag %d, replay %d\n"
            "handshakes finished %d, failures %d%s" % (
                link.policy, st, link.sealed_frames, link.plain_sent, link.held,
                link.dropped, link.stops, link.vin_auths, link.refused,
                r.get("short", 0), r.get("tag", 0), r.get("replay", 0),
                link.keyed, link.failures, (" (last: %s)" % link.reason) if link.reason else ""))
