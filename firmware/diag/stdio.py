"""The console stream over the firmware's stdin/stdout, on any port.

On a board, stdin/stdout are the REPL's serial port (USB VCP or UART); on
the unix SIL board they are the process's fds, which the harness puts on a
pseudo-terminal.  ``diag.console.Console`` talks through this adapter, and
a field engineer's ``mpremote connect PORT`` reaches it.

- Input is non-blocking: ``readinto`` asks ``select.poll`` (``ipoll(0)``,
  allocation-free after the first call) whether a byte is ready before each
  1-byte read (``readinto(buf, n)`` on a blocking stream loops until it has
  ``n`` bytes, and no port offers a portable non-blocking fd mode).
- ``raw=True`` (unix): if fd 0 is a tty it is put in raw mode
  (``termios.setraw``) so every byte arrives at once and unchanged: no line
  buffering or echo by the tty driver, Ctrl-C/Ctrl-D are plain bytes.
  ``close`` restores the settings.  Boards have no termios: ``raw=False``.
- Output: ``write`` waits at most ``tx_timeout_ms`` for the peer to accept
  bytes (``POLLOUT``), writes in chunks of ``tx_chunk`` bytes, and counts
  what it had to drop: a terminal nobody reads must never block the loop.
- A hung-up peer or an end of file reads as "no input"; it is counted,
  never raised.
"""
import sys
import select
from micropython import const

_POLLIN = const(1)      # select.POLLIN
_POLLOUT = const(4)     # select.POLLOUT
_POLLERR = const(8)
_POLLHUP = const(16)


class StdioConsole:
    """``StdioConsole(raw=True, tx_timeout_ms=20, tx_chunk=256)``.

    Counters: ``rx_errors`` (failed reads), ``tx_dropped`` (bytes not
    written because the peer did not take them in time), ``eof`` (stdin
    reached end of file: no more input will ever come)."""

    def __init__(self, raw=True, tx_timeout_ms=20, tx_chunk=256, fin=None, fout=None):
        self._fin = fin if fin is not None else sys.stdin.buffer
        self._fout = fout if fout is not None else sys.stdout.buffer
        self._rd = self._fin.readinto
        self._wr = self._fout.write
        self._one = bytearray(1)
        self._pin = select.poll()
        self._pin.register(self._fin, select.POLLIN)
        self._ipoll_in = self._pin.ipoll
        self._pout = select.poll()
        self._pout.register(self._fout, select.POLLOUT)
        self._ipoll_out = self._pout.ipoll
        self.tx_timeout_ms = tx_timeout_ms
        self.tx_chunk = tx_chunk
        self.rx_errors = 0
        self.tx_dropped = 0
        self.eof = False
        self._saved = None
        if raw:
            self._set_raw()
        # First ipoll() allocates the poll object's result tuple: do it now,
        # so that readinto() with nothing pending never allocates.
        for _ in self._ipoll_in(0):
            pass
        for _ in self._ipoll_out(0):
            pass

    def _set_raw(self):
        try:
            import termios
            fd = self._fin.fileno()
            self._saved = termios.tcgetattr(fd)
            termios.setraw(fd)
            self._fd = fd
        except (ImportError, OSError, AttributeError):
            self._saved = None  # not a tty (pipe, file): nothing to do

    def close(self):
        """Give the terminal its original settings back."""
        if self._saved is not None:
            import termios
            try:
                termios.tcsetattr(self._fd, termios.TCSANOW, self._saved)
            except OSError:
                pass
            self._saved = None

    def _ready(self, ipoll, mask, timeout_ms):
        ev = 0
        for _obj, e in ipoll(timeout_ms):
            ev = e
        return ev & mask

    def readinto(self, buf):
        """Copy the bytes already waiting (at most len(buf)); 0 if none."""
        if self.eof:
            return 0
        n = 0
        lim = len(buf)
        one = self._one
        while n < lim:
            ev = self._ready(self._ipoll_in, _POLLIN | _POLLHUP | _POLLERR, 0)
            if not (ev & _POLLIN):
                break  # nothing, or only a hang-up: no input for now
            try:
                k = self._rd(one, 1)
            except OSError:
                self.rx_errors += 1
                break
            if not k:
                self.eof = True
                break
            buf[n] = one[0]
            n += 1
        return n

    def write(self, buf):
        """Write all of ``buf`` unless the peer stalls; returns bytes written."""
        n = len(buf)
        mv = memoryview(buf)
        done = 0
        chunk = self.tx_chunk
        while done < n:
            if not self._ready(self._ipoll_out, _POLLOUT, self.tx_timeout_ms):
                break
            k = n - done
            if k > chunk:
                k = chunk
            try:
                w = self._wr(mv[done:done + k])
            except OSError:
                break
            if not w:
                break
            done += w
        if done < n:
            self.tx_dropped += n - done
        return done
