"""Boot script of the STM32 control board (deployed as ``/main.py``).

Builds the board, then runs the application, ``charger.main(board,
config_path)`` (firmware/charger.py), which runs forever.  Whatever ends it
-- an exception, Ctrl-C on the console, ``SystemExit``, or a normal return --
the outputs are driven to the safe state before the exception propagates
(requirement H-9: fail safe, never fail live).  If the board object could
not even be built, the output pins are switched off straight from the pin
map.  After that the exception reaches the REPL; if the watchdog was
already running (it starts with the main loop) it resets the board, which
boots into a fresh, safe charger.

Layout on the board's filesystem (docs/boards.md): firmware modules at the
root (or /lib), this package as ``/stm32/``, this file as ``/main.py``.
"""
import micropython
import bootseq                  # firmware/bootseq.py: slot selection, rollback, fail safe

CONFIG_PATH = "config.json"

if hasattr(micropython, "alloc_emergency_exception_buf"):   # not on unix
    micropython.alloc_emergency_exception_buf(100)   # readable ISR tracebacks


def _pins():
    from stm32 import pins
    return pins


def fail_safe(board):
    """Outputs safe, whatever state the firmware is in.  Never raises."""
    bootseq.make_safe(board, _pins)


def build(config_path=CONFIG_PATH):
    """The board, with the hardware thresholds from the configuration.

    The application validates the configuration again (and refuses to charge
    on errors); here a bad value falls back to its documented default."""
    import config
    from stm32.board import Stm32Board
    cfg, _errors = config.load(config_path)
    return Stm32Board(cfg)


def run(config_path=CONFIG_PATH):
    """Slot selection, trial/rollback, then the charger with the field
    console (firmware/bootseq.py ``boot``)."""
    bootseq.boot(build, fail_safe, config_path)


if __name__ == "__main__":
    run()
