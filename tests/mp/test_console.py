"""Console protocol state machine, fed byte strings through an in-memory stream.

Checks the exact bytes answered in each mode (what mpremote waits for), that
a "soft reset" only resets the console namespace, that user exceptions never
leave poll(), and that poll() with no input allocates nothing."""
import struct
import micropython
import mptest
from mptest import eq, true
from diag.console import Console, FRIENDLY, RAW, PASTE, PASTE_ABORT
from diag.repl_io import needs_more
from doubles import MemStream

BANNER = b"MicroPython test\r\nType \"help()\" for more information.\r\n"
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


class Charger:
    """Stands in for the running charger: a soft reset must not touch it."""

    def __init__(self):
        self.ticks = 0


def make(cfg=None, ns=None):
    s = MemStream()
    ch = Charger()
    names = {"charger": ch}
    if ns:
        names.update(ns)
    c = Console(s, names, cfg=cfg, banner="MicroPython test")
    c.start(greet=False)
    return c, s, ch


def send(c, s, data, now=0):
    s.feed(data)
    for _ in range(1000):  # drain at rx_chunk bytes per poll
        if s.pos >= len(s.inp):
            break
        c.poll(now)
    return s.take()


def to_raw(c, s):
    eq(send(c, s, b"\r\x01"), b"\r\n>>> \r\n" + RAW_BANNER, "enter raw")


# ---- friendly REPL --------------------------------------------------------

def test_start_banner_and_prompt():
    s = MemStream()
    c = Console(s, {}, banner="MicroPython test")
    c.start()
    eq(s.take(), BANNER + b">>> ")
    c.close()


def test_friendly_expression_echo_and_value():
    c, s, _ = make()
    eq(send(c, s, b"1+2\r"), b"1+2\r\n3\r\n>>> ")
    eq(c.namespace["_"], 3)
    # CR LF counts as one Enter; LF alone also works.
    eq(send(c, s, b"'a'\r\n"), b"'a'\r\n'a'\r\n>>> ")
    eq(send(c, s, b"None\n"), b"None\r\n>>> ")


def test_friendly_print_is_cooked_to_console():
    c, s, _ = make()
    eq(send(c, s, b"print('x\\ny')\r"), b"print('x\\ny')\r\nx\r\ny\r\n>>> ")


def test_friendly_statement_and_names_persist():
    c, s, _ = make()
    eq(send(c, s, b"v=41\r"), b"v=41\r\n>>> ")
    eq(send(c, s, b"v+1\r"), b"v+1\r\n42\r\n>>> ")


def test_friendly_backspace_and_ctrl_c():
    c, s, _ = make()
    eq(send(c, s, b"12\x7f3\r"), b"12\b \b3\r\n13\r\n>>> ")
    eq(send(c, s, b"\x08"), b"")  # nothing to delete
    eq(send(c, s, b"abc\x03"), b"abc\r\n>>> ")
    eq(send(c, s, b"7\r"), b"7\r\n7\r\n>>> ")


def test_friendly_continuation_block():
    c, s, _ = make()
    out = send(c, s, b"for i in range(2):\r  print(i)\r\r")
    eq(out, b"for i in range(2):\r\n...   print(i)\r\n... \r\n0\r\n1\r\n>>> ")
    out = send(c, s, b"x = (1,\r2)\r")
    eq(out, b"x = (1,\r\n... 2)\r\n>>> ")
    eq(c.namespace["x"], (1, 2))
    # Ctrl-C inside a block abandons the whole block.
    out = send(c, s, b"if 1:\r\x03")
    eq(out, b"if 1:\r\n... \r\n>>> ")
    # Ctrl-D on an empty continuation line runs the block.
    out = send(c, s, b"if 1:\r  y=5\r\x04")
    eq(out, b"if 1:\r\n...   y=5\r\n... \r\n>>> ")
    eq(c.namespace["y"], 5)


def test_friendly_escape_sequences_swallowed():
    c, s, _ = make()
    eq(send(c, s, b"1\x1b[A+\x1bOD2\r"), b"1+2\r\n3\r\n>>> ")


def test_friendly_exception_printed_not_raised():
    c, s, _ = make()
    out = send(c, s, b"1/0\r")
    eq(out, b"1/0\r\nTraceback (most recent call last):\r\n"
            b"  File \"<stdin>\", line 1, in <module>\r\n"
            b"ZeroDivisionError: divide by zero\r\n>>> ")
    for src in (b"raise SystemExit\r", b"raise KeyboardInterrupt\r", b"1 +* 2\r"):
        out = send(c, s, src)
        true(out.endswith(b"\r\n>>> "), out)
    eq(c.errors, 4)


