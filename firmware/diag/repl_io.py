"""Helpers of the diagnostics console's REPL (see diag/console.py).

- ``CookedOut``: the file object console code prints to.  ``\\n`` goes out
  as ``\\r\\n`` (a board's stdout is "cooked" the same way, and a raw
  terminal needs it), and every write goes straight to the stream so that
  output stays in order with anything written to ``sys.stdout`` directly.
- ``needs_more``: the friendly REPL's "ask for another line" rule.
- ``print_traceback``: a traceback as the board's REPL prints it, without
  the console's own frame.
- the modes and the control bytes both REPLs (console, friendly) share.

None of this is on the idle path: it runs only while a command is typed or
executed, so it may allocate.
"""
import io
import sys
from micropython import const

# Console modes (``Console.mode``).
FRIENDLY = const(0)
RAW = const(1)
PASTE = const(2)        # raw-paste data transfer
PASTE_ABORT = const(3)  # buffer full: told host to stop, waiting for its Ctrl-D
MODE_NAMES = ("friendly", "raw", "raw-paste", "raw-paste-abort")

# Bytes with a meaning to both REPLs.
CTRL_A = const(1)
CTRL_B = const(2)
CTRL_C = const(3)
CTRL_D = const(4)
CTRL_E = const(5)
LF = const(10)
CR = const(13)

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PS1 = b">>> "


class CookedOut(io.IOBase):
    """``CookedOut(put, flush)``: ``put(bytes_like)`` stages bytes for the
    console stream, ``flush()`` sends them.  Subclasses ``io.IOBase`` so
    that ``print(file=...)`` and ``sys.print_exception`` accept it."""

    def __init__(self, put, flush):
        self._put = put
        self._flush = flush

    def write(self, b):
        if isinstance(b, str):
            b = b.encode()
        elif isinstance(b, memoryview):
            b = bytes(b)
        put = self._put
        n = len(b)
        mv = memoryview(b)
        i = 0
        while i < n:
            j = b.find(b"\n", i)
            if j < 0:
                put(mv[i:])
                break
            put(mv[i:j])
            put(b"\r\n")
            i = j + 1
        self._flush()
        return n

    def flush(self):
        self._flush()


def _is_ident(c):
    return c == 95 or 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c >= 128


_COMPOUND = (b"if", b"while", b"for", b"try", b"with", b"def", b"class", b"async")


def needs_more(src):
    """True if the friendly REPL should ask for another line (``... ``).

    ``src`` (bytes) is the input so far, lines joined by ``\\n``.  The rule
    is MicroPython's: open brackets or an open triple quote, a trailing
    backslash, or a compound statement (``if``, ``for``, ``def``, ``@``...)
    whose last line was not empty.  One difference: a ``#`` comment
    outside quotes is skipped, so ``x = [1,  # ]`` still continues."""
    n = len(src)
    if n == 0:
        return False
    compound = src[0] == 64  # '@'
    if not compound:
        for kw in _COMPOUND:
            k = len(kw)
            if src.startswith(kw) and (n == k or not _is_ident(src[k])):
                compound = True
                break
    depth = 0
    q = 0        # inside a string: its quote byte, else 0
    q3 = False   # ... and whether it is a triple-quoted one
    i = 0
    while i < n:
        c = src[i]
        if q:
            if c == 92:  # a backslash escapes the next byte
                i += 2
                continue
            if c == q:
                if not q3:
                    q = 0
                elif src[i + 1:i + 3] == bytes((q, q)):
                    q = 0
                    i += 2
        elif c == 39 or c == 34:
            q3 = src[i:i + 3] == bytes((c, c, c))
            if q3:
                i += 2
            q = c
        elif c == 35:  # comment: skip to the end of the line
            while i < n and src[i] != 10:
                i += 1
            continue
        elif c == 40 or c == 91 or c == 123:
            depth += 1
        elif c == 41 or c == 93 or c == 125:
            depth -= 1
        i += 1
    if q and q3:
        return True
    if depth > 0 and not q:
        return True
    last = src[n - 1]
    if last == 92:
        return True
    return compound and last != 10


def print_traceback(e, out):
    """Print ``e`` to ``out`` like the board's REPL does."""
    try:
        buf = io.StringIO()
        sys.print_exception(e, buf)
        for line in buf.getvalue().split("\n"):
            if line.startswith('  File "') and line.endswith(", in _run") \
                    and '"<stdin>"' not in line:
                continue  # the exec() call in Console._run, not user code
            if line:
                out.write(line)
                out.write("\n")
    except BaseException:  # e.g. MemoryError: still say what happened
        try:
            sys.print_exception(e, out)
        except BaseException:
            out.write("(exception while printing the traceback)\n")
