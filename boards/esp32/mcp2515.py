"""Driver for the Microchip MCP2515 stand-alone CAN controller on machine.SPI.

Mainline MicroPython has no driver for the ESP32's TWAI controller, so the
ESP32 board uses an MCP2515 (+ transceiver) on SPI.  This driver is ours:

- reset, bit timing computed for the crystal (8 MHz and 16 MHz give
  250 kbit/s at 16 TQ, sample point 87.5 %; ``mcp2515spi.bit_timing``),
  configuration / normal / loopback / listen-only modes;
- extended-id transmit through TXB0..TXB2 (``send``);
- receive from RXB0/RXB1 with RXB0 -> RXB1 rollover into a software ring
  (``poll``), popped into the caller's preallocated slot (``recv_into``);
- acceptance filters and masks (``set_filters``);
- TEC/REC and EFLG -> bus state (``state``), counters;
- optional INT pin: a (soft) pin interrupt drains the chip into the ring,
  so the two hardware buffers do not overflow between main-loop polls.

Hot paths (``send``, ``poll``, ``recv_into``, ``state``, ``counters``)
allocate nothing: every SPI transaction is a ``spi.write_readinto`` over
preallocated buffers through memoryviews made once (the SPI register
access, ``mcp2515spi.Mcp2515Spi``, is the base class).

Transmit order: the chip sends the pending buffer with the highest TXP
priority first (ties: highest buffer number first), so ``send`` gives each
new frame a TXP one lower than every frame still pending.  Frames leave in
``send`` order; when the lowest level is taken ``send`` returns False until
the chip has drained (the caller counts it and retries next tick).

Receive order: the MCP2515 has two buffers and no timestamps.  When both are
full at one status read, RXB0 is read first (RXB1 then holds the rollover
frame).  A burst that refills RXB0 while RXB1 waits can still come out of
order; the INT pin keeps that window small (see docs/boards.md).

Concurrency: the INT handler may run between any two bytecodes of the main
loop (soft IRQ).  Every method that talks SPI sets ``_busy``; a handler that
finds it set only records ``_pending`` and the interrupted method drains the
chip when it finishes, so SPI transactions never interleave.
"""
from micropython import const
import time
from .mcp2515spi import Mcp2515Spi, bit_timing

# SPI instructions (READ, BIT MODIFY, READ STATUS: mcp2515spi.py)
_RESET = const(0xC0)
_WRITE = const(0x02)        # (multi-byte writes: CNF3..1, masks, filters)
_LOAD_TX = const(0x40)
_READ_RX = const(0x90)

# registers
_CANSTAT = const(0x0E)
_CANCTRL = const(0x0F)
_TEC = const(0x1C)
_CNF3 = const(0x28)
_CANINTE = const(0x2B)
_CANINTF = const(0x2C)
_EFLG = const(0x2D)
_TXB0CTRL = const(0x30)
_RXB0CTRL = const(0x60)
_RXB1CTRL = const(0x70)

MODE_NORMAL = const(0x00)
MODE_SLEEP = const(0x20)
MODE_LOOPBACK = const(0x40)
MODE_LISTEN = const(0x60)
MODE_CONFIG = const(0x80)

# bus states, numbered as firmware/board.py CAN_*
STATE_ACTIVE = const(0)
STATE_WARNING = const(1)
STATE_PASSIVE = const(2)
STATE_BUS_OFF = const(3)
STATE_STOPPED = const(4)

_FILTER_ADDR = (0x00, 0x04, 0x08, 0x10, 0x14, 0x18)
_MASK_ADDR = (0x20, 0x24)


