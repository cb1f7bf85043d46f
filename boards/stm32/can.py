"""The STM32's CAN controller behind the pin board's CAN adapter interface
(``send/recv/state/counters/restart``, see ``pinboard.board.PinBoard``):
``machine.CAN`` (MicroPython >= 1.28) or ``pyb.CAN`` (older firmware; note
``send(data, id)`` argument order).  Per-frame calls allocate nothing.
"""
import machine
from micropython import const
import board as _contract


def _fill(frame, can_id, data):
    """A received frame into the app's preallocated ``CanFrame`` (at most
    8 data bytes: a longer payload is an FD frame GB/T never sends)."""
    n = len(data)
    if n > 8:
        n = 8
    d = frame.data
    for k in range(n):
        d[k] = data[k]
    frame.id = can_id
    frame.dlc = n


_NONE = const(0)        # _next: the receive FIFO is empty
_DATA = const(1)        # an extended data frame, in _rxl
_OTHER = const(2)       # a frame GB/T never uses (standard id, remote): dropped


class _Adapter:
    """What both adapters share: the transmit buffer and its views (one per
    length, made once), the receive loop (the port's ``_next`` reads a frame
    into ``_rxl``: id at 0, data at ``_data_at``), the frame counters, the
    state mapping (the port's four state values in ``_states``: active,
    warning, passive, bus-off)."""

    def __init__(self, states):
        self._txb = bytearray(8)
        mv = memoryview(self._txb)
        self._txv = [mv[:k] for k in range(9)]
        self._states = states
        self.tx_frames = 0
        self.tx_fail = 0
        self.rx_frames = 0
        self.rx_dropped = 0
        self.overruns = 0

    def _tx(self, buf, n):
        """``buf[0:n]`` copied into the transmit buffer; its view."""
        tb = self._txb
        for k in range(n):
            tb[k] = buf[k]
        return self._txv[n]

    def recv(self, frame):
        l = self._rxl
        for _ in range(8):      # skip (bounded) frames GB/T never uses
            k = self._next(l)
            if k == _NONE:
                return False
            if k == _OTHER:
                self.rx_dropped += 1
                continue
            _fill(frame, l[0], l[self._data_at])
            self.rx_frames += 1
            return True
        return False

    def state(self):
        s = self.can.state()
        st = self._states
        if s == st[0]:
            return _contract.CAN_ERROR_ACTIVE
        if s == st[1]:
            return _contract.CAN_ERROR_WARNING
        if s == st[2]:
            return _contract.CAN_ERROR_PASSIVE
        if s == st[3]:
            return _contract.CAN_BUS_OFF
        return _contract.CAN_STOPPED

    def _count(self, out, tec, rec):
        out[0] = tec
        out[1] = rec
        out[2] = self.tx_frames
        out[3] = self.rx_frames
        out[4] = self.overruns

    def restart(self):
        self.can.restart()


class MachineCan(_Adapter):
    """CAN adapter over ``machine.CAN`` (MicroPython >= 1.28)."""

    def __init__(self, bus, bitrate, sample_point, filters):
        C = machine.CAN
        _Adapter.__init__(self, (C.STATE_ACTIVE, C.STATE_WARNING, C.STATE_PASSIVE,
                                 C.STATE_BUS_OFF))
        self.can = C(bus, bitrate, mode=C.MODE_NORMAL, sample_point=sample_point)
        if filters is None:
            self.can.set_filters(None)
        else:
            self.can.set_filters([(i, m, C.FLAG_EXT_ID) for i, m in filters])
        self._ext = C.FLAG_EXT_ID
        self._rtr = C.FLAG_RTR
        self._ovr = C.RECV_ERR_OVERRUN
        self._s_off = C.STATE_BUS_OFF
        self._rxl = [0, memoryview(bytearray(8)), 0, 0]     # id, data, flags, errors
        self._data_at = 1
        self._cnt = [0] * 8

    def send(self, can_id, buf, n):
        if n < 0 or n > 8 or self.can.state() == self._s_off:
            self.tx_fail += 1
            return False
        try:
            r = self.can.send(can_id, self._tx(buf, n), self._ext)
        except OSError:
            r = None
        if r is None:
            self.tx_fail += 1
            return False
        self.tx_frames += 1
        return True

    def _next(self, l):
        if self.can.recv(l) is None:
            return _NONE
        if l[3] & self._ovr:
            self.overruns += 1
        fl = l[2]
        if not (fl & self._ext) or (fl & self._rtr):
            return _OTHER
        return _DATA

    def counters(self, out):
        c = self.can.get_counters(self._cnt)
        self._count(out, c[0] if c[0] is not None else 0, c[1] if c[1] is not None else 0)


class PybCan(_Adapter):
    """CAN adapter over ``pyb.CAN`` (STM32 firmware before machine.CAN).

    ``send(data, id, *, timeout=0, extframe=True)``: data first.  ``recv``
    raises when the FIFO is empty, so ``any(0)`` is asked first; ``send``
    raises when all three mailboxes are busy, so ``info()[5]`` is asked
    first (exceptions allocate)."""

    def __init__(self, bus, bitrate, sample_point, filters):
        import pyb
        C = pyb.CAN
        _Adapter.__init__(self, (C.ERROR_ACTIVE, C.ERROR_WARNING, C.ERROR_PASSIVE,
                                 C.BUS_OFF))
        self._C = C
        self.can = C(bus, C.NORMAL, baudrate=bitrate, sample_point=sample_point,
                     auto_restart=False)
        if filters is None:
            filters = ((0, 0),)
        bank = 0
        for i, m in filters:
            self.can.setfilter(bank, C.MASK32, 0, (i, m), extframe=True)
            bank += 1
        self._rxl = [0, 0, 0, 0, memoryview(bytearray(8))]  # id, ext, rtr, fmi, data
        self._data_at = 4
        self._info = [0] * 8

    def send(self, can_id, buf, n):
        c = self.can
        if n < 0 or n > 8 or c.state() == self._C.BUS_OFF:
            self.tx_fail += 1
            return False
        if c.info(self._info)[5] >= 3:
            self.tx_fail += 1
            return False
        try:
            c.send(self._tx(buf, n), can_id, timeout=0, extframe=True)
        except OSError:
            self.tx_fail += 1
            return False
        self.tx_frames += 1
        return True

    def _next(self, l):
        c = self.can
        if not c.any(0):
            return _NONE
        try:
            c.recv(0, l, timeout=0)
        except OSError:
            return _NONE
        if not l[1] or l[2]:
            return _OTHER
        return _DATA

    def counters(self, out):
        i = self.can.info(self._info)
        self._count(out, i[0], i[1])
