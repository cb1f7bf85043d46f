"""Register-level model of the Microchip MCP2515 CAN controller (tests only).

The driver (boards/esp32/mcp2515.py) talks to it through the fake
``machine.SPI`` exactly as to the chip: the model watches the chip-select
pin (``select(level)``) and answers each SPI byte (``xfer(byte)``).  It
implements the SPI instruction set (RESET, READ, WRITE, BIT MODIFY, READ
STATUS, RX STATUS, LOAD TX BUFFER, READ RX BUFFER, RTS), the operating
modes (CANCTRL.REQOP -> CANSTAT.OPMOD; configuration-only registers are
write-protected outside configuration mode), the three transmit buffers,
the two receive buffers with acceptance filters/masks and RXB0 -> RXB1
rollover (BUKT), CANINTF/CANINTE and the INT pin, EFLG, TEC and REC.

Not modelled: bus timing/arbitration (a requested frame is "sent" at once,
unless ``tx_hold``), one-shot mode, sleep wake-up, CLKOUT, RXnBF pins,
data-byte filtering of standard frames.

Test side: ``t_inject(id, data, ext=True, rtr=False)`` puts a frame on the
bus (returns "RXB0", "RXB1", "overflow" or None if filtered out);
``t_sent()`` lists transmitted frames as (id, bytes, ext); ``t_errors(tec,
rec)`` sets the error counters (TEC > 255 = bus-off); ``bitrate()`` /
``sample_permille()`` decode CNF1-3; ``violations`` counts writes the
datasheet forbids (e.g. a TX buffer modified while TXREQ is set).
"""
# The register map and the bus side: mcp2515_bus.py (names re-exported here
# for the tests, which know the model by this module)
from mcp2515_bus import Mcp2515Bus  # noqa: E402
from mcp2515_bus import (  # noqa: F401
    RESET, READ, WRITE, BIT_MODIFY, READ_STATUS, RX_STATUS, CANSTAT, CANCTRL, TEC, REC,
    CNF3, CNF2, CNF1, CANINTE, CANINTF, EFLG, TXB, RXB, FILTERS, MASKS, MODE_NORMAL,
    MODE_SLEEP, MODE_LOOPBACK, MODE_LISTEN, MODE_CONFIG, LOG)

_S_IDLE = 0
_S_INSTR = 1
_S_ADDR = 2
_S_READ = 3
_S_WRITE = 4
_S_MASK = 5
_S_DATA = 6
_S_STATUS = 7
_S_RXSTATUS = 8
_S_RXBUF = 9
_S_TXBUF = 10
_S_DONE = 11

_LOAD_TX = (0x31, 0x36, 0x41, 0x46, 0x51, 0x56)
_READ_RX = (0x61, 0x66, 0x71, 0x76)


def _cfg_only(a):
    return a < 0x0C or 0x10 <= a < 0x1C or 0x20 <= a < 0x28 or CNF3 <= a <= CNF1