def test_friendly_paste_mode():
    c, s, _ = make()
    out = send(c, s, b"\x05")
    eq(out, b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
    out = send(c, s, b"a=1\rb=2\r\x04")
    eq(out, b"a=1\r\n=== b=2\r\n=== \r\n>>> ")
    eq(c.namespace["b"], 2)
    out = send(c, s, b"\x05zz=1\x03")
    true(out.endswith(b"=== zz=1\r\n>>> "), out)
    true("zz" not in c.namespace)


def test_friendly_ctrl_b_and_soft_reset():
    c, s, ch = make()
    eq(send(c, s, b"\x02"), b"\r\n" + BANNER + b">>> ")
    send(c, s, b"junk=1\r")
    ch.ticks = 77
    eq(send(c, s, b"\x04"), b"\r\nMPY: soft reboot\r\n" + BANNER + b">>> ")
    true("junk" not in c.namespace, "user name cleared")
    true(c.namespace["charger"] is ch, "default restored")
    eq(ch.ticks, 77, "charger untouched")
    eq(c.soft_resets, 1)
    # Ctrl-D with text on the line is not a reset.
    eq(send(c, s, b"1\x04"), b"1")
    eq(c.soft_resets, 1)


def test_friendly_input_limit_rings_bell():
    c, s, _ = make(cfg={"console.code_max": 256})
    out = send(c, s, b"1" * 300)
    eq(out, b"1" * 256 + b"\x07" * 44)


# ---- raw REPL -------------------------------------------------------------

def test_mpremote_enter_raw_sequence():
    c, s, _ = make()
    eq(send(c, s, b"\r\x03"), b"\r\n>>> \r\n>>> ")
    eq(send(c, s, b"\r\x01"), b"\r\n>>> \r\n" + RAW_BANNER)
    eq(c.mode, RAW)
    # mpremote's next "\r\x03\r\x01" while already raw: clear, banner again.
    eq(send(c, s, b"\r\x03\r\x01"), RAW_BANNER)


def test_raw_exec_ok_and_error():
    c, s, _ = make()
    to_raw(c, s)
    eq(send(c, s, b"print(7)\x04"), b"OK7\r\n\x04\x04>")
    eq(send(c, s, b"1/0\x04"), b"OK\x04Traceback (most recent call last):\r\n"
       b"  File \"<stdin>\", line 1, in <module>\r\nZeroDivisionError: divide by zero\r\n\x04>")
    eq(send(c, s, b"print('a'\x04"), b"OK\x04Traceback (most recent call last):\r\n"
       b"  File \"<stdin>\", line 2\r\nSyntaxError: invalid syntax\r\n\x04>")
    # Ctrl-C discards what was typed.
    eq(send(c, s, b"print(1)\x03print(2)\x04"), b"OK2\r\n\x04\x04>")


def test_raw_soft_reset_handshake():
    c, s, ch = make()
    to_raw(c, s)
    send(c, s, b"junk=1\x04")
    ch.ticks = 5
    eq(send(c, s, b"\x04"), b"OK\r\nMPY: soft reboot\r\n" + RAW_BANNER)
    eq(c.mode, RAW, "stays in raw REPL, like a board")
    true("junk" not in c.namespace)
    eq(ch.ticks, 5)
    eq(send(c, s, b"print(charger.ticks)\x04"), b"OK5\r\n\x04\x04>")


def test_raw_ctrl_b_to_friendly():
    c, s, _ = make()
    to_raw(c, s)
    eq(send(c, s, b"\r\x02"), b"\r\n" + BANNER + b">>> ")
    eq(c.mode, FRIENDLY)


def test_raw_overflow_reported():
    c, s, _ = make(cfg={"console.code_max": 256})
    to_raw(c, s)
    out = send(c, s, b"#" * 300 + b"\x04")
    eq(out, b"OK\x04MemoryError: command longer than 256 bytes\r\n\x04>")
    eq(send(c, s, b"print(3)\x04"), b"OK3\r\n\x04\x04>")


# ---- raw paste ------------------------------------------------------------

def test_raw_paste_answer_and_exec():
    c, s, _ = make()
    to_raw(c, s)
    eq(send(c, s, b"\x05A\x01"), b"R\x01" + struct.pack("<H", 128) + b"\x01")
    eq(c.mode, PASTE)
    eq(send(c, s, b"print(6*7)\x04"), b"\x0442\r\n\x04\x04>")
    eq(c.mode, RAW)
    # error text goes after the first EOF
    send(c, s, b"\x05A\x01")
    eq(send(c, s, b"nope\x04"), b"\x04\x04Traceback (most recent call last):\r\n"
       b"  File \"<stdin>\", line 1, in <module>\r\nNameError: name 'nope' isn't defined\r\n\x04>")


def test_raw_paste_unsupported_variant():
    c, s, _ = make()
    to_raw(c, s)
    eq(send(c, s, b"\x05B\x01"), b"R\x00>")
    eq(c.mode, RAW)


def test_raw_paste_flow_control():
    c, s, _ = make(cfg={"console.paste_window": 16, "console.code_max": 256})
    to_raw(c, s)
    eq(send(c, s, b"\x05A\x01"), b"R\x01\x10\x00\x01")
    # One 0x01 per 16 bytes consumed.
    eq(send(c, s, b"#" * 15), b"")
    eq(send(c, s, b"#"), b"\x01")
    eq(send(c, s, b"#" * 32), b"\x01\x01")
    eq(send(c, s, b"\nprint(1)\x04"), b"\x041\r\n\x04\x04>")


def test_raw_paste_too_long_aborts_cleanly():
    c, s, _ = make(cfg={"console.paste_window": 64, "console.code_max": 256})
    to_raw(c, s)
    send(c, s, b"\x05A\x01")
    out = send(c, s, b"#" * 255)
    eq(out, b"\x01\x01")  # credit: 2 windows at start, +2: all 256 bytes granted
    eq(send(c, s, b"#"), b"\x04", "buffer full: abrupt end")
    eq(c.mode, PASTE_ABORT)
    eq(send(c, s, b"\x04"), b"\x04MemoryError: command longer than 256 bytes\r\n\x04>")
    eq(c.mode, RAW)
    eq(send(c, s, b"print(2)\x04"), b"OK2\r\n\x04\x04>")


def test_raw_paste_ctrl_c():
    c, s, _ = make()
    to_raw(c, s)
    send(c, s, b"\x05A\x01")
    eq(send(c, s, b"print(1)\x03"), b"\x04\x04KeyboardInterrupt: \r\n\x04>")
    eq(c.mode, RAW)


def test_raw_paste_timeout_returns_to_raw():
    c, s, _ = make(cfg={"console.paste_timeout_ms": 1000})
    to_raw(c, s)
    send(c, s, b"\x05A\x01print(", now=100)
    c.poll(1000)
    eq(c.mode, PASTE)
    c.poll(1101)
    eq(c.mode, RAW)
    eq(send(c, s, b"print(4)\x04", now=1200), b"OK4\r\n\x04\x04>")


# ---- guarantees -----------------------------------------------------------

def test_poll_without_input_allocates_nothing():
    c, s, _ = make()
    modes = []
    for prep in (b"", b"12", b"\r\x01", b"pri", b"\x03\x05A\x01pri"):
        send(c, s, prep)
        c.poll(0)
        micropython.heap_lock()
        try:
            for t in range(100):
                c.poll(t)
        finally:
            micropython.heap_unlock()
        modes.append(c.mode)
    eq(modes, [FRIENDLY, FRIENDLY, RAW, RAW, PASTE])


def test_user_code_cannot_break_poll():
    c, s, ch = make()
    to_raw(c, s)
    for src in (b"raise SystemExit", b"import sys; sys.exit(3)", b"raise KeyboardInterrupt",
                b"raise MemoryError", b"print(undefined)"):
        out = send(c, s, src + b"\x04")
        true(out.startswith(b"OK\x04") and out.endswith(b"\x04>"), out)
    eq(c.errors, 5)
    # a command that re-enables Ctrl-C is undone after it ran
    send(c, s, b"import micropython; micropython.kbd_intr(3)\x04")
    eq(c.commands, 6)


def test_rx_chunk_bounds_work_per_poll():
    c, s, _ = make(cfg={"console.rx_chunk": 8})
    s.feed(b"1234567890123\r")
    eq(c.poll(0), 8)
    eq(s.take(), b"12345678")
    eq(c.poll(1), 6)
    eq(s.take(), b"90123\r\n1234567890123\r\n>>> ")


def test_add_command_survives_soft_reset():
    c, s, _ = make()
    c.add("status", lambda: "all good")
    to_raw(c, s)
    eq(send(c, s, b"print(status())\x04"), b"OKall good\r\n\x04\x04>")
    send(c, s, b"\x04")
    eq(send(c, s, b"print(status())\x04"), b"OKall good\r\n\x04\x04>")


class BrokenStream:
    def readinto(self, buf):
        raise OSError(5)

    def write(self, b):
        raise OSError(5)


def test_stream_errors_never_leave_poll():
    c = Console(BrokenStream(), {})
    c.start()
    eq(c.poll(0), 0)
    eq(c.io_errors, 2)  # the banner write, the read


def test_poll_starts_console_if_start_was_forgotten():
    s = MemStream()
    c = Console(s, {})
    s.feed(b"1\r")
    c.poll(0)
    true(c._started, "kbd_intr(-1) applied")
    eq(s.take(), b"1\r\n1\r\n>>> ")  # no banner, but it answers


def test_needs_more_rule():
    eq(needs_more(b""), False)
    eq(needs_more(b"1+2"), False)
    eq(needs_more(b"if x:"), True)
    eq(needs_more(b"if x:\n  y\n"), False)
    eq(needs_more(b"ifx = 3"), False)
    eq(needs_more(b"@dec"), True)
    eq(needs_more(b"f(1,"), True)
    eq(needs_more(b"f(1,\n2)"), False)
    eq(needs_more(b"s = ')'"), False)
    eq(needs_more(b"s = '('"), False)
    eq(needs_more(b"s = '''abc"), True)
    eq(needs_more(b"s = '''abc\n'''"), False)
    eq(needs_more(b"x = 1 + \\"), True)
    eq(needs_more(b"x = [1, # ]"), True)
    eq(needs_more(b"s = 'it\\'s' + ("), True)


mptest.main(globals())