class MCP2515(Mcp2515Spi):
    """``MCP2515(spi, cs, osc_hz=8000000, bitrate=250000, sample_permille=875,
    sjw=1, int_pin=None, rx_depth=16)``; then ``init(mode, filters)``.

    ``spi`` a configured ``machine.SPI`` (mode 0,0, <= 10 MHz), ``cs`` an
    output Pin (idle high), ``int_pin`` an input Pin wired to INT or None
    (then call ``poll()`` often)."""

    def __init__(self, spi, cs, osc_hz=8000000, bitrate=250000, sample_permille=875,
                 sjw=1, int_pin=None, rx_depth=16):
        Mcp2515Spi.__init__(self, spi, cs)
        self.cnf = bit_timing(osc_hz, bitrate, sample_permille, sjw)
        self._depth = rx_depth
        self._ids = [0] * rx_depth
        self._dlc = bytearray(rx_depth)
        self._data = bytearray(8 * rx_depth)
        self._head = 0
        self._n = 0
        self._txp = bytearray(3)
        self.mode = MODE_CONFIG
        self.tec = 0
        self.rec = 0
        self.eflg = 0
        self.tx_frames = 0
        self.tx_fail = 0
        self.rx_frames = 0
        self.rx_dropped = 0
        self.overruns = 0        # software ring full
        self.hw_overruns = 0     # RXnOVR seen in EFLG
        self.irqs = 0
        self.int_pin = int_pin
        self.irq_cb = self._on_irq      # bound once (no allocation per IRQ)
        self._filters = None
        self._want_mode = MODE_NORMAL

    # ------------------------------------------------------------ set-up
    def reset(self):
        self._busy = 1
        self._tx[0] = _RESET
        self._xfer(1)
        time.sleep_ms(2)             # oscillator start-up after reset
        self._read(_CANSTAT, 1)
        ok = self._rx[2] & 0xE0 == MODE_CONFIG
        self.mode = MODE_CONFIG
        self._n = 0
        self._head = 0
        self._end()
        return ok

    def init(self, mode=MODE_NORMAL, filters=None):
        """Reset and configure; ``filters`` as for ``set_filters``.

        Raises OSError if the chip does not answer (wiring, crystal)."""
        if not self.reset():
            raise OSError("MCP2515 not responding")
        self._busy = 1
        t = self._tx
        t[0] = _WRITE
        t[1] = _CNF3                 # CNF3, CNF2, CNF1 are consecutive
        t[2] = self.cnf[2]
        t[3] = self.cnf[1]
        t[4] = self.cnf[0]
        self._xfer(5)
        self._write(_CANINTE, 0x03)          # RX0IE | RX1IE drive INT
        self._write(_RXB0CTRL, 0x04)         # filters on, BUKT rollover
        self._write(_RXB1CTRL, 0x00)
        self._end()
        self._filters = filters
        self._want_mode = mode
        self._load_filters(filters)
        if not self.set_mode(mode):
            raise OSError("MCP2515 refused mode 0x%02x" % mode)
        if self.int_pin is not None:
            import machine
            self.int_pin.irq(handler=self.irq_cb, trigger=machine.Pin.IRQ_FALLING,
                             hard=False)

    def set_mode(self, mode):
        """Request an operating mode; True once CANSTAT confirms it."""
        self._busy = 1
        self._modify(_CANCTRL, 0xE0, mode)
        ok = False
        for _ in range(20):
            self._read(_CANSTAT, 1)
            if self._rx[2] & 0xE0 == mode:
                ok = True
                break
            time.sleep_ms(1)
        if ok:
            self.mode = mode
        self._end()
        return ok

    def _id_regs(self, t, i, can_id, ext):
        """Encode an id into SIDH, SIDL, EID8, EID0 at t[i..i+3]."""
        if ext:
            sid = (can_id >> 18) & 0x7FF
            t[i] = sid >> 3
            t[i + 1] = ((sid & 7) << 5) | 0x08 | ((can_id >> 16) & 3)
            t[i + 2] = (can_id >> 8) & 0xFF
            t[i + 3] = can_id & 0xFF
        else:
            t[i] = (can_id >> 3) & 0xFF
            t[i + 1] = (can_id & 7) << 5
            t[i + 2] = 0
            t[i + 3] = 0

    def _load_filters(self, filters):
        """Write masks and filters (configuration mode only)."""
        if filters is None:
            filters = ((0, 0),)       # every extended frame
        if len(filters) > 2:
            raise ValueError("MCP2515: at most 2 (id, mask) pairs")
        f0 = filters[0]
        f1 = filters[1] if len(filters) > 1 else f0
        self._busy = 1
        t = self._tx
        for k in range(2):
            f = f0 if k == 0 else f1
            t[0] = _WRITE
            t[1] = _MASK_ADDR[k]
            self._id_regs(t, 2, f[1], True)
            t[3] &= 0xF7              # masks have no EXIDE bit
            self._xfer(6)
        for k in range(6):
            f = f0 if k < 2 else f1
            t[0] = _WRITE
            t[1] = _FILTER_ADDR[k]
            self._id_regs(t, 2, f[0], True)
            self._xfer(6)
        self._end()

    def set_filters(self, filters):
        """Accept extended frames matching ``(id, mask)`` pairs (at most 2:
        the first drives RXB0's mask and filters, the second RXB1's); None =
        every extended frame.  Standard frames are never accepted."""
        mode = self.mode
        if mode != MODE_CONFIG and not self.set_mode(MODE_CONFIG):
            return False
        self._load_filters(filters)
        self._filters = filters
        return self.set_mode(mode) if mode != MODE_CONFIG else True

    # ------------------------------------------------------------ transmit
    def send(self, can_id, buf, n):
        """Queue an extended frame; False if all buffers are busy."""
        if n < 0 or n > 8:
            self.tx_fail += 1
            return False
        self._busy = 1
        s = self._status()
        k = -1
        low = 4
        for b in range(3):
            if s & (0x04 << (2 * b)):
                p = self._txp[b]
                if p < low:
                    low = p
            elif k < 0:
                k = b
        if k < 0 or low == 0:
            self._end()
            self.tx_fail += 1
            return False
        prio = 3 if low == 4 else low - 1
        t = self._tx
        t[0] = _LOAD_TX | (k << 1)
        self._id_regs(t, 1, can_id, True)
        t[5] = n
        for i in range(n):
            t[6 + i] = buf[i]
        self._xfer(6 + n)
        self._txp[k] = prio
        self._write(_TXB0CTRL + (k << 4), 0x08 | prio)    # TXREQ with TXP
        self.tx_frames += 1
        self._end()
        return True

    # ------------------------------------------------------------ receive
    def poll(self):
        """Move received frames from the chip into the software ring."""
        if self._busy:
            self._pending = 1
            return
        self._busy = 1
        for _ in range(4):
            s = self._status() & 0x03
            if not s:
                break
            if s & 1:
                self._take(0)
            if s & 2:
                self._take(1)
        self._busy = 0
        if self._pending:
            self._pending = 0
            self.poll()

    def _take(self, k):
        t = self._tx
        t[0] = _READ_RX | (k << 2)
        for i in range(1, 14):
            t[i] = 0
        self._xfer(14)                 # CS rise clears RXkIF
        r = self._rx
        sidl = r[2]
        dlc = r[5] & 0x0F
        if not sidl & 0x08 or r[5] & 0x40:
            self.rx_dropped += 1       # standard or remote frame: not GB/T
            return
        if dlc > 8:
            dlc = 8
        if self._n >= self._depth:
            self.overruns += 1
            return
        j = self._head + self._n
        if j >= self._depth:
            j -= self._depth
        sid = (r[1] << 3) | (sidl >> 5)
        self._ids[j] = (sid << 18) | ((sidl & 3) << 16) | (r[3] << 8) | r[4]
        self._dlc[j] = dlc
        d = self._data
        o = j * 8
        for i in range(dlc):
            d[o + i] = r[6 + i]
        self._n += 1
        self.rx_frames += 1

    def any(self):
        if not self._n:
            self.poll()
        return self._n

    def recv_into(self, frame):
        """Fill ``frame`` (id, dlc, data) with the oldest frame; False if none."""
        if not self._n:
            self.poll()
            if not self._n:
                return False
        j = self._head
        n = self._dlc[j]
        frame.id = self._ids[j]
        frame.dlc = n
        d = frame.data
        s = self._data
        o = j * 8
        for i in range(n):
            d[i] = s[o + i]
        j += 1
        self._head = 0 if j >= self._depth else j
        self._n -= 1
        return True

    def _on_irq(self, _pin):
        self.irqs += 1
        self.poll()

    # ------------------------------------------------------------ errors
    def _errors(self):
        """Read TEC, REC, CANSTAT and EFLG; count and clear RX overflows."""
        self._read(_TEC, _EFLG - _TEC + 1)
        r = self._rx
        self.tec = r[2]
        self.rec = r[3]
        canstat = r[2 + _CANSTAT + 0x10 - _TEC]     # mirror of CANSTAT at 0x1E
        e = r[2 + _EFLG - _TEC]
        self.eflg = e
        if e & 0xC0:
            self.hw_overruns += 1
            self._modify(_EFLG, 0xC0, 0)
            self._modify(_CANINTF, 0x20, 0)
        return canstat & 0xE0

    def state(self):
        """Bus state (STATE_*, same numbers as firmware/board.py CAN_*)."""
        self._busy = 1
        mode = self._errors()
        self._end()
        e = self.eflg
        if mode == MODE_CONFIG or mode == MODE_SLEEP:
            return STATE_STOPPED
        if e & 0x20:
            return STATE_BUS_OFF
        if e & 0x18:
            return STATE_PASSIVE
        if e & 0x01:
            return STATE_WARNING
        return STATE_ACTIVE

    def counters(self, out):
        """out = [TEC, REC, tx_frames, rx_frames, overruns (ring + chip)]."""
        self._busy = 1
        self._errors()
        self._end()
        out[0] = self.tec
        out[1] = self.rec
        out[2] = self.tx_frames
        out[3] = self.rx_frames
        out[4] = self.overruns + self.hw_overruns

    def restart(self):
        """Full re-initialisation (the chip leaves bus-off on its own after
        128 x 11 recessive bits; this is the hard recovery)."""
        self.init(self._want_mode, self._filters)

    # board-adapter names (boards/pinboard/board.py PinBoard)
    def recv(self, frame):
        return self.recv_into(frame)
