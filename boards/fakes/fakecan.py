"""Fake CAN controllers for unit tests on the unix port (never deployed):
the bus model both fakes share (``CanCore``) and ``machine.CAN`` as
documented for MicroPython 1.28+ (``machine.CAN`` is this class: the fake
``machine`` module imports it; ``pyb.CAN``, the older STM32 API, builds on
the same ``CanCore`` in pyb.py).  Allocation-free on the controller side,
like the real drivers, so a board's hot path can run under
``micropython.heap_lock()``.
"""

CANS = []          # every machine.CAN made (``machine.cans``; t_reset empties it)


class CanCore:
    """Bus model shared by the machine.CAN and pyb.CAN fakes.

    Frames sent are logged in a preallocated ring (``t_sent()`` returns them
    as (id, bytes, ext)); ``t_inject`` queues a received frame.  Error
    counters are set with ``t_errors(tec, rec)``; ``t_bus_off()`` drives the
    controller bus-off.  Up to ``tx_slots`` frames may be pending in the
    hardware; they complete at once unless ``hold_tx`` is True (then
    ``t_complete()`` completes them)."""

    RX_DEPTH = 16
    LOG = 64

    def __init__(self):
        self.loopback = False
        self.silent = False
        self.enabled = True
        self.tec = 0
        self.rec = 0
        self.bus_off = False
        self.hold_tx = False
        self.tx_slots = 3
        self.tx_pending = 0
        self.rx_ids = [0] * self.RX_DEPTH
        self.rx_flags = [0] * self.RX_DEPTH
        self.rx_dlc = [0] * self.RX_DEPTH
        self.rx_data = bytearray(8 * self.RX_DEPTH)
        self.rx_head = 0
        self.rx_n = 0
        self.overruns = 0
        self.log_ids = [0] * self.LOG
        self.log_ext = [0] * self.LOG
        self.log_dlc = [0] * self.LOG
        self.log_data = bytearray(8 * self.LOG)
        self.log_n = 0
        self.accept = None      # None = all; else list of (id, mask, ext)
        self._mv = None         # the caller's full memoryview (see _fill)
        self._views = None
        self.restarts = 0
        self.got_id = 0
        self.got_flags = 0

    # -- bus side (test helpers)
    def t_inject(self, can_id, data, ext=True, rtr=False):
        if not self._accepts(can_id, ext):
            return False
        if self.rx_n >= self.RX_DEPTH:
            self.overruns += 1
            return False
        i = (self.rx_head + self.rx_n) % self.RX_DEPTH
        self.rx_ids[i] = can_id
        self.rx_flags[i] = (1 if ext else 0) | (2 if rtr else 0)
        self.rx_dlc[i] = len(data)
        for k in range(len(data)):
            self.rx_data[i * 8 + k] = data[k]
        self.rx_n += 1
        return True

    def t_sent(self):
        out = []
        for i in range(self.log_n):
            j = i % self.LOG
            out.append((self.log_ids[j], bytes(self.log_data[j * 8:j * 8 + self.log_dlc[j]]),
                        self.log_ext[j]))
        return out

    def t_errors(self, tec, rec):
        self.tec = tec
        self.rec = rec
        self.bus_off = tec > 255

    def t_bus_off(self):
        self.t_errors(256, self.rec)

    def t_complete(self):
        self.tx_pending = 0

    def _accepts(self, can_id, ext):
        if self.accept is None:
            return True
        for fid, mask, fext in self.accept:
            if fext == ext and (can_id & mask) == (fid & mask):
                return True
        return False

    # -- controller side (allocation-free)
    def _tx(self, can_id, data, ext):
        n = len(data)
        j = self.log_n % self.LOG
        self.log_ids[j] = can_id
        self.log_ext[j] = 1 if ext else 0
        self.log_dlc[j] = n
        for k in range(n):
            self.log_data[j * 8 + k] = data[k]
        self.log_n += 1
        if self.hold_tx:
            self.tx_pending += 1
        if self.loopback:
            if self.rx_n < self.RX_DEPTH and self._accepts(can_id, ext):
                i = (self.rx_head + self.rx_n) % self.RX_DEPTH
                self.rx_ids[i] = can_id
                self.rx_flags[i] = 1 if ext else 0
                self.rx_dlc[i] = n
                for k in range(n):
                    self.rx_data[i * 8 + k] = data[k]
                self.rx_n += 1

    def _fill(self, lst, idx):
        """Copy the oldest frame into the memoryview at lst[idx].

        MicroPython resizes that memoryview in place; Python code cannot, so
        the fake keeps one view per length over the caller's buffer, built on
        the first call (that first call allocates; later calls do not)."""
        mv = lst[idx]
        if self._views is None or (mv is not self._mv and not self._is_view(mv)):
            self._build(mv)
        i = self.rx_head
        n = self.rx_dlc[i]
        full = self._mv
        for k in range(n):
            full[k] = self.rx_data[i * 8 + k]
        lst[idx] = self._views[n]
        self.got_id = self.rx_ids[i]
        self.got_flags = self.rx_flags[i]
        self.rx_head = (i + 1) % self.RX_DEPTH
        self.rx_n -= 1

    def _build(self, mv):
        # separate function: a comprehension over a local of _fill would turn
        # that local into a heap-allocated closure cell on every call
        self._mv = mv
        self._views = [mv[:k] for k in range(9)]

    def _is_view(self, mv):
        for v in self._views:
            if v is mv:
                return True
        return False

    def _state_level(self):
        """0 active, 1 warning, 2 passive, 3 bus-off."""
        if self.bus_off:
            return 3
        m = self.tec if self.tec > self.rec else self.rec
        if m >= 128:
            return 2
        if m >= 96:
            return 1
        return 0

    def t_state(self, states):
        """The controller's state as the port numbers it: ``states`` =
        (stopped, active, warning, passive, bus-off) of the fake's class."""
        if not self.enabled:
            return states[0]
        return states[1 + self._state_level()]

    def t_info(self, list, last):
        """The 8-entry counters/info list both ports fill (TEC, REC, three
        zeros, pending transmits, receive queue, ``last``)."""
        if list is None:
            list = [0] * 8
        list[0] = self.tec
        list[1] = self.rec
        list[2] = 0
        list[3] = 0
        list[4] = 0
        list[5] = self.tx_pending
        list[6] = self.rx_n
        list[7] = last
        return list

    def t_restart(self):
        """Leave bus-off: counters cleared, transmit slots free."""
        self.bus_off = False
        self.tec = 0
        self.rec = 0
        self.tx_pending = 0
        self.restarts += 1


