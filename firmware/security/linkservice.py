"""The charger's end of the platform link under the site policy (issue 13,
C-2): what telemetry may leave plain, which platform commands are obeyed.
(Put into service by security/platlink.py ``install`` through security/linkbuild.py, which imports this
module only at the link task's first run.)

``sec.policy``:
  off      plain link as before: telemetry goes out as records, no handshake.
  prefer   handshake when asked; while a sealed link is up, telemetry is
           sealed; otherwise it goes out plain (counted in ``plain_sent``,
           and a failed handshake is logged).
  require  no plain link: until the handshake has succeeded telemetry is
           held (counted in ``held``, never sent plain; kept in the batch
           queue while it has room and sealed once the link is up, the rest
           counted in ``dropped``) and a platform command that is not
           sealed is refused.
The vehicle side is never involved: plain GB/T 27930 vehicles charge under
every policy.  A sealed frame that does not open (forged, replayed,
reordered, tampered, truncated) is refused and logged as an intrusion event
(``EV_INTRUSION``, kind ``IXL_*``, argument: the charger's refusal count);
a sealed stop that opens stops the session through ``stop`` (the same call
as the console's ``stop()``) and is answered with a sealed result.

In service (``build``): the records pass only queues each record; the
link's task (``task``, ``sec.link_ms``) cuts the queue into batches and
runs the handshake, ``sec.hs_steps`` steps a slot and only with no session
in progress (its steps are longer than a control pass); the sealing task
(``seal_task``, ``sec.seal_ms``) seals the batches in order, one bounded
step a run (``linkseal.Sealer``, ``sec.seal_kinstr``), never in the records
task's pass, and sends each frame in a run of its own; nothing is
allocated per step or frame.  What leaves for the platform goes on the telemetry channel
in a link envelope (``LINK_MAGIC``, record count, frame) that a telemetry
reader tells from a record by its first byte; what the platform sends
comes in through the console commands ``link("<hex>")`` (a REPLY or a
sealed command: the frame authenticates itself, so a viewer may pass it
on), ``pstop()`` (a plain platform stop) and ``pvin("<VIN>")`` (a plain
VIN authorisation), which the policy may refuse (docs/security.md)."""
from micropython import const
from security import linkrec as L
from security import linkqueue as Q
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
        self._q = None              # the telemetry batch queue (serve: security/linkqueue.py)
        self._t_first = 0           # when the open batch's first record came
        self._batch = 0             # records in the batch being sealed
        self._fb = None             # envelope + frame of the batch being sealed (install)
        self._views = {}
        self._rec_arr = None        # where the records task's run count is (serve)
        self._rec_ix = 0
        self._rec_runs = 0
        self._ready = False         # a sealed frame waits for the next run to go out
        self.seal_kinstr = 50
        self.keyed = 0              # handshakes finished (2 and up: re-keyed)
        self.rekey_ms = 0           # sec.rekey_s (0: never)
        self._rekey = 0
        self._park = _no_park       # parks / wakes the sealing task (serve)
        self._res = None            # a command's result waiting to be sealed (bytes)

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
            self._drain()                      # a re-key: the old keys' last frame first
            self.records = hs.records          # FINISH taken: the link is sealed
            self._park(0)                      # records kept while it was not: sealed now
            self.hs = None
            self.keyed += 1
            self._rekey = ticks_add(now_ms, self.rekey_ms)
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
            self._drain()
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
        """A sealed platform command: opens, verifies, obeys.  Returns None
        when refused; else the sealed result frame, or (in service) b"":
        the result is sealed by the sealing task, in steps, after the batch
        being sealed (one sequence order on the wire), and goes out on the
        telemetry channel from there."""
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
            return self._result(b"vin " + r[1])
        if r[0] != L.T_STOP:
            return self._result(b"unknown command")
        self.stops += 1
        self._stop()
        return self._result(b"stopped")

    def _result(self, text):
        if self._fb is None or len(text) > Q.BATCH_MAX:
            # not in service (or longer than the frame buffer: a VIN
            # authorisation of 200+ bytes): sealed at once
            self._drain()
            return self.records.seal(L.T_RESULT, text)
        if self._res is not None:       # one still waiting (a second command at once)
            self._drain()
        self._res = text
        self._park(0)
        return b""

    # ---- in service (install) ----------------------------------------------
    def serve(self, out, ticks_ms, stage, cfg, rec_runs=None, park=None):
        """Into service: ``out`` the telemetry channel's write, ``stage()``
        the session's stage, ``cfg`` the ``sec.*`` settings, ``rec_runs``
        (array, index): where the records task's run count is (its passes
        get no sealing step; the scheduler's statistics array), ``park(on)``
        parks (1) or wakes (0) the sealing task (``Scheduler.park``): it
        sleeps while nothing waits to be sealed or sent."""
        self.out = out
        self._ticks = ticks_ms
        self._stage = stage
        self.steps = cfg["sec.hs_steps"]
        self.retry_ms = cfg["sec.hs_retry_s"] * 1000
        self.rekey_ms = cfg["sec.rekey_s"] * 1000
        self._rekey = ticks_add(ticks_ms(), self.rekey_ms)
        self.batch_ms = cfg["sec.batch_ms"]
        self.batch_fill = cfg["sec.batch_fill"]
        self.seal_kinstr = cfg["sec.seal_kinstr"]
        self.delta = cfg["sec.tel_delta"]
        self._q = Q.BatchQueue(self.delta)
        self.errors = 0
        self._retry = None
        self._fb = bytearray(2 + L.HEADER + Q.BATCH_MAX + L.TAG)
        self._fb[0] = LINK_MAGIC
        if self.delta:
            for b in range(16, Q.DELTA_MAX + 1, 16):
                n = 2 + L.HEADER + b + L.TAG
                self._views[n] = memoryview(self._fb)[:n]
        if rec_runs is not None:
            self._rec_arr, self._rec_ix = rec_runs
        if park is not None:
            self._park = park

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
            if self.policy != "require":
                self.plain_sent += 1
                self.out(mv)
                return
            # require: never sent plain; kept in the batch queue while it
            # has room (sealed once the link is up), if the link can come up
            self.held += 1
            if self._make is None:
                return
        r = self._q.put(mv)
        if r:
            if r == Q.PUT_DROP:
                self.dropped += 1       # the sealing task fell behind (or a record too long)
                return
            self._t_first = self._ticks()
            if r == Q.PUT_CUT:
                self._park(0)           # the sealing task has work

    def _send(self, count, frame):
        self.out(bytes((LINK_MAGIC, count)) + frame)

    def _cut(self):
        """Close the open batch and wake the sealing task."""
        if self._q.cut():
            self._park(0)

    def _load(self):
        """The first cut batch into the frame buffer, its seal begun."""
        self._batch = self._q.load(self.records.sealer,
                                   L.T_TELEMETRY_DELTA if self.delta else L.T_TELEMETRY,
                                   self._fb, 2)

    def _sent(self):
        """The frame buffer's complete frame onto the telemetry channel
        (one view per frame length: delta batches' 13 made at ``serve``;
        plain batches' made the first time the length occurs, Table 1's
        records give a handful)."""
        n = 2 + L.HEADER + self.records.sealer.n + L.TAG
        if not self._fb[1]:             # a command's result (rare): a view of its own
            self.out(memoryview(self._fb)[:n])
            return
        mv = self._views.get(n)
        if mv is None:
            mv = self._views[n] = memoryview(self._fb)[:n]
        self.sealed_frames += 1
        self.out(mv)

    def _drain(self):
        """Finish the frame being sealed now and send it, then a command
        result still waiting (before anything else takes the next sequence
        number, or the keys change: frames leave in order)."""
        rec = self.records
        if rec is None or self._fb is None:
            return
        if rec.sealer.busy:
            rec.sealer.finish()
            self._ready = True
        if self._ready:
            self._ready = False
            self._sent()
        if self._res is not None:
            self._load_result()
            rec.sealer.finish()
            self._sent()

    def _load_result(self):
        fb = self._fb
        fb[1] = 0                       # the envelope's record count: not telemetry
        t = self._res
        self._res = None
        self.records.sealer.begin(L.T_RESULT, t, 0, len(t), fb, 2)

    def seal_task(self, now):
        """The sealing task (``sec.seal_ms``): a run either begins the next
        batch (copies it into the frame buffer, writes the header), or does
        one step of the batch being sealed, or puts the sealed frame out
        onto the channel (the board's write copies it).  Skips the passes in which the records task ran
        (its own pass is the longest of a session: the event-log commit)."""
        rec = self.records
        if rec is None or (not rec.sealer.busy and not self._ready and self._res is None
                           and not self._q.waiting()):
            self._park(1)               # until the link task cuts the next batch
            return
        a = self._rec_arr
        if a is not None:
            r = a[self._rec_ix]
            if r != self._rec_runs:
                self._rec_runs = r
                return
        try:
            if self._ready:
                self._ready = False
                self._sent()
                return
            s = rec.sealer
            if not s.busy:
                # a run of its own: the copy and the header; a command's
                # result before the next batch
                if self._res is not None:
                    self._load_result()
                else:
                    self._load()
                return
            if s.step(self.seal_kinstr):
                self._ready = True
        except Exception as e:
            self._failed(now, e)

    def task(self, now):
        """The link's slot: handshake steps (no session in progress only),
        then the telemetry batches due are cut (sealed by ``seal_task``).
        Never raises: a broken link must not fail the charger safe (H-9 is
        for the charging path)."""
        try:
            self._task(now)
        except Exception as e:
            self._failed(now, e)

    def _failed(self, now, e):
        self.errors += 1
        self.hs = None
        self.records = None         # back to what the policy allows unsealed
        self._q.clear()
        self._ready = False
        self._res = None
        self.reason = "link error: %s" % e
        self._retry = now
        self._log(EV_INTRUSION, IXL_HANDSHAKE, 3)

    def _task(self, now):
        if self.records is None and self.hs is None and self._make is not None:
            if self._retry is None or ticks_diff(now, self._retry) >= 0:
                self._retry = ticks_add(now, self.retry_ms)
                self._since = now
                self.start()            # (its import and keys: this run; steps: the next)
                return
        elif self.hs is None and self.rekey_ms and self.records is not None and \
                ticks_diff(now, self._rekey) >= 0 and (_SESSION_FREE >> self._stage()) & 1:
            self._rekey = ticks_add(now, self.retry_ms)   # again then, if this one fails
            self.start()                # the old keys seal until its FINISH
            return
        hs = self.hs
        if hs is not None and (_SESSION_FREE >> self._stage()) & 1:
            i = self.steps
            while i > 0 and self.hs is not None:
                m = self.poll(now)
                if m is not None:
                    self._send(0, m)
                hs = self.hs
                # a long piece (a KDF, key schedules, a digest) ends the run
                if hs is None or hs.stage == "wait" or hs.heavy:
                    break
                i -= 1
        if self.records is not None:
            k = self._q.open_bytes()
            if k and (k >= self.batch_fill or ticks_diff(now, self._t_first) >= self.batch_ms):
                self._cut()
                if self._rec_arr is not None:            # this pass is not the records pass
                    self._rec_runs = self._rec_arr[self._rec_ix]


def _no_park(on):
    pass

