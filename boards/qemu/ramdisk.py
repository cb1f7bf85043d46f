"""A littlefs filesystem on RAM outside the GC heap: the QEMU board's flash.

A control board keeps ``config.json`` and ``state/`` (lockout record, event
log) on its internal flash filesystem (littlefs or FAT).  The MPS2-AN385
has 16 MB of PSRAM at 0x21000000 that the qemu port does not use; a block
device over a slice of it gives the firmware the same file API without
taking a byte of the GC heap for the storage itself (the VFS objects and
littlefs caches are on the heap, as on a real board).  Its content lives as
long as the emulator process.
"""
import uctypes
import vfs

_BASE = const(0x21000000)
_BLOCK = const(512)


class RamBlockDevice:
    def __init__(self, base=_BASE, blocks=512, block_size=_BLOCK):
        self.block_size = block_size
        self.blocks = blocks
        self.mem = memoryview(uctypes.bytearray_at(base, blocks * block_size))

    def readblocks(self, n, buf, off=0):
        a = n * self.block_size + off
        buf[:] = self.mem[a:a + len(buf)]

    def writeblocks(self, n, buf, off=None):
        a = n * self.block_size + (off or 0)
        self.mem[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:             # block count
            return self.blocks
        if op == 5:             # block size
            return self.block_size
        if op == 6:             # erase: RAM needs none
            return 0
        return 0


def mount(path="/", blocks=512):
    """Format and mount a fresh filesystem at ``path`` (256 KB by default)."""
    bdev = RamBlockDevice(blocks=blocks)
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), path)
    return bdev
