"""The charger's end of the platform link under the site policy (issue 13,
C-2): what telemetry may leave plain, which platform commands are obeyed.

``sec.policy``:
  off      plain link as before: telemetry goes out as records, no handshake.
  prefer   handshake when asked; while a sealed link is up, telemetry is
           sealed; otherwise it goes out plain (counted in ``plain_sent``,
           and a failed handshake is logged).
  require  no plain link: until the handshake has succeeded telemetry is
           held (counted in ``held``, not sent) and a platform command that
           is not sealed is refused.
The vehicle side is never involved: plain GB/T 27930 vehicles charge under
every policy.  A sealed frame that does not open (forged, replayed,
reordered, tampered, truncated) is refused and logged as an intrusion event
(``EV_INTRUSION``, kind ``IXL_*``, argument: the charger's refusal count);
a sealed stop that opens stops the session through ``stop`` (the same call
as the console's ``stop()``) and is answered with a sealed result.

In service (``install``, called by the app when the site has a link
configured): telemetry records are collected into batches and sealed by
the link's own task (a low-priority slot, ``sec.link_ms``), never in the
records pass; the handshake runs in the same task, ``sec.hs_steps`` steps
a slot and only with no session in progress (its steps are longer than a
control pass).  What leaves for the platform goes on the telemetry channel
in a link envelope (``LINK_MAGIC``, record count, frame) that a telemetry
reader tells from a record by its first byte; what the platform sends
comes in through the console commands ``link("<hex>")`` (a REPLY or a
sealed command: the frame authenticates itself, so a viewer may pass it
on), ``pstop()`` (a plain platform stop) and ``pvin("<VIN>")`` (a plain
VIN authorisation), which the policy may refuse (docs/security.md)."""
import micropython
from micropython import const
from security import linkrec as L
from rt.clock import ticks_diff, ticks_add

IXL_SHORT = const(0x21)       # sealed frame truncated / wrong length
IXL_TAG = const(0x22)         # sealed frame forged or tampered
IXL_REPLAY = const(0x23)      # sealed frame replayed or reordered
IXL_PLAIN = const(0x24)       # plain command refused (policy require)
IXL_HANDSHAKE = const(0x25)   # handshake failed (impostor platform, timeout)
_IX_OF = {L.REJECT_SHORT: IXL_SHORT, L.REJECT_TAG: IXL_TAG, L.REJECT_REPLAY: IXL_REPLAY}
IXL_NOKEYS = const(0x26)      # policy require but no link keys: nothing can be sealed
EV_INTRUSION = const(16)      # diag.eventlog.EV_INTRUSION (not imported: heap)
EV_OPERATOR = const(12)       # diag.eventlog.EV_OPERATOR
OP_STOP = const(2)            # diag.eventlog.OP_STOP
T_VIN = const(4)              # sealed record type: VIN authorisation (platform -> charger)
LINK_MAGIC = const(0xEC)      # link envelope on the telemetry channel (records: 0xA5)
# Telemetry batch: at most this many bytes of records in one sealed frame
# (envelope 2 + header 12 + batch + tag 16 <= 251, the SIL packet / UART
# frame limit of one telemetry write)
BATCH_MAX = const(220)
_BUF = const(480)             # records waiting for their batch to be sealed
_SESSION_FREE = const(0x2003)  # stages IDLE, CONNECTED, DONE (as charger._GC_STAGES)


