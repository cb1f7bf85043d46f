"""Entry point of the SIL firmware process (MicroPython unix port).

    micropython boards/unix/main.py --link 127.0.0.1:PORT [--mode lockstep|realtime]
                                    [--config config.json] [--console]
                                    [--console-auth 0|1] [--update DIR]

``--console-auth 0`` opens the console without roles (the bench's default,
host_tools.sil: a bench has no keys); without it ``console.auth`` decides.

``--update DIR``: the signed-update store (slots.json, slot_a/, slot_b/;
firmware/bootseq.py), default ``<store>/update``.  The selected slot's
modules come before MICROPYPATH's.

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


def _safe(board):
    """Nothing here: the SIL board's outputs are the bench's, and
    ``charger.main`` already forces them safe when the app cannot be built
    (the bench's bytes stay what they were before the boot sequence)."""


def run():
    opts = _args(sys.argv)
    host, port = opts["link"].rsplit(":", 1)

    def build():
        from sil_board import SilBoard
        board = SilBoard(host, int(port), opts["mode"], int(opts["epoch"]))
        if "console-auth" in opts:
            board.console_auth = int(opts["console-auth"])
        return board

    def start(board):
        import charger             # from the selected slot (bootseq.enter)
        charger.main(board, opts["config"], console=opts["console"] == "1",
                     state_dir=opts["store"])

    import bootseq
    bootseq.run(build, start, _safe, opts.get("update") or opts["store"] + "/update")


run()
