"""The diagnostics console: an mpremote-compatible REPL served by the firmware.

The stock MicroPython REPL owns the CPU while it waits for input; a charger
cannot afford that.  ``Console`` is instead *polled* from a scheduler task:
``poll(now_ms)`` takes only the bytes the stream already holds (never
blocks), advances a small protocol state machine, and returns.  Between two
polls the session and safety ticks run as usual, so an engineer attached
with ``mpremote`` never stalls CCS or the protocol timeouts.

Modes, byte for byte as MicroPython's ``shared/runtime/pyexec.c`` answers
them (that is what ``mpremote`` waits for):

friendly REPL   ``>>> `` prompt, echo, backspace, Ctrl-C clears the input,
                ``... `` continuation for blocks/brackets, Ctrl-E paste mode.
                Ctrl-A (empty line) -> raw REPL; Ctrl-B -> banner;
                Ctrl-D (empty line) -> "soft reset".
raw REPL        ``raw REPL; CTRL-B to exit\\r\\n>``; code collected until
                Ctrl-D, answered ``OK`` + stdout + ``\\x04`` + error text +
                ``\\x04`` + ``>``.  Ctrl-C clears, Ctrl-B -> friendly.
raw paste       Ctrl-E 'A' Ctrl-A in raw REPL: ``R\\x01`` + window (2 bytes,
                little endian) + ``\\x01`` (a second window is free), one
                ``\\x01`` per window consumed, Ctrl-D ends (acked ``\\x04``),
                then execution as in raw REPL (no ``OK``).
soft reset      Ctrl-D with nothing typed.  Answers exactly like a board
                (``OK\\r\\nMPY: soft reboot\\r\\n`` + the raw REPL banner, or
                the friendly banner) but only restores the console's
                namespace to its defaults: the charger, the session and the
                scheduler are untouched (requirement D-1).

Ctrl-C is never a KeyboardInterrupt: ``start()`` calls
``micropython.kbd_intr(-1)`` (and re-asserts it after every command, in case
user code re-enabled it); 0x03 bytes are plain input the console handles.

Execution of one command is synchronous: it runs inside ``poll`` and
therefore inside the console's scheduler slot.  Long-running user code
delays every task behind it; keep commands short.  Exceptions in user code
are printed (traceback) and never leave ``poll``.

Stream protocol (see diag/stdio.py):
    ``readinto(buf) -> int``  bytes already available, up to len(buf);
                              0 when none.  Never blocks.
    ``write(buf) -> int``     send bytes; bounded wait, may drop on a
                              stalled peer.

Output of user code: ``print`` in the console namespace writes to the
console stream, with ``\\n`` sent as ``\\r\\n`` like a board's cooked stdout.
Code that writes to ``sys.stdout`` directly reaches the console only where
``sys.stdout`` is the console (the usual case on a board and on the unix
SIL); ``console.out`` is a file object for commands that want to be sure.
"""
import config
import sys
import micropython
from micropython import const
from rt.clock import ticks_diff
from diag.repl_io import CookedOut, print_traceback
from diag.repl_io import (FRIENDLY, RAW, PASTE, PASTE_ABORT, MODE_NAMES,  # noqa: F401
                          CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E, RAW_BANNER, PS1)
from diag.friendly import FriendlyRepl

# Settings live in diag.settings so the app can register them without
# importing (and holding in RAM) the whole console.
from diag.settings import CONSOLE_SCHEMA as CONFIG_SCHEMA  # noqa: E402

_SOFT_REBOOT = b"MPY: soft reboot\r\n"

_bprint = print


_cfg = config.get   # setting, or its registered default