class PlatformLink:
    """``make_handshake()`` -> a new ``handshake.ChargerHandshake``;
    ``stop()`` stops the session; ``log(code, a, b)`` writes the event log."""

    def __init__(self, policy, make_handshake, stop, log):
        if policy not in ("off", "prefer", "require"):
            raise ValueError("sec.policy")
        self.policy = policy
        self._make = make_handshake
        self._stop = stop
        self._log = log
        self.hs = None
        self.records = None
        self.plain_sent = 0
        self.held = 0
        self.refused = 0
        self.stops = 0
        self.vin = None             # the VIN the platform authorised last (bytes)
        self.last_type = 0          # record type of the last sealed command that opened
        self.vin_auths = 0
        self.out = None             # the telemetry channel (install)
        self.sealed_frames = 0
        self.dropped = 0            # records lost: the batch buffer was full
        self.failures = 0           # handshakes that failed
        self.reason = None          # why the last handshake failed
        self._buf = None
        self._n = 0                 # bytes of records waiting
        self._count = 0             # ... how many records
        self._t_first = 0

    @property
    def sealed(self):
        return self.records is not None

    def start(self):
        """Begin a handshake (between sessions); no-op under ``off`` or
        without link keys."""
        if self.policy != "off" and self.hs is None and self._make is not None:
            self.hs = self._make()

    def poll(self, now_ms):
        """One handshake step; the handshake message to send now, or None."""
        hs = self.hs
        if hs is None:
            return None
        if not hs.step(now_ms):
            self.hs = None
            self.failures += 1
            self.reason = hs.reason
            self._log(EV_INTRUSION, IXL_HANDSHAKE, 0)
            return None
        m = hs.take(now_ms)
        if hs.records is not None and hs.outbox is None:
            self.records = hs.records          # FINISH taken: the link is sealed
            self.hs = None
        return m

    def reply(self, msg, now_ms):
        """The platform's handshake REPLY."""
        if self.hs is not None and not self.hs.feed(msg, now_ms):
            self.failures += 1
            self.reason = self.hs.reason
            self.hs = None
            self._log(EV_INTRUSION, IXL_HANDSHAKE, 1)

    def telemetry(self, payload):
        """What to hand the TCU for a batch of records: the sealed frame,
        the plain records, or None (held under ``require``)."""
        if self.records is not None:
            return self.records.seal(L.T_TELEMETRY, payload)
        if self.policy == "require":
            self.held += 1
            return None
        if self.policy == "prefer":
            self.plain_sent += 1
        return payload

    def plain_command(self):
        """A plain (unsealed) platform stop arrived: may it be obeyed?"""
        if self.policy == "require":
            self.refused += 1
            self._log(EV_INTRUSION, IXL_PLAIN, self.refused)
            return False
        return True

    def command(self, frame):
        """A sealed platform command: opens, verifies, obeys; returns the
        sealed result frame, or None when refused."""
        rec = self.records
        if rec is None:
            self.refused += 1
            self._log(EV_INTRUSION, IXL_TAG, self.refused)
            return None
        r = rec.open(frame)
        if r is None:
            self.refused += 1
            self._log(EV_INTRUSION, _IX_OF[rec.last_reject], self.refused)
            return None
        self.last_type = r[0]
        if r[0] == T_VIN:
            self.vin = r[1]
            self.vin_auths += 1
            return rec.seal(L.T_RESULT, b"vin " + r[1])
        if r[0] != L.T_STOP:
            return rec.seal(L.T_RESULT, b"unknown command")
        self.stops += 1
        self._stop()
        return rec.seal(L.T_RESULT, b"stopped")

    # ---- in service (install) ----------------------------------------------
    def pvin_check(self, vin):
        """May a session start with ``vin`` (bytes) as far as the platform's
        authorisation goes (``sec.vin_auth``)?  Under require only a sealed
        authorisation counts (a plain ``pvin`` is refused there)."""
        return self.vin is not None and self.vin == vin

    def plain_vin(self, vin):
        """A plain VIN authorisation (``pvin``): obeyed unless require."""
        if not self.plain_command():
            return False
        self.vin = vin
        self.vin_auths += 1
        return True

    def record(self, mv):
        """The telemetry sink while the link is in service (records pass:
        no allocation, no crypto).  Plain out, held, or queued for sealing."""
        if self.records is None:
            if self.policy == "require":
                self.held += 1
                return
            self.plain_sent += 1
            self.out(mv)
            return
        n = len(mv)
        k = self._n
        if k + n > _BUF:
            self.dropped += 1           # the link task fell behind
            return
        if k == 0:
            self._t_first = self._ticks()
        _copy(self._buf, k, mv, n)
        self._n = k + n
        self._count += 1

    def _send(self, count, frame):
        self.out(bytes((LINK_MAGIC, count)) + frame)

    def _seal_batches(self, force):
        """Seal queued records, whole ones, up to ``BATCH_MAX`` bytes a frame."""
        b = self._buf
        while self._n and (force or self._n >= self.batch_fill):
            j = 0
            c = 0
            while j < self._n and j + b[j + 3] <= BATCH_MAX:
                j += b[j + 3]
                c += 1
            if c == 0:                  # a record too long for a batch (never with Table 1)
                j = b[3]
                c = 1
                self.dropped += 1
            else:
                self._send(c, self.records.seal(L.T_TELEMETRY, memoryview(b)[:j]))
                self.sealed_frames += 1
            rest = self._n - j
            if rest:
                b[0:rest] = b[j:self._n]
            self._n = rest
            self._count -= c
            force = False
            self._t_first = self._ticks()

    def task(self, now):
        """The link's slot: handshake steps (no session in progress only),
        then the telemetry batches due.  Never raises: a broken link must
        not fail the charger safe (H-9 is for the charging path)."""
        try:
            self._task(now)
        except Exception as e:
            self.errors += 1
            self.hs = None
            self.records = None         # back to what the policy allows unsealed
            self._n = self._count = 0
            self.reason = "link error: %s" % e
            self._retry = now
            self._log(EV_INTRUSION, IXL_HANDSHAKE, 3)

    def _task(self, now):
        if self.records is None and self.hs is None and self._make is not None:
            if self._retry is None or ticks_diff(now, self._retry) >= 0:
                self._retry = ticks_add(now, self.retry_ms)
                self._since = now
                self.start()
        hs = self.hs
        if hs is not None and (_SESSION_FREE >> self._stage()) & 1:
            i = self.steps
            while i > 0 and self.hs is not None:
                m = self.poll(now)
                if m is not None:
                    self._send(0, m)
                if self.hs is None or self.hs.stage == "wait":
                    break
                i -= 1
        if self._n and (self._n >= self.batch_fill or
                        ticks_diff(now, self._t_first) >= self.batch_ms):
            self._seal_batches(True)

    def link(self, hexframe):
        """Console ``link("<hex>")``: a frame from the platform (the TCU
        passes it on).  A REPLY goes to the handshake, a sealed command is
        opened and obeyed (answered with a sealed result on the telemetry
        channel); refusals are logged as intrusion events."""
        from binascii import unhexlify
        try:
            frame = unhexlify(hexframe)
        except Exception:
            frame = b""
        if frame[:4] == b"EVR1":
            if self.hs is None:
                return "no handshake waiting: REPLY ignored"
            self.reply(frame, self._ticks())
            if self.hs is None:
                return "REPLY refused: %s" % self.reason
            return "REPLY taken"
        res = self.command(frame)
        if res is None:
            return "refused (%s)" % (self.records.last_reject if self.records else "no link")
        self._send(0, res)
        t = self.last_type
        return "accepted: %s" % ("stop" if t == L.T_STOP else "VIN authorisation" if t == T_VIN
                                 else "unknown command")

    def status(self):
        """Console ``platlink()``: the link's state and counters."""
        hs = self.hs
        st = "sealed" if self.sealed else ("handshake " + hs.stage if hs else "not sealed")
        r = self.records.rejected if self.records else {}
        return ("platform link: policy %s, %s\n"
                "telemetry: frames sealed %d, records plain %d, held %d, dropped %d\n"
                "platform commands: stops %d, VIN authorisations %d, refused %d\n"
                "refused sealed frames: short %d, tag %d, replay %d\n"
                "handshake failures %d%s" % (
                    self.policy, st, self.sealed_frames, self.plain_sent, self.held,
                    self.dropped, self.stops, self.vin_auths, self.refused,
                    r.get("short", 0), r.get("tag", 0), r.get("replay", 0),
                    self.failures, (" (last: %s)" % self.reason) if self.reason else ""))


