"""The bus side of the MCP2515 register model (tests only; the SPI side:
mcp2515_model.py): the register map, the three transmit buffers (the
chip's send order, ``tx_hold``, loopback), the two receive buffers with
acceptance filters/masks and RXB0 -> RXB1 rollover, CANINTF and the INT
pin, the error counters and EFLG, and CNF1-3 decoded into bit timing.
"""
import machine

RESET = 0xC0
READ = 0x03
WRITE = 0x02
BIT_MODIFY = 0x05
READ_STATUS = 0xA0
RX_STATUS = 0xB0

CANSTAT = 0x0E
CANCTRL = 0x0F
TEC = 0x1C
REC = 0x1D
CNF3 = 0x28
CNF2 = 0x29
CNF1 = 0x2A
CANINTE = 0x2B
CANINTF = 0x2C
EFLG = 0x2D
TXB = (0x30, 0x40, 0x50)
RXB = (0x60, 0x70)
FILTERS = (0x00, 0x04, 0x08, 0x10, 0x14, 0x18)
MASKS = (0x20, 0x24)

MODE_NORMAL = 0
MODE_SLEEP = 1
MODE_LOOPBACK = 2
MODE_LISTEN = 3
MODE_CONFIG = 4

LOG = 64


class Mcp2515Bus:
    """Registers and bus state; ``MCP2515Model`` adds the SPI interface."""

    def __init__(self, osc_hz, int_pin):
        self.osc_hz = osc_hz
        self.int_pin = int_pin
        self.regs = bytearray(128)
        self.tx_hold = False
        self.tec = 0
        self.rec = 0
        self.log_ids = [0] * LOG
        self.log_ext = [0] * LOG
        self.log_dlc = [0] * LOG
        self.log_data = bytearray(8 * LOG)
        self.log_n = 0

    def mode(self):
        return self.regs[CANSTAT] >> 5

    # ------------------------------------------------------------ bus
    def _can_tx(self):
        m = self.mode()
        return (m == MODE_NORMAL or m == MODE_LOOPBACK) and self.tec <= 255

    def _next_tx(self):
        """Pending buffer the chip sends next: highest TXP, ties highest n."""
        r = self.regs
        best = -1
        for n in range(3):
            if r[TXB[n]] & 0x08 and (best < 0 or r[TXB[n]] & 3 >= r[TXB[best]] & 3):
                best = n
        return best

    def _kick(self):
        """An idle bus: every pending frame goes out, in the chip's order."""
        if self.tx_hold and self.mode() == MODE_NORMAL:
            return
        while self._can_tx():
            n = self._next_tx()
            if n < 0:
                return
            self._tx(n)

    def t_send_one(self):
        """Transmit only the frame the chip would send next (even if held)."""
        n = self._next_tx()
        if n >= 0 and self._can_tx():
            self._tx(n)
        return n

    def _tx(self, n):
        r = self.regs
        m = self.mode()
        b = TXB[n]
        sidh = r[b + 1]
        sidl = r[b + 2]
        ext = sidl & 0x08
        sid = (sidh << 3) | (sidl >> 5)
        if ext:
            can_id = (sid << 18) | ((sidl & 3) << 16) | (r[b + 3] << 8) | r[b + 4]
        else:
            can_id = sid
        dlc = r[b + 5] & 0x0F
        if dlc > 8:
            dlc = 8
        j = self.log_n % LOG
        self.log_ids[j] = can_id
        self.log_ext[j] = 1 if ext else 0
        self.log_dlc[j] = dlc
        for k in range(dlc):
            self.log_data[j * 8 + k] = r[b + 6 + k]
        self.log_n += 1
        r[b] &= ~0x08 & 0xFF
        r[CANINTF] |= 0x04 << n
        self._update_int()
        if m == MODE_LOOPBACK:
            self._receive(can_id, ext, r[b + 5] & 0x40, r, b + 6, dlc)

    def t_sent(self):
        out = []
        for i in range(self.log_n):
            j = i % LOG
            out.append((self.log_ids[j],
                        bytes(self.log_data[j * 8:j * 8 + self.log_dlc[j]]),
                        self.log_ext[j]))
        return out

    def t_release(self):
        """Transmit every frame held pending by ``tx_hold``."""
        self.tx_hold = False
        self._kick()

    def t_inject(self, can_id, data, ext=True, rtr=False):
        m = self.mode()
        if m != MODE_NORMAL and m != MODE_LISTEN and m != MODE_LOOPBACK:
            return None
        return self._receive(can_id, ext, rtr, data, 0, len(data))

    def _match(self, f, m, can_id, ext):
        r = self.regs
        fext = r[f + 1] & 0x08
        if bool(fext) != bool(ext):
            return False
        fsid = (r[f] << 3) | (r[f + 1] >> 5)
        msid = (r[m] << 3) | (r[m + 1] >> 5)
        if ext:
            fid = (fsid << 18) | ((r[f + 1] & 3) << 16) | (r[f + 2] << 8) | r[f + 3]
            mid = (msid << 18) | ((r[m + 1] & 3) << 16) | (r[m + 2] << 8) | r[m + 3]
            return (can_id ^ fid) & mid == 0
        return (can_id ^ fsid) & msid == 0

    def _hit(self, buf, can_id, ext):
        r = self.regs
        if (r[RXB[buf]] >> 5) & 3 == 3:
            return 0 if buf == 0 else 2     # filters off: receive any
        lo = 0 if buf == 0 else 2
        hi = 2 if buf == 0 else 6
        m = MASKS[buf]
        for k in range(lo, hi):
            if self._match(FILTERS[k], m, can_id, ext):
                return k
        return -1

    def _receive(self, can_id, ext, rtr, src, off, n):
        r = self.regs
        h0 = self._hit(0, can_id, ext)
        if h0 >= 0:
            if not r[CANINTF] & 1:
                self._load(0, can_id, ext, rtr, src, off, n)
                r[RXB[0]] = (r[RXB[0]] & 0xFE) | h0
                return "RXB0"
            if r[RXB[0]] & 0x04:           # BUKT: roll over into RXB1
                if not r[CANINTF] & 2:
                    self._load(1, can_id, ext, rtr, src, off, n)
                    r[RXB[1]] = (r[RXB[1]] & 0xF8) | (6 + h0)
                    return "RXB1"
                r[EFLG] |= 0x80
            else:
                r[EFLG] |= 0x40
            r[CANINTF] |= 0x20             # ERRIF
            self._update_int()
            return "overflow"
        h1 = self._hit(1, can_id, ext)
        if h1 >= 0:
            if not r[CANINTF] & 2:
                self._load(1, can_id, ext, rtr, src, off, n)
                r[RXB[1]] = (r[RXB[1]] & 0xF8) | h1
                return "RXB1"
            r[EFLG] |= 0x80
            r[CANINTF] |= 0x20
            self._update_int()
            return "overflow"
        return None

    def _load(self, k, can_id, ext, rtr, src, off, n):
        r = self.regs
        b = RXB[k]
        if ext:
            sid = can_id >> 18
            r[b + 1] = sid >> 3
            r[b + 2] = ((sid & 7) << 5) | 0x08 | ((can_id >> 16) & 3)
            r[b + 3] = (can_id >> 8) & 0xFF
            r[b + 4] = can_id & 0xFF
            r[b + 5] = n | (0x40 if rtr else 0)
        else:
            r[b + 1] = can_id >> 3
            r[b + 2] = ((can_id & 7) << 5) | (0x10 if rtr else 0)
            r[b + 3] = 0
            r[b + 4] = 0
            r[b + 5] = n
        for i in range(n):
            r[b + 6 + i] = src[off + i]
        r[CANINTF] |= 1 << k
        self._update_int()

    def _update_int(self):
        if self.int_pin is None:
            return
        active = self.regs[CANINTF] & self.regs[CANINTE]
        lv = 0 if active else 1
        if machine.level(self.int_pin) != lv:
            machine.set_level(self.int_pin, lv)

    # ------------------------------------------------------------ errors
    def t_errors(self, tec, rec):
        self.tec = tec
        self.rec = rec
        r = self.regs
        r[TEC] = tec if tec < 256 else 255
        r[REC] = rec if rec < 256 else 255
        e = r[EFLG] & 0xC0
        if tec >= 96 or rec >= 96:
            e |= 0x01
        if rec >= 96:
            e |= 0x02
        if tec >= 96:
            e |= 0x04
        if rec >= 128:
            e |= 0x08
        if tec >= 128:
            e |= 0x10
        if tec > 255:
            e |= 0x20
        r[EFLG] = e

    # ------------------------------------------------------------ timing
    def timing(self):
        """(brp, sjw, prseg, phseg1, phseg2, ntq) decoded from CNF1-3."""
        r = self.regs
        brp = r[CNF1] & 0x3F
        sjw = (r[CNF1] >> 6) + 1
        prseg = (r[CNF2] & 7) + 1
        ps1 = ((r[CNF2] >> 3) & 7) + 1
        ps2 = (r[CNF3] & 7) + 1 if r[CNF2] & 0x80 else max(ps1, 2)
        return brp, sjw, prseg, ps1, ps2, 1 + prseg + ps1 + ps2

    def bitrate(self):
        brp, _, _, _, _, ntq = self.timing()
        return self.osc_hz // (2 * (brp + 1) * ntq)

    def sample_permille(self):
        _, _, prseg, ps1, _, ntq = self.timing()
        return (1 + prseg + ps1) * 1000 // ntq
