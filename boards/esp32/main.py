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

CONFIG_PATH = "config.json"

if hasattr(micropython, "alloc_emergency_exception_buf"):   # not on unix
    micropython.alloc_emergency_exception_buf(100)


def _pkg():
    try:
        from esp32b import board, pins       # on the board
    except ImportError:
        from esp32 import board, pins        # host tests: boards/ on the path
    return board, pins


def _pins_off():
    """Power stage, K1/K2, K3/K4 off using only ``machine`` and the pin map."""
    try:
        import machine
        pins = _pkg()[1]
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
    import config
    cfg, _errors = config.load(config_path)
    return _pkg()[0].Esp32Board(cfg)


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
