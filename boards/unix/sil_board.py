"""The software-in-the-loop board: the firmware on the MicroPython unix port.

CAN frames, IO values and time travel over one TCP connection on loopback to
the host harness (``host_tools/sil``), in the wire format of
``docs/sil-link.md`` (``simlink.LinkBoard``; the QEMU target board speaks the
same format over semihosting).  Two modes:

* ``lockstep``: time is ``SimClock``; the harness sends STEP(target_ms) and
  the board runs every scheduler pass that falls due up to ``target_ms``,
  then answers ACK.  Deterministic: same inputs, same bytes, same times.
* ``realtime``: time is the wall clock (``TicksClock``); the board polls the
  socket without blocking between scheduler passes.
"""
import socket
import select

from simlink import LinkBoard
from rt.clock import SimClock, TicksClock, ticks_diff
from rt.calendar import from_unix


class SilBoard(LinkBoard):
    name = "unix-sil"

    def __init__(self, host="127.0.0.1", port=0, mode="lockstep", epoch_s=1767225600):
        self.mode = mode
        lockstep = mode == "lockstep"
        LinkBoard.__init__(self, lockstep, epoch_s,
                           SimClock() if lockstep else TicksClock())
        s = socket.socket()
        s.connect(socket.getaddrinfo(host, port)[0][-1])
        try:
            s.setsockopt(6, 1, 1)   # IPPROTO_TCP, TCP_NODELAY: no Nagle delay per packet
        except OSError:
            pass
        self.sock = s
        self.poller = select.poll()
        self.poller.register(s, select.POLLIN)
        self.hello(b"unix-sil")

    def console_stream(self, cfg):
        """The console on the process's stdin/stdout (a pty from the harness)."""
        import console_io
        return console_io.stream(cfg)

    def console_commands(self, app):
        """Console commands of the SIL bench: the connector is the bench's
        (its plant model), so these ask the harness over the link."""
        def plug():
            self.send_text("bench", "plug")
            app.console.out.write("plug requested: the bench connects CC1\n")

        def unplug():
            self.send_text("bench", "unplug")
            app.console.out.write("unplug requested: the bench opens CC1\n")

        return (("plug", plug, "SIL bench: plug the vehicle in"),
                ("unplug", unplug, "SIL bench: pull the connector"))

    def _rtc_s(self):
        """Wall-clock seconds since 2020-01-01 UTC (the firmware epoch):
        simulated date in lock-step, host time otherwise."""
        if self.lockstep:
            return self.rtc0 + self.clock.ms // 1000
        import time
        return from_unix(time.time())

    # ---- transport: the TCP socket ------------------------------------------
    def _recv(self, off, n):
        if off == 0:
            return self.sock.readinto(self.rbuf, n)
        return self.sock.readinto(self.rmv[off:off + n])

    def _send(self, buf, n):
        off = 0
        while off < n:
            w = self.sock.write(buf, off, n - off)
            if w:
                off += w

    def _pending(self):
        for _ in self.poller.ipoll(0):
            return True
        return False

    def run(self, app):
        """The board's main loop: owns time in lock-step, polls in real time."""
        self.app = app
        if self.lockstep:
            self._run_lockstep(app)
        else:
            self._run_realtime(app)

    def _run_realtime(self, app):
        clock = self.clock
        sched = app.sched
        ipoll = self.poller.ipoll
        self.app = app
        while not self.stop:
            if self.stats_req >= 0:
                self.send_stats(self.stats_req)
                self.stats_req = -1
            app.run_due()
            if self.olen:
                self.flush()
            wait = ticks_diff(sched.next_due(), clock.ticks_ms())
            if wait < 0:
                wait = 0
            for _ in ipoll(wait):
                # drain everything that is already here, then run tasks
                while True:
                    n = self._read_packet()
                    self._handle(self.last_type, n)
                    if not self._pending():
                        break
        app.shutdown("host stop")
