"""Entry point of the SIL firmware process (MicroPython unix port).

    micropython boards/unix/main.py --link 127.0.0.1:PORT [--mode lockstep|realtime]
                                    [--config config.json] [--console]
                                    [--console-auth 0|1]

``--console-auth 0`` opens the console without roles (the bench's default,
host_tools.sil: a bench has no keys); without it ``console.auth`` decides.

MICROPYPATH must hold ``firmware`` and ``boards/unix`` (the harness sets it).
"""
import sys


def _args(argv):
    opts = {"link": "127.0.0.1:0", "mode": "lockstep", "config": "config.json",
            "console": "0", "store": "state", "epoch": "1767225600"}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and a != "--console" and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 2
        else:
            if a == "--console":
                opts["console"] = "1"
            i += 1
    return opts


def run():
    opts = _args(sys.argv)
    host, port = opts["link"].rsplit(":", 1)
    from sil_board import SilBoard
    board = SilBoard(host, int(port), opts["mode"], int(opts["epoch"]))
    if "console-auth" in opts:
        board.console_auth = int(opts["console-auth"])
    import charger
    charger.main(board, opts["config"], console=opts["console"] == "1",
                 state_dir=opts["store"])


run()
