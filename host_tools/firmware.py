"""Build flashable MicroPython images with the charger frozen in.

    python -m host_tools.firmware build --board QEMU_M3|PYBV11|NUCLEO_H743ZI [--variant test|bare]
    python -m host_tools.firmware info --board PYBV11        # sizes of the last build
    python -m host_tools.firmware source                     # where the MicroPython tree is
    make firmware BOARD=PYBV11                               # the same, from the Makefile

What it does, in order:

1. **Toolchain**: ``arm-none-eabi-gcc`` + newlib (and ``qemu-system-arm``
   for the QEMU board) from Debian; when missing and running as root it
   installs them with ``apt-get`` (``apt-get update`` first if the plain
   install fails), otherwise it says which packages to install.
2. **MicroPython source** (a build input, never committed): ``$MICROPY_SRC``
   if set (a source tree), else the pruned upstream snapshot
   ``../shared/vendor/micropython-src.tar.xz`` next to the checkout (or next
   to the checkout this one was cloned from; extracted once into
   ``build/micropython-src/``), else a ``git clone`` of
   upstream at ``$MICROPY_REF`` (default: the commit the snapshot was taken
   from) with the port's submodules.
3. ``mpy-cross`` from that tree (into ``build/mpy-cross/``), then the port with
   ``FROZEN_MANIFEST=boards/<b>/manifest.py`` into ``build/firmware/<BOARD>/``.
4. Prints flash and RAM use: image size against the part's flash, static RAM,
   the GC heap the firmware gets, and the frozen firmware's share of flash.

ESP32 images need ESP-IDF (not a Debian package): see docs/boards.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
VENDOR_TARBALL = ROOT.parent / "shared" / "vendor" / "micropython-src.tar.xz"
UPSTREAM = "https://github.com/micropython/micropython.git"
# The commit ../shared/vendor's snapshot was taken from (v1.29 preview).
DEFAULT_REF = "1c3c201149f37fe8d81246191b3127bb198d6306"

KB = 1024
TEST_HEAP = 1024 * KB

BOARDS = {
    "QEMU_M3": dict(
        port="qemu", board_dir=ROOT / "boards" / "qemu" / "QEMU_M3",
        manifest=ROOT / "boards" / "qemu" / "manifest.py",
        bare_manifest=ROOT / "boards" / "qemu" / "manifest_bare.py",
        image="firmware.elf", flash=4 * 1024 * KB, ram=4 * 1024 * KB,
        apt=["gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"],
        what="MPS2-AN385 Cortex-M3 under qemu-system-arm, heap of a PYBv1.1"),
    "PYBV11": dict(
        port="stm32", board="PYBV11", manifest=ROOT / "boards" / "stm32" / "manifest.py",
        image="firmware.dfu", flash=1024 * KB, ram=192 * KB,
        apt=["gcc-arm-none-eabi", "libnewlib-arm-none-eabi"],
        what="pyboard v1.1, STM32F405RG 168 MHz, 1 MB flash, 192 KB RAM"),
    "NUCLEO_H743ZI": dict(
        port="stm32", board="NUCLEO_H743ZI", manifest=ROOT / "boards" / "stm32" / "manifest.py",
        image="firmware.dfu", flash=2048 * KB, ram=1024 * KB,
        # the vendored snapshot has no mbedtls (../shared/vendor/README.md)
        make_args=["MICROPY_SSL_MBEDTLS=0", "MICROPY_PY_SSL=0"],
        apt=["gcc-arm-none-eabi", "libnewlib-arm-none-eabi"],
        what="NUCLEO-H743ZI, STM32H743ZI 480 MHz, 2 MB flash, 1 MB RAM"),
}


# Family names (as `make deploy BOARD=` uses them) -> the reference image.
ALIASES = {"stm32": "PYBV11", "qemu": "QEMU_M3", "pybv11": "PYBV11",
           "h743": "NUCLEO_H743ZI", "nucleo_h743zi": "NUCLEO_H743ZI", "qemu_m3": "QEMU_M3"}


class BuildError(RuntimeError):
    pass


def resolve_board(name: str) -> str:
    if name in BOARDS:
        return name
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    if name.lower().startswith("esp32"):
        raise BuildError("ESP32 images need ESP-IDF, which is not a Debian package: see "
                         "docs/boards.md (ESP32: build with the IDF's own tooling and "
                         "FROZEN_MANIFEST=boards/esp32/manifest.py)")
    raise BuildError("unknown board %s (one of %s)" % (name, ", ".join(BOARDS)))


def _log(msg: str) -> None:
    print("[firmware] " + msg, flush=True)


# ---- toolchain ---------------------------------------------------------------
def ensure_toolchain(packages: list[str]) -> None:
    need = []
    if "gcc-arm-none-eabi" in packages and not shutil.which("arm-none-eabi-gcc"):
        need += ["gcc-arm-none-eabi", "libnewlib-arm-none-eabi"]
    elif "libnewlib-arm-none-eabi" in packages and not _have_newlib():
        need.append("libnewlib-arm-none-eabi")
    if "qemu-system-arm" in packages and not shutil.which("qemu-system-arm"):
        need.append("qemu-system-arm")
    if not need:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BuildError("missing toolchain: install the Debian packages %s "
                         "(apt-get install %s)" % (", ".join(need), " ".join(need)))
    _log("installing %s (apt-get)" % " ".join(need))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + need
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            raise BuildError("apt-get install %s failed" % " ".join(need))


def _have_newlib() -> bool:
    gcc = shutil.which("arm-none-eabi-gcc")
    if not gcc:
        return False
    r = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True, text=True)
    return r.returncode == 0 and os.path.sep in r.stdout.strip()


# ---- MicroPython source ------------------------------------------------------
def source_tree(port: str = "qemu") -> Path:
    """The MicroPython source tree to build from (see the module docstring)."""
    env = os.environ.get("MICROPY_SRC")
    if env:
        p = Path(env).resolve()
        if not (p / "py" / "mkenv.mk").exists():
            raise BuildError("MICROPY_SRC=%s is not a MicroPython source tree" % env)
        return p
    tarball = vendor_tarball()
    if tarball is not None:
        return _extract_vendor(tarball)
    return _clone(port)


def vendor_tarball() -> Path | None:
    """``../shared/vendor/micropython-src.tar.xz`` next to this checkout; a
    clone of a checkout (``git clone /work/main /tmp/x``) also finds the one
    next to the checkout it was cloned from (its ``origin``)."""
    cands = [VENDOR_TARBALL]
    try:
        url = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        url = ""
    if url and "://" not in url and not url.startswith("git@"):
        origin = Path(url[7:] if url.startswith("file:") else url).resolve()
        cands.append(origin.parent / "shared" / "vendor" / VENDOR_TARBALL.name)
    for c in cands:
        if c.exists():
            return c
    return None


def _extract_vendor(tarball: Path = VENDOR_TARBALL) -> Path:
    st = tarball.stat()
    tag = hashlib.sha1(("%d-%d" % (st.st_size, int(st.st_mtime))).encode()).hexdigest()[:10]
    dest = BUILD / "micropython-src" / tag
    tree = dest / "micropython"
    if (dest / ".complete").exists():
        return tree
    _log("extracting %s" % tarball)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tf:
        tf.extractall(dest, filter="data")
    if not (tree / "py" / "mkenv.mk").exists():
        raise BuildError("unexpected layout in %s" % tarball)
    (dest / ".complete").write_text(tag)
    return tree


def _clone(port: str) -> Path:
    ref = os.environ.get("MICROPY_REF", DEFAULT_REF)
    dest = BUILD / "micropython-src" / ("git-" + ref[:12])
    tree = dest / "micropython"
    if not (dest / ".complete").exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        _log("cloning %s at %s" % (UPSTREAM, ref))
        _run(["git", "clone", "-q", UPSTREAM, str(tree)])
        _run(["git", "-C", str(tree), "checkout", "-q", ref])
        (dest / ".complete").write_text(ref)
    sub = subprocess.run(["make", "-C", str(tree / "ports" / port), "submodules"],
                         stdout=subprocess.DEVNULL)
    if sub.returncode != 0:
        raise BuildError("make submodules failed for ports/%s" % port)
    return tree


# ---- build -------------------------------------------------------------------
def _run(cmd: list[str], cwd: Path | None = None, env=None, quiet=False) -> None:
    out = subprocess.DEVNULL if quiet else None
    r = subprocess.run(cmd, cwd=cwd, env=env, stdout=out,
                       stderr=subprocess.PIPE if quiet else None, text=True)
    if r.returncode != 0:
        tail = (r.stderr or "")[-3000:] if quiet else ""
        raise BuildError("command failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), tail))


def jobs() -> int:
    return max(1, os.cpu_count() or 1)


def mpy_cross(tree: Path, quiet=True) -> Path:
    out = BUILD / "mpy-cross"
    _run(["make", "-C", str(tree / "mpy-cross"), "-j%d" % jobs(), "BUILD=%s" % out],
         quiet=quiet)
    return out / "mpy-cross"


def build_dir(board: str, variant: str = "") -> Path:
    return BUILD / "firmware" / (board + ("-" + variant if variant else ""))


def build(board: str, variant: str = "", quiet: bool = True) -> dict:
    """Build ``board``; returns the size report (also written as sizes.json)."""
    board = resolve_board(board)
    spec = BOARDS[board]
    ensure_toolchain(spec["apt"])
    tree = source_tree(spec["port"])
    xc = mpy_cross(tree, quiet)
    out = build_dir(board, variant)
    out.mkdir(parents=True, exist_ok=True)
    manifest = spec["manifest"]
    if variant == "bare":
        if "bare_manifest" not in spec:
            raise BuildError("variant bare exists for QEMU_M3 only")
        manifest = spec["bare_manifest"]
    cmd = ["make", "-C", str(tree / "ports" / spec["port"]), "-j%d" % jobs(),
           "BUILD=%s" % out, "MICROPY_MPYCROSS=%s" % xc,
           "FROZEN_MANIFEST=%s" % manifest]
    if "board_dir" in spec:
        cmd.append("BOARD_DIR=%s" % spec["board_dir"])
    else:
        cmd.append("BOARD=%s" % spec["board"])
    cmd += spec.get("make_args", [])
    if variant == "test" and spec["port"] == "qemu":
        # Unit tests carry scaffolding a product never holds (recorded
        # frames, fakes, fuzz corpora): the test image gets 1 MB of heap.
        # The product image keeps the PYBv1.1 heap, and the full-session
        # target tests and `make bench ARGS="--target qemu"` run on it.
        cmd.append("MICROPY_HEAP_SIZE=%d" % TEST_HEAP)
    elif variant == "bare":
        # Stock MicroPython (board package only, no charger) with 1 MB of
        # heap: host_tools/mpy_heap.py measures the .mpy install on it.
        cmd.append("MICROPY_HEAP_SIZE=%d" % TEST_HEAP)
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)          # our own -j, not the caller's make's
    env["EVCHARGER_FREEZE_TESTS"] = "1" if variant == "test" else "0"
    # make does not track compiler flags: a changed command line (heap size,
    # manifest, source tree) starts from a clean build directory.
    stamp = out / "build-args.json"
    mk = spec["board_dir"] / "mpconfigboard.mk" if "board_dir" in spec else None
    args_key = json.dumps([cmd[3:], str(tree), mk.read_text() if mk else ""])
    if stamp.exists() and stamp.read_text() != args_key:
        shutil.rmtree(out)
        out.mkdir(parents=True)
    _log("building %s%s (%s) in %s" % (board, " " + variant if variant else "", spec["what"],
                                        out.relative_to(ROOT)))
    _run(cmd, env=env, quiet=quiet)
    stamp.write_text(args_key)
    rep = sizes(board, variant)
    (out / "sizes.json").write_text(json.dumps(rep, indent=1))
    return rep


# ---- size report ---------------------------------------------------------------
def _sections(elf: Path) -> list[tuple[str, int, int]]:
    r = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True,
                       check=True)
    out = []
    for line in r.stdout.splitlines()[2:]:
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def _symbols(elf: Path) -> dict[str, tuple[int, int]]:
    r = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                       check=True)
    syms = {}
    for line in r.stdout.splitlines():
        p = line.split()
        if len(p) == 4:
            syms[p[3]] = (int(p[0], 16), int(p[1], 16))
        elif len(p) == 3:
            syms[p[2]] = (int(p[0], 16), 0)
    return syms


def sizes(board: str, variant: str = "") -> dict:
    spec = BOARDS[board]
    out = build_dir(board, variant)
    elf = out / "firmware.elf"
    if not elf.exists():
        raise BuildError("%s not built (%s missing)" % (board, elf))
    secs = _sections(elf)
    syms = _symbols(elf)
    alloc = [(n, s, a) for n, s, a in secs if s and not n.startswith((".debug", ".comment", ".ARM.attr"))]
    if spec["port"] == "stm32":
        flash = sum(s for n, s, a in alloc if 0x08000000 <= a < 0x20000000) + \
            sum(s for n, s, a in alloc if n == ".data")
        ram_static = sum(s for n, s, a in alloc if a >= 0x20000000 and n not in (".heap", ".stack"))
        heap = syms["_heap_end"][0] - syms["_heap_start"][0]
    else:
        flash = sum(s for n, s, a in alloc if n in (".isr_vector", ".text", ".data"))
        heap = syms["gc_heap"][1]
        ram_static = sum(s for n, s, a in alloc if n in (".data", ".bss")) - heap
    frozen = 0
    fz = out / "frozen_content.o"
    if fz.exists():
        r = subprocess.run(["arm-none-eabi-size", str(fz)], capture_output=True, text=True)
        if r.returncode == 0:
            frozen = int(r.stdout.splitlines()[1].split()[0])
    image = out / spec["image"]
    rep = {
        "board": board, "variant": variant, "what": spec["what"],
        "image": str(image.relative_to(ROOT)), "image_bytes": image.stat().st_size,
        "flash_used": flash, "flash_total": spec["flash"],
        "ram_static": ram_static, "ram_total": spec["ram"],
        "heap_bytes": heap, "frozen_bytes": frozen,
    }
    return rep


def print_report(rep: dict) -> None:
    f = rep["flash_used"]
    print("%s%s: %s" % (rep["board"], " (%s)" % rep["variant"] if rep["variant"] else "",
                        rep["image"]))
    print("  flash  %7d bytes used of %d (%.0f %%), of which frozen firmware %d bytes"
          % (f, rep["flash_total"], 100.0 * f / rep["flash_total"], rep["frozen_bytes"]))
    print("  RAM    %7d bytes static (.data+.bss, without the heap) of %d"
          % (rep["ram_static"], rep["ram_total"]))
    print("  heap   %7d bytes (the MicroPython GC heap the firmware runs in)" % rep["heap_bytes"])
    print("  image  %7d bytes (%s)" % (rep["image_bytes"], Path(rep["image"]).name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.firmware", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build an image and print its sizes")
    b.add_argument("--board", default="QEMU_M3",
                   help="QEMU_M3 (default), PYBV11, NUCLEO_H743ZI (or stm32, qemu)")
    b.add_argument("--variant", default="", choices=["", "test", "bare"],
                   help="test: also freeze tests/mp (QEMU target tests); bare: QEMU_M3 "
                        "without the charger, 1 MB heap (host_tools.mpy_heap)")
    b.add_argument("--verbose", "-v", action="store_true", help="show the compiler output")
    i = sub.add_parser("info", help="sizes of the last build")
    i.add_argument("--board", default="QEMU_M3")
    i.add_argument("--variant", default="", choices=["", "test", "bare"])
    sub.add_parser("source", help="print the MicroPython source tree used")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            print_report(build(a.board, a.variant, quiet=not a.verbose))
        elif a.cmd == "info":
            print_report(sizes(resolve_board(a.board), a.variant))
        elif a.cmd == "source":
            print(source_tree())
    except BuildError as e:
        print("firmware: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
