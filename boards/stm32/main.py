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

CONFIG_PATH = "config.json"

if hasattr(micropython, "alloc_emergency_exception_buf"):   # not on unix
    micropython.alloc_emergency_exception_buf(100)   # readable ISR tracebacks


def _pins_off():
    """Power stage, K1/K2, K3/K4 off using only ``machine`` and the pin map."""
    try:
        import machine
        from stm32 import pins
    except Exception:
        return
    for name in ("pwr_en", "k12", "k34"):
        for e in pins.OUTPUTS:
            if e[0] == name:
                try:
                    machine.Pin(e[1], machine.Pin.OUT, value=0 if e[2] else 1)
                except Exception:
                    pass


def fail_safe(board):
    """Outputs safe, whatever state the firmware is in.  Never raises."""
    try:
        if board is not None:
            board.force_safe()
            return
    except Exception:
        pass
    _pins_off()


def build(config_path=CONFIG_PATH):
    """The board, with the hardware thresholds from the configuration.

    The application validates the configuration again (and refuses to charge
    on errors); here a bad value falls back to its documented default."""
    import config
    from stm32.board import Stm32Board
    cfg, _errors = config.load(config_path)
    return Stm32Board(cfg)


def run(config_path=CONFIG_PATH):
    board = None
    try:
        board = build(config_path)
        import charger
        # console=True: the field engineer's mpremote reaches the running
        # charger on the REPL port (Ctrl-C no longer interrupts main.py).
        charger.main(board, config_path, console=True)
    finally:
        fail_safe(board)


if __name__ == "__main__":
    run()
