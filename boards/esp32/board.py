"""ESP32 control board: ``PinBoard`` (boards/pinboard/board.py) + an MCP2515.

Mainline MicroPython has no TWAI (on-chip CAN) driver for the ESP32, so CAN
goes through an MCP2515 on SPI with our driver (mcp2515.py).  Everything
else -- outputs, inputs and scaling, the interrupt trip path, watchdog,
bus-off recovery -- is the port-independent ``PinBoard``; the pin map is
pins.py in this package.

On the board this package is installed as ``esp32b`` (``esp32`` is the
name of a built-in module of the ESP32 port), next to ``pinboard/board.py``
and ``pinboard/fastprot.py`` (the shared, port-independent parts); imports
inside this package are relative so its name does not matter.
"""
import time
import machine
from pinboard.board import PinBoard
from .mcp2515 import MCP2515, MODE_NORMAL


class Esp32Board(PinBoard):
    """``Esp32Board(cfg=None, pins=None, start_prot=True)``.

    Raises OSError if the MCP2515 does not answer (main.py then leaves the
    outputs safe)."""

    def __init__(self, cfg=None, pins=None, start_prot=True):
        if pins is None:
            from . import pins
        PinBoard.__init__(self, pins, cfg, start_prot)
        P = machine.Pin
        spi = machine.SPI(pins.MCP_SPI_ID, baudrate=pins.MCP_SPI_BAUD, polarity=0,
                          phase=0, sck=P(pins.MCP_SCK), mosi=P(pins.MCP_MOSI),
                          miso=P(pins.MCP_MISO))
        cs = P(pins.MCP_CS, P.OUT, value=1)
        irq = None
        if pins.MCP_INT is not None:
            irq = P(pins.MCP_INT, P.IN, P.PULL_UP)
        self.mcp = MCP2515(spi, cs, osc_hz=pins.MCP_OSC_HZ, bitrate=pins.CAN_BITRATE,
                           sample_permille=pins.CAN_SAMPLE_PERMILLE, int_pin=irq)
        self.mcp.init(MODE_NORMAL, pins.CAN_FILTERS)
        self._can = self.mcp
        self.can_driver = "mcp2515"

    def _idle_once(self):
        # Drain the chip even with the INT pin (a missed edge must not stall
        # reception), then sleep a millisecond: scheduled IRQs run meanwhile.
        self.mcp.poll()
        time.sleep_ms(1)
