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

Wiring into the TCU relay and the platform's ingest is not built yet
(docs/security.md, "C-2 ... Missing")."""
from micropython import const
from security import linkrec as L

IXL_SHORT = const(0x21)       # sealed frame truncated / wrong length
IXL_TAG = const(0x22)         # sealed frame forged or tampered
IXL_REPLAY = const(0x23)      # sealed frame replayed or reordered
IXL_PLAIN = const(0x24)       # plain command refused (policy require)
IXL_HANDSHAKE = const(0x25)   # handshake failed (impostor platform, timeout)
_IX_OF = {L.REJECT_SHORT: IXL_SHORT, L.REJECT_TAG: IXL_TAG, L.REJECT_REPLAY: IXL_REPLAY}
EV_INTRUSION = const(16)      # diag.eventlog.EV_INTRUSION (not imported: heap)


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

    @property
    def sealed(self):
        return self.records is not None

    def start(self):
        """Begin a handshake (between sessions); no-op under ``off``."""
        if self.policy != "off" and self.hs is None:
            self.hs = self._make()

    def poll(self, now_ms):
        """One handshake step; the handshake message to send now, or None."""
        hs = self.hs
        if hs is None:
            return None
        if not hs.step(now_ms):
            self.hs = None
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
        if r[0] != L.T_STOP:
            return rec.seal(L.T_RESULT, b"unknown command")
        self.stops += 1
        self._stop()
        return rec.seal(L.T_RESULT, b"stopped")
