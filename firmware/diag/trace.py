"""CAN trace for the diagnostics console: ``trace(True)`` / ``trace(False)``.

While on, every frame the charger receives or sends is stamped and kept in
a bounded ring; each console poll prints at most ``diag.trace_lines`` of
them in candump's log format (``candump -L``: time in seconds on the
firmware clock, interface, id#data in hex), so a copied trace is a log that
``host_tools.logdecode`` and python-can read::

    (2711.350000) can0 1812F456#A00F820F0000FDFF

How it hooks in, and why it costs nothing while off:

* receive: ``app._can_recv`` (read by the CAN task every pass) is replaced
  by a wrapper; transmit: the ``_send`` of the session's ``ChargerTx`` and of
  the link's ``TransportReceiver`` (every frame the charger sends goes
  through one of the two).  ``trace(False)`` puts the originals back, so the
  CAN path is exactly as before.
* printing happens in the console's own scheduler slot: ``console.poll`` is
  shadowed by an instance attribute that polls the console and then prints
  pending lines.  The CAN and session tasks only copy 8 bytes into the ring.

Bounded:
* at most ``diag.trace_frames`` frames wait in the ring; more are dropped
  and counted (``lost``), reported as ``[trace: N frames not shown]``;
* at most ``diag.trace_lines`` lines per console poll;
* lines are printed only while the console is in the friendly REPL: in raw
  REPL (mpremote exchanging commands) text would break mpremote's protocol,
  so frames wait (or are counted lost);
* if the terminal does not take the output (nobody reading: the stream
  drops bytes), the trace switches itself off, so an abandoned trace cannot
  cost the loop a stream time-out every poll.

This is a debug tool: it allocates (line formatting) and adds a few tens of
microseconds per frame while on.  Leave it off in service.
"""
import config
from gbt import ids

# Settings live in diag.settings so the app can register them without
# importing (and holding in RAM) the whole console.
from diag.settings import TRACE_SCHEMA as CONFIG_SCHEMA  # noqa: E402


_cfg = config.get   # setting, or its registered default


class Trace:
    """``Trace(app, console)``: one per console; see the module doc."""

    def __init__(self, app, console):
        self.app = app
        self.console = console
        self.on = False
        self.size = _cfg(app.cfg, "diag.trace_frames")
        self.lines = _cfg(app.cfg, "diag.trace_lines")
        self.pgn = 0            # 0 = every frame, else only this PGN
        self.shown = 0
        self.lost = 0           # dropped: ring full
        self.seen = 0           # frames recorded since trace(True)
        self._reported = 0      # lost count already reported
        self._t = None

    # -- switching ---------------------------------------------------------
    def start(self, pgn=0):
        if self.on:
            self.stop()
        app = self.app
        n = self.size
        self._t = [0] * n
        self._id = [0] * n
        self._dlc = bytearray(n)
        self._data = bytearray(8 * n)
        self._head = 0
        self._len = 0
        self.shown = self.lost = self.seen = self._reported = 0
        self.pgn = pgn
        self._ticks = app.clock.ticks_ms
        self._recv0 = app._can_recv
        self._send_tx0 = app.session.tx._send
        self._send_tp0 = app.link.tp._send
        self._poll0 = self.console.poll
        app._can_recv = self._recv
        app.session.tx._send = self._wrap(self._send_tx0)
        app.link.tp._send = self._wrap(self._send_tp0)
        self.console.poll = self._poll
        self.on = True

    def stop(self):
        if not self.on:
            return
        self.on = False
        app = self.app
        app._can_recv = self._recv0
        app.session.tx._send = self._send_tx0
        app.link.tp._send = self._send_tp0
        try:
            del self.console.poll      # the class method again
        except (AttributeError, KeyError):
            self.console.poll = self._poll0
        self._t = self._id = self._dlc = self._data = None

    # -- recording (CAN / session tasks) ------------------------------------
    def _record(self, cid, data, n):
        self.seen += 1
        if self.pgn:
            pf = (cid >> 16) & 0xFF
            if (pf << 8 if pf < 240 else (cid >> 8) & 0xFFFF) != self.pgn:
                return
        if self._len >= self.size:
            self.lost += 1
            return
        k = (self._head + self._len) % self.size
        self._t[k] = self._ticks()
        self._id[k] = cid
        if n > 8:
            n = 8
        self._dlc[k] = n
        o = 8 * k
        d = self._data
        for i in range(n):
            d[o + i] = data[i]
        self._len += 1

    def _recv(self, frame):
        ok = self._recv0(frame)
        if ok and self.on:
            self._record(frame.id, frame.data, frame.dlc)
        return ok

    def _wrap(self, send):
        def traced(cid, buf, n):
            r = send(cid, buf, n)
            if self.on:
                self._record(cid, buf, n)
            return r
        return traced

    # -- printing (console task) --------------------------------------------
    def _poll(self, now):
        r = self._poll0(now)
        if self.on:
            try:
                self.flush()
            except Exception:          # never into the scheduler
                self.stop()
        return r

    def flush(self):
        """Print up to ``diag.trace_lines`` waiting frames (friendly REPL only)."""
        con = self.console
        if not con.is_friendly() or (not self._len and self.lost == self._reported):
            return
        out = []
        if self.lost != self._reported:
            out.append("[trace: %d frames not shown]" % (self.lost - self._reported))
            self._reported = self.lost
        m = self.lines
        d = self._data
        while self._len and m:
            k = self._head
            n = self._dlc[k]
            o = 8 * k
            t = self._t[k]
            out.append("(%d.%03d000) can0 %08X#%s" % (t // 1000, t % 1000, self._id[k],
                                                    "".join("%02X" % d[o + i] for i in range(n))))
            self._head = (k + 1) % self.size
            self._len -= 1
            self.shown += 1
            m -= 1
        stream = con.stream
        drop0 = getattr(stream, "tx_dropped", 0)
        con.out.write("\n".join(out) + "\n")
        if getattr(stream, "tx_dropped", 0) != drop0:
            self.stop()                # nobody reads the terminal: give up

    def status(self):
        """One line for ``trace()`` without argument."""
        return "trace %s%s: %d frames seen, %d shown, %d lost (ring %d, %d lines/poll)" % (
            "on" if self.on else "off",
            (" " + ids.name_of(self.pgn)) if self.pgn else "",
            self.seen, self.shown, self.lost, self.size, self.lines)
