"""STM32 control board: the firmware's ``Board`` (firmware/board.py) on pins.

``Stm32Board`` is the port-independent ``PinBoard`` (boards/pinboard/board.py:
outputs, set-points, inputs, the interrupt trip path, watchdog, bus-off
recovery) + the STM32's own CAN controller (stm32/can.py: ``machine.CAN``
on MicroPython >= 1.28, else ``pyb.CAN``).  Pin numbers and scaling are
data in pins.py.
"""
import machine
from pinboard.board import PinBoard
from .can import MachineCan, PybCan


class Stm32Board(PinBoard):
    """The STM32 control board.

    ``Stm32Board(cfg=None, pins=None, driver=None, start_prot=True)``:
    ``cfg`` a configuration dict (``config.load``), ``pins`` a pin-map module
    (default boards/stm32/pins.py), ``driver`` "machine" / "pyb" / None
    (= ``pins.CAN_DRIVER``; "auto" picks machine.CAN when the firmware has it).
    """

    def __init__(self, cfg=None, pins=None, driver=None, start_prot=True):
        if pins is None:
            from . import pins
        PinBoard.__init__(self, pins, cfg, start_prot)
        drv = driver or pins.CAN_DRIVER
        if drv == "auto":
            drv = "machine" if hasattr(machine, "CAN") else "pyb"
        cls = MachineCan if drv == "machine" else PybCan
        self.can_driver = drv
        self._can = cls(pins.CAN_BUS, pins.CAN_BITRATE, pins.CAN_SAMPLE_POINT,
                        pins.CAN_FILTERS)
