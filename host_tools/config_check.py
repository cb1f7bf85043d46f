"""Check a charger configuration file on the host, with the firmware's own rules.

    python -m host_tools.config_check config.json [--board stm32|esp32|unix]

The file is validated by the *firmware's* ``config.load`` running on the real
``micropython`` binary (MICROPYPATH = firmware + the board package), after
importing exactly what the board imports before it loads its configuration
(the board package, then ``charger``, which imports every module that
declares settings).  So the host accepts what the board accepts and refuses
what it refuses, with the same messages: unknown setting, wrong type, out of
range, cross-field rules (e.g. ``h5.lo_mv must be below h5.hi_mv``), invalid
JSON.  The file is parsed by the firmware's own strict reader
(``config.read``), not by CPython's ``json``: the quirks the two would
disagree on (trailing comma, ``07000``, ``1.0`` for a true/false setting,
duplicate keys, nesting, a file over ``config.MAX_FILE`` bytes) are refused
on both, with the same message.  Exit status 0 = valid, 1 = invalid (messages on stdout), 2 = could
not run the check (no such file, no micropython).

``check(path, board) -> (ok, errors, settings)`` is the API used by
``host_tools.deploy``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"

# What each board imports before the application loads config.json
# (host names: the ESP32 package is ``esp32`` here, ``esp32b`` on the board).
BOARD_IMPORTS = {
    "stm32": ["pinboard.fastprot", "pinboard.board", "stm32.board"],
    "esp32": ["pinboard.fastprot", "pinboard.board", "esp32.board"],
    "unix": [],
}

_SCRIPT = """
import sys
import config
%(imports)s
import charger
cfg, errors = config.load(%(path)r)
print("SETTINGS", len(config.schema()))
print("FILE", len(config.read(%(path)r)[0]))
for e in errors:
    print("ERROR", e)
sys.exit(1 if errors else 0)
"""


class CheckError(Exception):
    """The check itself could not run (not: the configuration is invalid)."""


def micropython_bin() -> str:
    from host_tools.sil.link import micropython_bin as find
    try:
        return find()
    except FileNotFoundError as e:
        raise CheckError(str(e))


def mpy_path(board: str) -> str:
    parts = [FIRMWARE]
    if board == "unix":
        parts.append(BOARDS / "unix")
    else:
        # board packages (stm32/, esp32/) and the test fakes of machine/pyb
        # that let them import on the unix port
        parts += [BOARDS, BOARDS / "fakes"]
    return os.pathsep.join(str(p) for p in parts)


def check(path, board: str = "stm32") -> tuple[bool, list[str], int]:
    """Validate the file at ``path`` as ``board`` would.

    Returns ``(ok, errors, number of settings in the schema)``; raises
    ``CheckError`` if the check could not run."""
    return _run(path, board)[:3]


def _run(path, board):
    """``check`` plus the number of settings the file sets (as the firmware
    read it: the host's own JSON parser would disagree on some files)."""
    if board not in BOARD_IMPORTS:
        raise CheckError("unknown board %r (one of %s)" % (board, ", ".join(BOARD_IMPORTS)))
    p = Path(path)
    if not p.is_file():
        raise CheckError("no such file: %s" % path)
    script = _SCRIPT % {"imports": "\n".join("import " + m for m in BOARD_IMPORTS[board]),
                        "path": str(p.resolve())}
    env = dict(os.environ, MICROPYPATH=mpy_path(board))
    try:
        r = subprocess.run([micropython_bin(), "-c", script], capture_output=True, text=True,
                           timeout=60, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        raise CheckError("micropython did not finish the check")
    settings = 0
    nfile = 0
    errors = []
    for line in r.stdout.splitlines():
        if line.startswith("SETTINGS "):
            settings = int(line.split()[1])
        elif line.startswith("FILE "):
            nfile = int(line.split()[1])
        elif line.startswith("ERROR "):
            errors.append(line[6:])
    if r.returncode not in (0, 1) or not settings:
        raise CheckError("the firmware's validation did not run:\n%s%s" % (r.stdout, r.stderr))
    if r.returncode == 1 and not errors:
        raise CheckError("validation failed without a message:\n%s%s" % (r.stdout, r.stderr))
    return not errors, errors, settings, nfile


def _family(name: str) -> str:
    """A board name as `make deploy BOARD=` takes it -> the board family."""
    n = name.lower()
    if n in BOARD_IMPORTS:
        return n
    if n in ("pybv11", "nucleo_h743zi", "h743", "h7", "pyboard") or n.startswith("stm32"):
        return "stm32"
    if n.startswith("esp32"):
        return "esp32"
    raise argparse.ArgumentTypeError("unknown board %r (stm32, PYBV11, NUCLEO_H743ZI, esp32, "
                                     "unix)" % name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.config_check",
                                 description="Validate a charger config.json with the "
                                             "firmware's own rules (on micropython).")
    ap.add_argument("config", help="the JSON file of settings")
    ap.add_argument("--board", default="stm32", type=_family,
                    help="stm32 (PYBV11, NUCLEO_H743ZI), esp32 or unix")
    a = ap.parse_args(argv)
    try:
        ok, errors, n, k = _run(a.config, a.board)
    except CheckError as e:
        print("config_check: %s" % e, file=sys.stderr)
        return 2
    if ok:
        print("%s: valid for %s (%d settings changed from the defaults, %d known)"
              % (a.config, a.board, k, n))
        return 0
    print("%s: INVALID for %s:" % (a.config, a.board))
    for e in errors:
        print("  " + e)
    return 1


if __name__ == "__main__":
    sys.exit(main())