class CAN:
    """machine.CAN as documented for MicroPython 1.28+ (classic CAN)."""

    MODE_NORMAL = 0
    MODE_SLEEP = 1
    MODE_LOOPBACK = 2
    MODE_SILENT = 3
    MODE_SILENT_LOOPBACK = 4
    STATE_STOPPED = 0
    STATE_ACTIVE = 1
    STATE_WARNING = 2
    STATE_PASSIVE = 3
    STATE_BUS_OFF = 4
    FLAG_RTR = 1
    FLAG_EXT_ID = 2
    FLAG_UNORDERED = 4
    RECV_ERR_FULL = 1
    RECV_ERR_OVERRUN = 2
    IRQ_RX = 1
    IRQ_TX = 2
    IRQ_STATE = 4
    IRQ_TX_FAILED = 8
    IRQ_TX_IDX_SHIFT = 8
    IRQ_TX_IDX_MASK = 3
    TX_QUEUE_LEN = 3
    FILTERS_MAX = 14

    def __init__(self, id, *args, **kwargs):
        self.id = id
        self.core = CanCore()
        self.core.enabled = False
        self.bitrate = 0
        self.mode = None
        self.sample_point = None
        self.filters_set = False
        self._seen_ovr = 0
        CANS.append(self)
        if not args and "bitrate" not in kwargs:
            raise TypeError("bitrate required")
        self.init(*args, **kwargs)

    def init(self, bitrate, mode=0, sample_point=75, sjw=1, tseg1=None, tseg2=None):
        self.bitrate = bitrate
        self.mode = mode
        self.sample_point = sample_point
        self.core.loopback = mode in (CAN.MODE_LOOPBACK, CAN.MODE_SILENT_LOOPBACK)
        self.core.enabled = True

    def deinit(self):
        self.core.enabled = False

    def set_filters(self, filters):
        self.filters_set = True
        if filters is None:
            self.core.accept = None
            return
        acc = []
        for f in filters:
            if len(acc) >= CAN.FILTERS_MAX:
                raise ValueError("too many filters")
            acc.append((f[0], f[1], bool(f[2] & CAN.FLAG_EXT_ID)))
        self.core.accept = acc

    def send(self, id, data, flags=0):
        c = self.core
        if not c.enabled or c.bus_off:
            raise OSError(5)
        if len(data) > 8:
            raise ValueError("data too long")
        if c.tx_pending >= c.tx_slots:
            return None
        idx = c.tx_pending
        c._tx(id, data, flags & CAN.FLAG_EXT_ID)
        return idx

    def recv(self, arg=None):
        c = self.core
        if not self.filters_set or c.rx_n == 0:
            return None
        if arg is None:
            arg = [0, memoryview(bytearray(8)), 0, 0]
        c._fill(arg, 1)
        fl = c.got_flags
        arg[0] = c.got_id
        arg[2] = (CAN.FLAG_EXT_ID if fl & 1 else 0) | (CAN.FLAG_RTR if fl & 2 else 0)
        errs = 0
        if c.overruns != self._seen_ovr:
            self._seen_ovr = c.overruns
            errs = CAN.RECV_ERR_OVERRUN
        arg[3] = errs
        return arg

    def state(self):
        return self.core.t_state(_STATES)

    def get_counters(self, list=None):
        return self.core.t_info(list, self.core.overruns)

    def restart(self):
        self.core.t_restart()

    def cancel_send(self, index):
        return False

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        return self


_STATES = (CAN.STATE_STOPPED, CAN.STATE_ACTIVE, CAN.STATE_WARNING, CAN.STATE_PASSIVE,
           CAN.STATE_BUS_OFF)