class Console(FriendlyRepl):
    """``Console(stream, namespace=None, cfg=None, banner=None)``.

    ``namespace``: names available to console code (diagnostic commands,
    live objects).  It is copied as the *defaults*: a soft reset (Ctrl-D)
    restores exactly these, plus ``print``/``help``/``console``.
    ``cfg``: the product configuration dict (keys in ``CONFIG_SCHEMA``;
    missing keys take their defaults).
    """

    def __init__(self, stream, namespace=None, cfg=None, banner=None):
        self.stream = stream
        self._readinto = stream.readinto    # cached: no bound method per poll
        self._write = stream.write
        cap = _cfg(cfg, "console.code_max")
        self._rx = bytearray(_cfg(cfg, "console.rx_chunk"))
        self._buf = bytearray(cap)
        self._mv = memoryview(self._buf)
        self._tx = bytearray(_cfg(cfg, "console.tx_buf"))
        self._txmv = memoryview(self._tx)
        self._txn = 0
        w = _cfg(cfg, "console.paste_window")
        if w > 0xFFFF:
            w = 0xFFFF
        if w > cap:
            w = cap
        self._win = w
        self._paste_cap = (cap // w) * w    # the host gets credit in whole windows
        self._paste_timeout = _cfg(cfg, "console.paste_timeout_ms")
        self.out = CookedOut(self._put, self._flush)
        if banner is None:
            v = sys.implementation.version
            banner = "MicroPython v%d.%d.%d diagnostics console; %s (Ctrl-D resets the console only)" % (
                v[0], v[1], v[2], sys.platform)
        self._banner = banner.encode() + b"\r\nType \"help()\" for more information.\r\n"
        self.defaults = dict(namespace or {})
        self.namespace = {}
        self.on_soft_reset = None   # optional callable, run after a soft reset
        # optional ``gate(src, friendly)``: shown every command before it is
        # compiled; True = handled, False = run it, raises = refused
        # (security.consolegate: console roles)
        self.gate = None
        # State.
        self.mode = FRIENDLY
        self._n = 0          # bytes in _buf
        self._friendly_state()
        self._overflow = False
        self._granted = 0    # raw paste: bytes the host may send in total
        self._win_left = 0   # raw paste: bytes until the next window is consumed
        self._last_rx = 0
        # Counters for diagnostics.
        self.rx_bytes = 0
        self.commands = 0
        self.errors = 0
        self.soft_resets = 0
        self.overflows = 0
        self.io_errors = 0   # exceptions raised by the stream (none expected)
        self._started = False
        self.reset_namespace()

    # ---- namespace -----------------------------------------------------

    def add(self, name, obj):
        """Add a name to the defaults and to the live namespace."""
        self.defaults[name] = obj
        self.namespace[name] = obj

    def reset_namespace(self):
        """Back to the defaults (what a soft reset does)."""
        ns = self.namespace
        ns.clear()
        out = self.out

        def _print(*args, sep=" ", end="\n", file=None):
            _bprint(*args, sep=sep, end=end, file=out if file is None else file)

        ns["print"] = _print
        ns["help"] = self._help
        ns["console"] = self
        ns.update(self.defaults)

    def _help(self, obj=None):
        if obj is not None:
            _bprint(obj, file=self.out)
            doc = getattr(obj, "__doc__", None)
            if doc:
                _bprint(doc, file=self.out)
            return
        _bprint("Charger diagnostics console. Names:", file=self.out)
        _bprint(" ", " ".join(sorted(k for k in self.namespace if not k.startswith("_"))),
                file=self.out)
        _bprint("Ctrl-D: reset this namespace (the charger keeps running). "
                "Commands run synchronously: keep them short.", file=self.out)

    def is_friendly(self):
        """In the friendly REPL (a person at a prompt: free text may be
        printed); False while mpremote talks the raw REPL protocol."""
        return self.mode == FRIENDLY

    # ---- lifecycle -----------------------------------------------------

    def start(self, greet=True):
        """Disable Ctrl-C interrupts; optionally print banner and prompt.

        ``poll`` calls ``start(False)`` itself if nobody did: Ctrl-C must
        never become a KeyboardInterrupt once the console reads input."""
        self._started = True
        micropython.kbd_intr(-1)
        if greet:
            self._put(self._banner)
            self._put(PS1)
            self._flush()

    def close(self):
        """Flush, and give Ctrl-C back to the runtime."""
        self._started = False
        self._flush()
        micropython.kbd_intr(3)

    # ---- output --------------------------------------------------------

    def _put(self, b):
        n = len(b)
        room = len(self._tx) - self._txn
        if n > room:
            self._flush()
            if n > len(self._tx):
                try:
                    self._write(b)
                except Exception:
                    self.io_errors += 1
                return
        self._txmv[self._txn:self._txn + n] = b
        self._txn += n

    def _put1(self, c):
        if self._txn >= len(self._tx):
            self._flush()
        self._tx[self._txn] = c
        self._txn += 1

    def _flush(self):
        if self._txn:
            n = self._txn
            self._txn = 0
            try:
                self._write(self._txmv[:n])
            except Exception:  # a stream must not raise; if it does, drop
                self.io_errors += 1

    # ---- input ---------------------------------------------------------

    def poll(self, now_ms):
        """Take the bytes already available, act on them; never blocks.

        Returns the number of bytes processed.  With nothing pending this
        does one ``stream.readinto`` and a few integer tests: no
        allocation."""
        if not self._started:
            self.start(False)
        try:
            n = self._readinto(self._rx)
        except Exception:  # a stream must not raise; if it does: no input
            self.io_errors += 1
            n = 0
        if not n:
            if self.mode >= PASTE and ticks_diff(now_ms, self._last_rx) > self._paste_timeout:
                # The host vanished mid-paste: drop it, back to raw REPL.
                self.mode = RAW
                self._n = 0
            return 0
        self._last_rx = now_ms
        self.rx_bytes += n
        rx = self._rx
        i = 0
        while i < n:
            c = rx[i]
            i += 1
            m = self.mode
            if m == PASTE:
                if c == CTRL_D or c == CTRL_C:
                    self._paste_end(c)
                    continue
                if self._n >= self._paste_cap:  # host ignored flow control
                    continue
                self._buf[self._n] = c
                self._n += 1
                self._win_left -= 1
                if self._win_left == 0:
                    self._win_left = self._win
                    if self._granted + self._win <= self._paste_cap:
                        self._granted += self._win
                        self._put1(CTRL_A)
                if self._n == self._granted and self._granted + self._win > self._paste_cap:
                    # No room for another window: tell the host to stop.
                    self._put1(CTRL_D)
                    self.mode = PASTE_ABORT
            elif m == RAW:
                self._raw_byte(c)
            elif m == FRIENDLY:
                self._friendly_byte(c)
            else:  # PASTE_ABORT: discard until the host's Ctrl-D
                if c == CTRL_D or c == CTRL_C:
                    self._n = 0
                    self.overflows += 1
                    self._put1(CTRL_D)
                    self._put(b"MemoryError: command longer than %d bytes\r\n" % self._paste_cap)
                    self._put(b"\x04>")
                    self.mode = RAW
        self._flush()
        return n

    # ---- raw REPL ------------------------------------------------------

    def _raw_byte(self, c):
        if c == CTRL_A:
            if self._n == 2 and self._buf[0] == CTRL_E:
                if self._buf[1] == 65:  # 'A'
                    self._paste_start()
                else:
                    self._put(b"R\x00>")
                    self._n = 0
                return
            self._n = 0
            self._overflow = False
            self._put(RAW_BANNER)
            self._put1(62)
        elif c == CTRL_B:
            self._to_friendly(b"\r\n")
        elif c == CTRL_C:
            self._n = 0
            self._overflow = False
        elif c == CTRL_D:
            self._put(b"OK")
            if self._n == 0 and not self._overflow:
                self._put(b"\r\n")
                self._soft_reset()
                self._put(RAW_BANNER)
                self._put1(62)
                return
            if self._overflow:
                self._overflow = False
                self._n = 0
                self.overflows += 1
                self._put(b"\x04MemoryError: command longer than %d bytes\r\n\x04>" % len(self._buf))
                return
            self._exec_raw()
        else:
            if self._n < len(self._buf):
                self._buf[self._n] = c
                self._n += 1
            else:
                self._overflow = True

    def _paste_start(self):
        w = self._win
        self._n = 0
        self._put(b"R\x01")
        self._put1(w & 0xFF)
        self._put1(w >> 8)
        self._granted = w
        self._win_left = w
        if 2 * w <= self._paste_cap:
            self._put1(CTRL_A)  # a second window is free
            self._granted = 2 * w
        self.mode = PASTE

    def _paste_end(self, c):
        self._put1(CTRL_D)  # acknowledge end of data
        self.mode = RAW
        if c == CTRL_C:
            self._n = 0
            self._put(b"\x04KeyboardInterrupt: \r\n\x04>")
            return
        self._exec_raw()

    def _exec_raw(self):
        self._flush()
        self._run(self._n, False)
        self._n = 0
        self._put1(CTRL_D)
        self._put1(62)

    def _run(self, n, friendly):
        """Execute ``_buf[:n]`` in the namespace; print, never raise.

        ``friendly``: a single-line friendly command is tried as an
        expression first, and a value other than None is printed (repr)."""
        self.commands += 1
        out = self.out
        raw = self.mode != FRIENDLY
        try:
            src = bytes(self._mv[:n])
            code = None
            g = self.gate
            if g is not None and g(src, friendly):
                src = None                      # handled (a permitted command)
            elif friendly:
                try:
                    code = compile(src, "<stdin>", "eval")
                except SyntaxError:
                    code = None
            if code is not None:
                r = eval(code, self.namespace)
                if r is not None:
                    self.namespace["_"] = r
                    _bprint(repr(r), file=out)
            elif src is not None:
                exec(compile(src, "<stdin>", "exec"), self.namespace)
            if raw:
                self._put1(CTRL_D)
        except BaseException as e:  # noqa: user code must never reach the scheduler
            self.errors += 1
            if raw:
                self._put1(CTRL_D)
            print_traceback(e, out)
        micropython.kbd_intr(-1)  # user code may have re-enabled it

    def _soft_reset(self):
        self.soft_resets += 1
        self._put(_SOFT_REBOOT)
        self.reset_namespace()
        if self.on_soft_reset is not None:
            try:
                self.on_soft_reset()
            except BaseException as e:
                print_traceback(e, self.out)
