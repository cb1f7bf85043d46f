"""The friendly REPL of the diagnostics console: line editing, echo,
continuation lines, paste mode (Ctrl-E), and the keys that leave it.

A mixin of ``diag.console.Console`` (which owns the stream, the buffers and
command execution); byte for byte what MicroPython's ``pyexec.c`` friendly
REPL answers, without history or cursor editing (escape sequences are
swallowed).
"""
from micropython import const
from diag.repl_io import (needs_more, FRIENDLY, RAW, CTRL_A, CTRL_B, CTRL_C,
                          CTRL_D, CTRL_E, LF, CR, RAW_BANNER, PS1)

_BS = const(8)
_TAB = const(9)
_ESC = const(27)
_DEL = const(127)

# Escape-sequence states (cursor keys etc. are swallowed).
_E_NONE = const(0)
_E_ESC = const(1)
_E_CSI = const(2)

_PS2 = b"... "


class FriendlyRepl:
    def _friendly_state(self):
        self._line0 = 0      # start of the current line in _buf
        self._cont = False   # continuation lines being collected
        self._fpaste = False  # paste mode (Ctrl-E)
        self._esc = _E_NONE
        self._last_cr = False

    def _to_friendly(self, pre):
        self.mode = FRIENDLY
        self._n = 0
        self._overflow = False
        self._restart(pre + self._banner)

    def _restart(self, pre=None):
        """New input: clear everything and print the primary prompt."""
        if pre:
            self._put(pre)
        self._n = 0
        self._line0 = 0
        self._cont = False
        self._fpaste = False
        self._put(PS1)

    def _friendly_byte(self, c):
        if self._esc != _E_NONE:
            # Swallow ESC [ ... final, ESC O x (cursor keys): no history/editing.
            if self._esc == _E_ESC:
                self._esc = _E_CSI if c == 91 or c == 79 else _E_NONE
            elif 0x40 <= c <= 0x7E:
                self._esc = _E_NONE
            return
        last_cr = self._last_cr
        self._last_cr = c == CR
        if self._fpaste:
            self._paste_mode_byte(c, last_cr)
            return
        empty = self._n == self._line0
        if c == CR or (c == LF and not last_cr):
            self._put(b"\r\n")
            self._enter()
        elif c == LF:
            pass  # second half of CR LF
        elif c == _BS or c == _DEL:
            if not empty:
                # Remove one character (a whole UTF-8 sequence).
                n = self._n - 1
                while n > self._line0 and (self._buf[n] & 0xC0) == 0x80:
                    n -= 1
                self._n = n
                self._put(b"\b \b")
        elif c == CTRL_C:
            self._restart(b"\r\n")
        elif c == CTRL_D:
            if not empty:
                return
            if self._cont:
                self._put(b"\r\n")
                self._exec_friendly()
            else:
                self._put(b"\r\n")
                self._soft_reset()
                self._restart(self._banner)
        elif c == CTRL_A:
            if empty and not self._cont:
                self.mode = RAW
                self._n = 0
                self._put(b"\r\n")
                self._put(RAW_BANNER)
                self._put1(62)
        elif c == CTRL_B:
            if empty and not self._cont:
                self._restart(b"\r\n" + self._banner)
        elif c == CTRL_E:
            if empty and not self._cont:
                self._put(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
                self._n = 0
                self._fpaste = True
        elif c == _ESC:
            self._esc = _E_ESC
        elif c == _TAB:
            for _ in range(4):
                self._add_echo(32)
        elif c >= 32:
            self._add_echo(c)

    def _add_echo(self, c):
        if self._n < len(self._buf):
            self._buf[self._n] = c
            self._n += 1
            self._put1(c)
        else:
            self._put1(7)  # bell: input full

    def _enter(self):
        if self._n == 0:
            self._restart()
            return
        src = self._mv[:self._n]
        if needs_more(bytes(src)):
            if self._n < len(self._buf):
                self._buf[self._n] = LF
                self._n += 1
            self._line0 = self._n
            self._cont = True
            self._put(_PS2)
            return
        self._exec_friendly()

    def _exec_friendly(self):
        n = self._n
        single = not self._cont
        self._flush()
        self._run(n, single)
        self._restart()

    def _paste_mode_byte(self, c, last_cr):
        if c == CTRL_C:
            self._restart(b"\r\n")
        elif c == CTRL_D:
            self._put(b"\r\n")
            self._fpaste = False
            self._cont = True  # a block: exec, not eval
            self._exec_friendly()
        else:
            if c == LF and last_cr:
                return
            if c == CR:
                c = LF
            if self._n < len(self._buf):
                self._buf[self._n] = c
                self._n += 1
            if c == LF:
                self._put(b"\r\n=== ")
            else:
                self._put1(c)
