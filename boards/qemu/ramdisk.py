"""A littlefs filesystem on RAM outside the GC heap: the QEMU board's flash.

A control board keeps ``config.json`` and ``state/`` (lockout record, event
log) on its internal flash filesystem (littlefs or FAT).  The MPS2-AN385
has 16 MB of PSRAM at 0x21000000 that the qemu port does not use; a block
device over a slice of it gives the firmware the same file API without
taking a byte of the GC heap for the storage itself (the VFS objects and
littlefs caches are on the heap, as on a real board).  Its content lives as
long as the emulator process.

The block callbacks allocate nothing (littlefs calls them with a buffer
wrapped on the C stack): a board's flash driver is C code that allocates
nothing either, so the heap the firmware's file I/O costs on this board
(``tests/mp/test_eventlog.py`` measures it) is the firmware's and
littlefs's own, not an artefact of the stand-in.  (A memoryview slice per
read -- 16 bytes -- made each event-log append cost several times more
on this board than on a real one, most of it in littlefs's metadata
compactions, which read dozens of blocks.)
"""
import micropython
import uctypes
import vfs

_BASE = const(0x21000000)
_BLOCK = const(512)


@micropython.viper
def _copy(dst: int, src: int, n: int):
    """memcpy between two RAM addresses (words when all are aligned)."""
    if ((dst | src | n) & 3) == 0:
        d = ptr32(dst)
        s = ptr32(src)
        w = n >> 2
        i = 0
        while i < w:
            d[i] = s[i]
            i += 1
    else:
        d8 = ptr8(dst)
        s8 = ptr8(src)
        i = 0
        while i < n:
            d8[i] = s8[i]
            i += 1


class RamBlockDevice:
    def __init__(self, base=_BASE, blocks=512, block_size=_BLOCK):
        self.block_size = block_size
        self.blocks = blocks
        self.base = base          # RAM addresses of this board are < 2**30: small ints
        self.mem = memoryview(uctypes.bytearray_at(base, blocks * block_size))

    def readblocks(self, n, buf, off=0):
        _copy(uctypes.addressof(buf), self.base + n * self.block_size + off, len(buf))

    def writeblocks(self, n, buf, off=None):
        _copy(self.base + n * self.block_size + (off or 0), uctypes.addressof(buf), len(buf))

    def ioctl(self, op, arg):
        if op == 4:             # block count
            return self.blocks
        if op == 5:             # block size
            return self.block_size
        if op == 6:             # erase: RAM needs none
            return 0
        return 0


def mount(path="/", blocks=512):
    """Format and mount a fresh filesystem at ``path`` (``blocks`` of 512
    bytes, 256 KB by default; ``qemu.main.prepare`` mounts 8 MB)."""
    bdev = RamBlockDevice(blocks=blocks)
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), path)
    return bdev