class MCP2515Model(Mcp2515Bus):
    def __init__(self, osc_hz=8000000, int_pin=None):
        Mcp2515Bus.__init__(self, osc_hz, int_pin)
        self.state = _S_IDLE
        self.instr = 0
        self.addr = 0
        self.mask = 0
        self.rx_clear = -1
        self.violations = 0
        self.resets = 0
        self.transactions = 0
        self._reset()

    # ------------------------------------------------------------ chip
    def _reset(self):
        for i in range(128):
            self.regs[i] = 0
        self.regs[CANCTRL] = 0x87
        self.regs[CANSTAT] = 0x80
        self.tec = 0
        self.rec = 0
        self.resets += 1
        self._update_int()

    def select(self, level):
        """Chip-select pin watcher (wired by the test with machine.watch_pin)."""
        if level == 0:
            self.state = _S_INSTR
            self.transactions += 1
        else:
            if self.rx_clear >= 0:
                self.regs[CANINTF] &= ~(1 << self.rx_clear) & 0xFF
                self.rx_clear = -1
                self._update_int()
            self.state = _S_IDLE

    def _read(self, a):
        a &= 0x7F
        low = a & 0x0F
        if low == 0x0E:
            return self.regs[CANSTAT]
        if low == 0x0F:
            return self.regs[CANCTRL]
        return self.regs[a]

    def _write(self, a, v):
        a &= 0x7F
        r = self.regs
        low = a & 0x0F
        if a == CANSTAT or a == TEC or a == REC or low == 0x0E:
            return                          # read-only
        if low == 0x0F:
            r[CANCTRL] = v
            self._set_mode((v >> 5) & 7)
            return
        if _cfg_only(a) and self.mode() != MODE_CONFIG:
            self.violations += 1
            return
        for n in range(3):
            b = TXB[n]
            if b < a < b + 0x0E and r[b] & 0x08:
                self.violations += 1        # TX buffer changed while TXREQ set
                return
            if a == b:
                r[a] = (r[a] & 0x70) | (v & 0x0B)
                if v & 0x08:
                    self._kick()
                return
        if a == EFLG:
            r[a] = (r[a] & 0x3F) | (v & 0xC0)   # only RXnOVR are writable
            return
        r[a] = v
        if a == CANINTF or a == CANINTE:
            self._update_int()

    def _set_mode(self, m):
        if m > 4:
            m = 4
        r = self.regs
        r[CANSTAT] = (r[CANSTAT] & 0x1F) | (m << 5)
        self._kick()

    def _status(self):
        r = self.regs
        f = r[CANINTF]
        s = f & 0x03
        if r[TXB[0]] & 0x08:
            s |= 0x04
        if f & 0x04:
            s |= 0x08
        if r[TXB[1]] & 0x08:
            s |= 0x10
        if f & 0x08:
            s |= 0x20
        if r[TXB[2]] & 0x08:
            s |= 0x40
        if f & 0x10:
            s |= 0x80
        return s

    def _rx_status(self):
        r = self.regs
        f = r[CANINTF] & 3
        s = f << 6
        if f:
            b = RXB[0] if f & 1 else RXB[1]
            ext = r[b + 2] & 0x08
            if ext:
                s |= 0x10 | (0x08 if r[b + 5] & 0x40 else 0)
            elif r[b + 2] & 0x10:
                s |= 0x08
            s |= (r[RXB[0]] & 1) if f & 1 else (r[RXB[1]] & 7)
        return s

    def xfer(self, b):
        st = self.state
        if st == _S_IDLE:
            return 0xFF
        if st == _S_INSTR:
            self.instr = b
            if b == RESET:
                self._reset()
                self.state = _S_DONE
            elif b == READ or b == WRITE or b == BIT_MODIFY:
                self.state = _S_ADDR
            elif b == READ_STATUS:
                self.state = _S_STATUS
            elif b == RX_STATUS:
                self.state = _S_RXSTATUS
            elif b & 0xF8 == 0x40 and b & 7 < 6:
                self.addr = _LOAD_TX[b & 7]
                n = (b & 7) >> 1
                if self.regs[TXB[n]] & 0x08:
                    self.violations += 1
                self.state = _S_TXBUF
            elif b & 0xF9 == 0x90:
                k = (b >> 1) & 3
                self.addr = _READ_RX[k]
                self.rx_clear = k >> 1
                self.state = _S_RXBUF
            elif b & 0xF8 == 0x80:
                for n in range(3):
                    if b & (1 << n):
                        self._write(TXB[n], self.regs[TXB[n]] | 0x08)
                self.state = _S_DONE
            else:
                self.violations += 1
                self.state = _S_DONE
            return 0xFF
        if st == _S_ADDR:
            self.addr = b & 0x7F
            i = self.instr
            self.state = _S_READ if i == READ else (_S_WRITE if i == WRITE else _S_MASK)
            return 0xFF
        if st == _S_READ or st == _S_RXBUF:
            v = self._read(self.addr)
            self.addr = (self.addr + 1) & 0x7F
            return v
        if st == _S_WRITE or st == _S_TXBUF:
            self._write(self.addr, b)
            self.addr = (self.addr + 1) & 0x7F
            return 0xFF
        if st == _S_MASK:
            self.mask = b
            self.state = _S_DATA
            return 0xFF
        if st == _S_DATA:
            old = self._read(self.addr)
            self._write(self.addr, (old & ~self.mask & 0xFF) | (b & self.mask))
            self.state = _S_DONE
            return 0xFF
        if st == _S_STATUS:
            return self._status()
        if st == _S_RXSTATUS:
            return self._rx_status()
        return 0xFF
