"""Boot script of the ESP32 control board (deployed as ``/main.py``).

Same contract as boards/stm32/main.py: build the board, run
``charger.main(board, config_path)`` forever, and whatever ends it (an
exception, Ctrl-C, SystemExit, a normal return) leave the outputs safe
(H-9) before the exception reaches the REPL.

On the board this package lives in ``/esp32b/`` (``esp32`` is a built-in
module of the ESP32 port and would shadow it); on the host (tests) it is
imported as ``esp32``.
"""
import micropython
import bootseq                  # firmware/bootseq.py: slot selection, rollback, fail safe

CONFIG_PATH = "config.json"

if hasattr(micropython, "alloc_emergency_exception_buf"):   # not on unix
    micropython.alloc_emergency_exception_buf(100)


def _pkg():
    try:
        from esp32b import board, pins       # on the board
    except ImportError:
        from esp32 import board, pins        # host tests: boards/ on the path
    return board, pins


def _pins():
    return _pkg()[1]


def fail_safe(board):
    """Outputs safe, whatever state the firmware is in.  Never raises."""
    bootseq.make_safe(board, _pins)


def build(config_path=CONFIG_PATH):
    import config
    cfg, _errors = config.load(config_path)
    return _pkg()[0].Esp32Board(cfg)


def run(config_path=CONFIG_PATH):
    """Slot selection, trial/rollback, then the charger with the field
    console (firmware/bootseq.py ``boot``)."""
    bootseq.boot(build, fail_safe, config_path)


if __name__ == "__main__":
    run()
