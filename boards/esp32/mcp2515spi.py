"""SPI register access of the MCP2515 (boards/esp32/mcp2515.py, the CAN
driver, builds on it) and its bit timing.

``Mcp2515Spi`` owns the SPI bus, the chip-select pin and the transfer
buffers: every SPI transaction is one ``spi.write_readinto`` over
preallocated buffers through memoryviews made once (nothing allocates per
transaction).  ``_busy``/``_pending``: a method that talks SPI sets
``_busy``; an INT handler that finds it set only records ``_pending``, and
``_end`` then lets the driver drain the chip (``poll``), so transactions
never interleave.
"""
from micropython import const

# SPI instructions (the rest: mcp2515.py)
_READ = const(0x03)
_WRITE = const(0x02)        # (also mcp2515.py: its multi-byte writes)
_BIT_MODIFY = const(0x05)
_READ_STATUS = const(0xA0)
_BUF = const(24)


def bit_timing(osc_hz, bitrate, sample_permille=875, sjw=1):
    """CNF1, CNF2, CNF3 for ``bitrate`` with an ``osc_hz`` crystal.

    TQ = 2 * (BRP + 1) / Fosc; a bit is 1 (sync) + PRSEG + PHSEG1 + PHSEG2
    TQ.  Prefers 16 TQ per bit, then 17..25, then 15..8; the sample point is
    after PRSEG + PHSEG1.  Raises ValueError if no exact setting exists."""
    for ntq in (16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 15, 14, 13, 12, 11, 10, 9, 8):
        d = 2 * bitrate * ntq
        if osc_hz % d:
            continue
        brp = osc_hz // d - 1
        if brp > 63:
            continue
        sp = (ntq * sample_permille + 500) // 1000
        ps2 = ntq - sp
        if ps2 < 2:
            ps2 = 2
        tseg1 = ntq - 1 - ps2
        if ps2 > 8 or tseg1 < 2 or tseg1 > 16 or tseg1 < ps2:
            continue
        ps1 = tseg1 - 1 if tseg1 - 1 < 8 else 8
        prop = tseg1 - ps1
        s = sjw if sjw <= ps2 else ps2
        if s > 4:
            s = 4
        return ((s - 1) << 6) | brp, 0x80 | ((ps1 - 1) << 3) | (prop - 1), ps2 - 1
    raise ValueError("no MCP2515 bit timing for %d bit/s at %d Hz" % (bitrate, osc_hz))


class Mcp2515Spi:
    """``Mcp2515Spi(spi, cs)``: ``spi`` a configured ``machine.SPI`` (mode
    0,0, <= 10 MHz), ``cs`` an output Pin (idle high).  A subclass defines
    ``poll`` (called by ``_end`` when an interrupt was deferred)."""

    def __init__(self, spi, cs):
        self.spi = spi
        self.cs = cs
        cs.value(1)
        self._tx = bytearray(_BUF)
        self._rx = bytearray(_BUF)
        mt = memoryview(self._tx)
        mr = memoryview(self._rx)
        self._tv = [mt[:k] for k in range(_BUF + 1)]
        self._rv = [mr[:k] for k in range(_BUF + 1)]
        self._busy = 0
        self._pending = 0

    def _xfer(self, n):
        cs = self.cs
        cs.value(0)
        self.spi.write_readinto(self._tv[n], self._rv[n])
        cs.value(1)

    def _read(self, addr, n):
        """Read ``n`` registers from ``addr``; values at ``self._rx[2:2+n]``."""
        t = self._tx
        t[0] = _READ
        t[1] = addr
        for k in range(n):
            t[2 + k] = 0
        self._xfer(2 + n)

    def _write(self, addr, v):
        t = self._tx
        t[0] = _WRITE
        t[1] = addr
        t[2] = v
        self._xfer(3)

    def _modify(self, addr, mask, v):
        t = self._tx
        t[0] = _BIT_MODIFY
        t[1] = addr
        t[2] = mask
        t[3] = v
        self._xfer(4)

    def _status(self):
        t = self._tx
        t[0] = _READ_STATUS
        t[1] = 0
        self._xfer(2)
        return self._rx[1]

    def read_register(self, addr):
        self._busy = 1
        self._read(addr, 1)
        v = self._rx[2]
        self._end()
        return v

    def _end(self):
        self._busy = 0
        if self._pending:
            self._pending = 0
            self.poll()
