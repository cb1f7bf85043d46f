"""The unix SIL board's console stream: the firmware process's stdin/stdout
(``diag.stdio.StdioConsole`` with the tty in raw mode).  The harness or a
test puts the process on a pseudo-terminal for ``mpremote connect /dev/pts/N``."""
from diag.stdio import StdioConsole

UnixConsoleIO = StdioConsole   # the name the console tests use

_stream = None


def stream(cfg=None):
    """The board's console stream (one per process: it owns fd 0/1).

    ``cfg``: product configuration; ``console.tx_timeout_ms`` is taken from
    it when present (default 20 ms)."""
    global _stream
    if _stream is None:
        t = 20
        if cfg is not None and "console.tx_timeout_ms" in cfg:
            t = cfg["console.tx_timeout_ms"]
        _stream = StdioConsole(tx_timeout_ms=t)
    return _stream
