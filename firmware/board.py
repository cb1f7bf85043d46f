"""The board interface: the only surface the protocol and safety code touch.

Every board (``boards/unix`` SIL, ``boards/stm32``, ``boards/esp32``) provides a
``Board`` object with exactly these methods.  Physical values are scaled
integers so that nothing on the hot path allocates a float:

    voltages   0.1 V   (``dV``)
    currents   0.1 A   (``dA``), positive = current delivered to the vehicle
    CC1        mV
    insulation kOhm    (-1 = no reading yet)
    temps      0.1 degC
    leakage    mA

Inputs are read into a preallocated ``Inputs`` object and outputs are
driven from an ``Outputs`` object; both are plain attribute holders so that
assigning a small int never allocates.
"""

# Bus state values (``Board.can_state()``), after ISO 11898 fault confinement.
CAN_ERROR_ACTIVE = 0
CAN_ERROR_WARNING = 1
CAN_ERROR_PASSIVE = 2
CAN_BUS_OFF = 3
CAN_STOPPED = 4

CAN_STATE_NAMES = ("active", "warning", "passive", "bus-off", "stopped")


class CanFrame:
    """A preallocated receive slot.  ``Board.can_recv`` fills it in place."""

    def __init__(self):
        self.id = 0            # 29-bit identifier
        self.dlc = 0
        self.data = bytearray(8)
        self.ts_ms = 0         # board clock when the frame was taken


class Inputs:
    """Latest measurements; ``Board.read_inputs`` overwrites them in place."""

    def __init__(self):
        self.v_inside = 0      # dV, charger side of K1/K2 (power-stage output)
        self.v_outside = 0     # dV, vehicle side of K1/K2 (gun / battery)
        self.i_out = 0         # dA, output current
        self.cc1_mv = 12000    # detection point 1 voltage
        self.insulation_kohm = -1
        self.t_gun_pos = 250   # 0.1 degC, DC+ pin of the connector
        self.t_gun_neg = 250   # 0.1 degC, DC- pin
        self.estop = 0         # 1 = emergency-stop button pressed
        self.k12_fb = 0        # 1 = K1/K2 auxiliary contacts report closed
        self.lock_fb = 0       # 1 = electronic lock reports locked
        self.leakage_ma = 0    # residual current monitor
        self.mains_ok = 1      # 0 = AC supply lost


class Outputs:
    """Commanded actuator states.  ``Board.write_outputs`` applies them."""

    def __init__(self):
        self.k12 = 0           # DC output contactors K1/K2
        self.k34 = 0           # auxiliary 12 V supply K3/K4
        self.lock = 0          # electronic lock
        self.bleed = 0         # bleeder / discharge circuit
        self.pwr_en = 0        # power stage enable
        self.v_set = 0         # dV
        self.i_set = 0         # dA

    def safe(self):
        """The fail-safe state: output off, contactors open, bleeder on.

        The lock stays as it is: unlocking a gun that may still carry voltage
        is worse than leaving it locked; the lock follows once voltage is low.
        K3/K4 are dropped too, since a fail-safe stop ends the session."""
        self.pwr_en = 0
        self.v_set = 0
        self.i_set = 0
        self.k12 = 0
        self.k34 = 0
        self.bleed = 1


OUTPUT_NAMES = ("k12", "k34", "lock", "bleed", "pwr_en", "v_set", "i_set")
INPUT_NAMES = ("v_inside", "v_outside", "i_out", "cc1_mv", "insulation_kohm",
               "t_gun_pos", "t_gun_neg", "estop", "k12_fb", "lock_fb",
               "leakage_ma", "mains_ok")


class Board:
    """The board contract; every board subclasses it (python-can ``BusABC``
    style).  The app calls every hook below unconditionally: a board
    overrides what it has, the defaults here say what happens otherwise.

    clock           a ``rt.clock`` object (``ticks_ms()``, ``ticks_us()``)
    can_send(id, buf, n)  queue a 29-bit extended frame; False if the TX
                          queue is full (the caller counts it, never blocks)
    can_recv(frame)       fill ``frame`` (a CanFrame) with the next received
                          frame and return True, or return False; no allocation
    can_state()           one of CAN_ERROR_ACTIVE .. CAN_STOPPED
                          (default: CAN_ERROR_ACTIVE)
    can_counters(out)     fill list ``out`` = [tx_err, rx_err, tx_frames,
                          rx_frames, overruns] (default: leaves it alone)
    read_inputs(inp)      refresh an ``Inputs`` in place
    write_outputs(out)    apply an ``Outputs``
    force_safe()          drive every output to the safe state *directly*,
                          bypassing any queue: used by the trip path and the
                          exception handler, must work even if the rest of
                          the firmware is broken
    idle(until_ms)        give the CPU away until ``until_ms`` or an event
                          (default: return at once)
    rtc_s()               wall clock in seconds since the firmware epoch
                          2020-01-01 00:00 UTC (``rt.calendar``): a small int
                          on 32-bit ports until 2054, no heap per call;
                          negative = the clock is not set (default: the
                          port's ``time.time()`` converted, docs/boards.md)
    record_sink(cfg, state_dir)  where telemetry records go: a callable
                          taking a memoryview or an object with ``write``
                          (default: a ``FileSink`` under ``state_dir``)
    send_text(kind, text) an event line for a harness (default: dropped;
                          the event log keeps its own copy)
    bye(code, text)       the app is shutting down (default: nothing)
    run(app)              the main loop (default: run due tasks, then
                          ``idle`` until the next one, forever)
    console_stream(cfg)   the console's byte stream (default: stdin/stdout
                          through ``diag.stdio.StdioConsole``)
    console_commands(app) extra console commands, a sequence of
                          ``(name, fn, help)`` (default: none)
    console_auth          None = the ``console.auth`` setting decides; a
                          bench board may set 0/1 to override it
    """

    name = "abstract"
    console_auth = None

    def can_send(self, can_id, buf, n):
        raise NotImplementedError

    def can_recv(self, frame):
        raise NotImplementedError

    def can_state(self):
        return CAN_ERROR_ACTIVE

    def can_counters(self, out):
        pass

    def read_inputs(self, inp):
        raise NotImplementedError

    def write_outputs(self, out):
        raise NotImplementedError

    def force_safe(self):
        raise NotImplementedError

    def idle(self, until_ms):
        pass

    def rtc_s(self):
        from rt.calendar import port_rtc_s
        return port_rtc_s()

    def record_sink(self, cfg, state_dir):
        from diag.telemetry import FileSink
        return FileSink(state_dir + "/telemetry", cfg["telemetry.file_bytes"])

    def send_text(self, kind, text):
        pass

    def bye(self, code, text):
        pass

    def run(self, app):
        idle = self.idle
        sched = app.sched
        now = sched.now
        while True:
            app.run_due(now())
            idle(sched.next_due())

    def console_stream(self, cfg):
        from config import get
        from diag.stdio import StdioConsole
        return StdioConsole(raw=False, tx_timeout_ms=get(cfg, "console.tx_timeout_ms"))

    def console_commands(self, app):
        return ()
