"""Fake ``pyb`` module for unit tests on the unix port (never deployed).

Only ``pyb.CAN`` is used by the boards (the fallback CAN driver for STM32
firmware older than 1.28).  It follows the documented signatures of current
MicroPython: ``send(data, id, *, timeout=0, rtr=False, extframe=False)``
(note: data first), ``recv(fifo, list=None, *, timeout=5000)`` filling a
5-element list ``[id, extframe, rtr, fmi, memoryview]``, ``any(fifo)``,
``info(list)``, ``state()``, ``setfilter(bank, mode, fifo, params, *, rtr,
extframe=False)``, ``restart()``.  ``pyb.Pin`` is ``machine.Pin``.
"""
import machine
from fakecan import CanCore

Pin = machine.Pin
cans = []


class CAN:
    NORMAL = 0
    LOOPBACK = 1
    SILENT = 2
    SILENT_LOOPBACK = 3
    STOPPED = 0
    ERROR_ACTIVE = 1
    ERROR_WARNING = 2
    ERROR_PASSIVE = 3
    BUS_OFF = 4
    LIST16 = 0
    MASK16 = 1
    LIST32 = 2
    MASK32 = 3

    def __init__(self, bus, *args, **kwargs):
        self.bus = bus
        self.core = CanCore()
        self.core.enabled = False
        self.mode = None
        self.kw = {}
        self.filters = {}
        self._fmi = 0
        cans.append(self)
        if args or kwargs:
            self.init(*args, **kwargs)

    def init(self, mode, prescaler=100, *, sjw=1, bs1=6, bs2=8, auto_restart=False,
             baudrate=0, sample_point=75, num_filter_banks=14):
        self.mode = mode
        self.kw = {"baudrate": baudrate, "sample_point": sample_point,
                   "auto_restart": auto_restart, "prescaler": prescaler}
        self.core.loopback = mode in (CAN.LOOPBACK, CAN.SILENT_LOOPBACK)
        self.core.enabled = True
        # Until a filter is set the STM32 bxCAN receives nothing.
        self.core.accept = []

    def deinit(self):
        self.core.enabled = False

    def setfilter(self, bank, mode, fifo, params, *, rtr=None, extframe=False):
        if mode != CAN.MASK32:
            raise ValueError("fake supports MASK32 only")
        self.filters[bank] = (params[0], params[1], extframe, fifo)
        self.core.accept = [(f[0], f[1], f[2]) for f in self.filters.values()]

    def clearfilter(self, bank, extframe=False):
        self.filters.pop(bank, None)
        self.core.accept = [(f[0], f[1], f[2]) for f in self.filters.values()]

    def any(self, fifo):
        return fifo == 0 and self.core.rx_n > 0

    def send(self, data, id, *, timeout=0, rtr=False, extframe=False):
        c = self.core
        if not c.enabled or c.bus_off:
            raise OSError(5)
        if isinstance(data, int):
            raise TypeError("fake needs a buffer")
        if len(data) > 8:
            raise ValueError("CAN data field too long")
        if c.tx_pending >= c.tx_slots:
            raise OSError(110)   # all three mailboxes in use: ETIMEDOUT
        c._tx(id, data, extframe)

    def recv(self, fifo, list=None, *, timeout=5000):
        c = self.core
        if c.rx_n == 0:
            raise OSError(110)
        if list is None:
            list = [0, 0, 0, 0, memoryview(bytearray(8))]
        c._fill(list, 4)
        fl = c.got_flags
        list[0] = c.got_id
        list[1] = bool(fl & 1)
        list[2] = bool(fl & 2)
        list[3] = self._fmi
        return list

    def state(self):
        return self.core.t_state(_STATES)

    def info(self, list=None):
        return self.core.t_info(list, 0)

    def restart(self):
        self.core.t_restart()

    def rxcallback(self, fifo, fun):
        self.cb = fun


_STATES = (CAN.STOPPED, CAN.ERROR_ACTIVE, CAN.ERROR_WARNING, CAN.ERROR_PASSIVE, CAN.BUS_OFF)