@micropython.viper
def _copy(dst: ptr8, o: int, src: ptr8, n: int):
    i = 0
    while i < n:
        dst[o + i] = src[i]
        i += 1


def _keys_path(app):
    return getattr(app.board, "keys_path", None) or "keys.json"


def install(app):
    """Put a ``PlatformLink`` into service in ``app`` (charger.ChargerApp),
    when ``configured``: the link takes the telemetry channel, runs its
    task, adds its console commands and (``sec.vin_auth``) the VIN gate.
    The caller checked ``security.settings.link_configured``."""
    from security import handshake as H
    from security.rng import random_bytes
    cfg = app.cfg
    try:
        keys = H.load_keys(_keys_path(app))
    except Exception:
        keys = {}
    suite = cfg["sec.suite"]
    have = ("sm2_priv" in keys) if suite == "sm" else ("link_psk" in keys)
    cid = cfg["charger.id"]
    clock = app.clock
    log = app.log

    def make():
        return H.ChargerHandshake(suite, cid, keys, random_bytes, cfg["sec.hs_reply_s"] * 1000,
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
    tel = app.tel
    link.out = tel._w                  # the board's telemetry channel
    tel._w = link.record
    link._buf = bytearray(_BUF)
    link._ticks = clock.ticks_ms
    link._stage = lambda: app.session.stage
    link.steps = cfg["sec.hs_steps"]
    link.retry_ms = cfg["sec.hs_retry_s"] * 1000
    link.batch_ms = cfg["sec.batch_ms"]
    link.batch_fill = cfg["sec.batch_fill"]
    link.errors = 0
    link._retry = None
    if cfg["sec.vin_auth"]:
        check = app.session.vin_check

        def vin_gate(vin):
            ok, why = check(vin)
            if ok and not link.pvin_check(vin.encode()):
                app.event("refused", "VIN %s: not authorised by the platform" % vin)
                return False, "VIN not authorised by the platform"
            return ok, why
        app.session.vin_check = vin_gate
    app.sched.add("link", link.task, cfg["sec.link_ms"], 9 * cfg["sched.protect_ms"])
    con = app.console
    if con is not None:
        w = con.out.write

        def cmd_link(h):
            w(link.link(h) + "\n")

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
            w(link.status() + "\n")
        con.add("link", cmd_link)
        con.add("pstop", cmd_pstop)
        con.add("pvin", cmd_pvin)
        con.add("platlink", cmd_status)
    app.platlink = link
    return link
