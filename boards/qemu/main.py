"""Boot of the QEMU target board (frozen; started from the raw REPL).

The qemu port has no boot script, so the harness (``host_tools/target.py``)
boots it the way mpremote would, in one raw-REPL command::

    import qemu.main as m
    m.prepare()                      # RAM filesystem, heap figure at boot
    m.put("config.json", b"...")     # optional: the configuration file
    m.run(console=False, epoch=1767225600)

``run`` never returns while the harness steps the firmware; on the
harness's STOP it forces the outputs safe, says BYE and exits the emulator
(``machine.reset()`` is a semihosting exit on this port).  Any exception
leaves the outputs safe first (H-9), then reaches the REPL as a traceback.
"""
import gc
import micropython

HEAP = {}          # heap figures measured at boot (bytes), read by the bench
FS_BLOCKS = 16384  # RAM filesystem size in 512-byte blocks (8 MB)


def prepare(fs_blocks=FS_BLOCKS):
    """Mount the RAM filesystem and record the free heap before the app.

    8 MB by default (of the 16 MB PSRAM, outside the GC heap): larger than
    a board's flash, so a test can make the files it needs (tests/mp
    test_config writes a 4 MB file to prove the config reader bounded); the
    firmware never needs more than a few KB."""
    from qemu import ramdisk
    ramdisk.mount("/", fs_blocks)
    gc.collect()
    HEAP["boot_free"] = gc.mem_free()
    HEAP["boot_alloc"] = gc.mem_alloc()


def put(path, data):
    """Write a file (the harness's stand-in for ``mpremote fs cp``)."""
    with open(path, "wb") as f:
        f.write(data)


def _copy_in(host_dir, state, names):
    """The board's flash as the harness left it: host files -> ``state/``."""
    import os
    from qemu.semihost import HostFile, MODE_RB
    try:
        os.mkdir(state)
    except OSError:
        pass
    buf = bytearray(512)
    for n in names:
        src = HostFile(host_dir + "/" + n, MODE_RB)
        with open(state + "/" + n, "wb") as f:
            while True:
                k = src.read(buf)
                if not k:
                    break
                f.write(memoryview(buf)[:k])
        src.close()


def _copy_out(state, host_dir):
    """``state/`` -> host files, so the harness sees the board's records
    after the run (and can boot the next run from them: a reboot)."""
    import os
    from qemu.semihost import HostFile, MODE_WB
    buf = bytearray(512)
    for n in os.listdir(state):
        p = state + "/" + n
        if os.stat(p)[0] & 0x4000:          # a directory: the state dir is flat
            continue
        dst = HostFile(host_dir + "/" + n, MODE_WB)
        with open(p, "rb") as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                dst.write(buf, k)
        dst.close()


def _safe(board):
    if board is not None:
        board.force_safe()
        try:
            board.flush()
        except Exception:
            pass


def run(config="config.json", state="state", epoch=1767225600, console=False, exit=True,
        host_state=None, restore=(), update="update"):
    """Run the charger through the shared boot sequence (firmware/bootseq.py:
    the slot under ``update``, trial, rollback).  ``host_state``: a host
    directory mirrored into ``state/`` before the app starts (the files
    named in ``restore``) and written back when it stops."""
    micropython.kbd_intr(-1 if console else 3)
    if host_state:
        _copy_in(host_state, state, restore)

    def build():
        from qemu.board import QemuBoard
        return QemuBoard(epoch)

    def start(board):
        import charger             # from the selected slot (bootseq.enter)
        gc.collect()
        HEAP["imports_alloc"] = gc.mem_alloc()
        board.send_text("heap", "boot_free=%d boot_alloc=%d imports_alloc=%d" % (
            HEAP.get("boot_free", -1), HEAP.get("boot_alloc", -1), HEAP["imports_alloc"]))
        charger.main(board, config, console=console, state_dir=state)

    try:
        import bootseq
        bootseq.run(build, start, _safe, update)
    finally:
        if host_state:
            _copy_out(state, host_state)
    if exit:
        import machine
        machine.reset()
