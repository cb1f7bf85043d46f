"""ARM semihosting from MicroPython: the QEMU board's channel to the host.

Semihosting is the debug-probe channel of Cortex-M parts: a ``BKPT 0xAB``
instruction with an operation number in r0 and a parameter block in r1 is
served by the debugger -- here by qemu-system-arm
(``-semihosting-config enable=on,target=native``), which maps the console
handle ``:tt`` to the emulator process's own stdin/stdout.  The QEMU board
carries the SIL link over it, not over the emulated UART: the CMSDK UART
model takes one byte per emulator main-loop iteration (measured ~18 KB/s),
semihosting moves a whole buffer per trap (200 KB in 3 ms wall), and the
trap costs the guest one instruction, so the link does not blur the
instruction counts the benchmarks read.

Allocation-free after construction: the parameter blocks are preallocated
``array('i')`` and buffer addresses are plain ints (``uctypes.addressof``;
RAM addresses of this board are below 2**30, so small ints).
"""
import array
import micropython
import uctypes
from micropython import const

SYS_OPEN = const(0x01)
SYS_CLOSE = const(0x02)
SYS_WRITE = const(0x05)
SYS_READ = const(0x06)

MODE_R = const(0)        # "r"  : ":tt" = host stdin
MODE_RB = const(1)       # "rb"
MODE_W = const(4)        # "w"  : ":tt" = host stdout
MODE_WB = const(5)       # "wb"


@micropython.asm_thumb
def _trap(r0, r1):
    # BKPT 0xAB: the semihosting call (Thumb encoding 0xBEAB).  The host
    # leaves its result in r0, which is this function's return value.
    data(2, 0xBEAB)


class HostFile:
    """A host file handle through semihosting (``:tt`` = emulator stdio)."""

    def __init__(self, name=b":tt", mode=MODE_R):
        if isinstance(name, str):
            name = name.encode()
        self._name = bytes(name) + b"\x00"
        blk = array.array("i", [uctypes.addressof(self._name), mode, len(name)])
        self.handle = _trap(SYS_OPEN, blk)
        if self.handle < 0:
            raise OSError("semihosting open %s failed" % name)
        self._blk = array.array("i", [self.handle, 0, 0])

    def close(self):
        if self.handle >= 0:
            _trap(SYS_CLOSE, self._blk)
            self.handle = -1

    def read(self, buf):
        """Fill ``buf`` from the file; returns the count (0 = end)."""
        return self.read_addr(uctypes.addressof(buf), len(buf))

    def write(self, buf, n=None):
        self.write_addr(uctypes.addressof(buf), len(buf) if n is None else n)

    def read_addr(self, addr, n):
        """Read at most ``n`` bytes to memory at ``addr``; blocks until at
        least one byte is there.  Returns the count (0 = end of file)."""
        b = self._blk
        b[1] = addr
        b[2] = n
        return n - _trap(SYS_READ, b)

    def write_addr(self, addr, n):
        """Write ``n`` bytes from memory at ``addr`` (all of them)."""
        b = self._blk
        while n > 0:
            b[1] = addr
            b[2] = n
            left = _trap(SYS_WRITE, b)
            if left < 0 or left >= n:
                raise OSError("semihosting write failed")
            addr += n - left
            n = left
