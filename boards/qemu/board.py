"""The QEMU target board: the firmware on a 32-bit Cortex-M MicroPython.

Upstream MicroPython's qemu port on the MPS2-AN385 (Cortex-M3) with the
charger frozen in and the heap of a PYBv1.1 (boards/qemu/QEMU_M3).  It is
the SIL board's twin on the real target class: the same wire format
(``simlink.LinkBoard``, docs/sil-link.md), carried over semihosting on the
emulator's stdin/stdout (``qemu.semihost``), lock-step only, so the host
harness (``host_tools.sil.Simulation(target="qemu")``) drives it exactly as
it drives the unix SIL board.  Under ``qemu-system-arm -icount shift=0``
``time.ticks_us()`` advances one microsecond per 1,000 guest instructions,
so every CPU figure the scheduler and the STATS packet report is an exact,
repeatable instruction count (docs/performance.md converts it to MCU time).

The REPL UART stays free: the harness boots the firmware through the raw
REPL (as mpremote does), and with ``console=True`` the field console
(``diag.console``) serves mpremote on it while the charger runs.
"""
import uctypes

from simlink import LinkBoard
from qemu.semihost import HostFile, MODE_R, MODE_W


class QemuBoard(LinkBoard):
    name = "qemu-m3"

    def __init__(self, epoch_s=1767225600):
        LinkBoard.__init__(self, True, epoch_s)
        self._hin = HostFile(b":tt", MODE_R)
        self._hout = HostFile(b":tt", MODE_W)
        self._raddr = uctypes.addressof(self.rbuf)
        self.hello(b"qemu-m3")

    # console_stream: the Board default, the REPL UART (sys.stdin/stdout)

    # ---- transport: semihosting on the emulator's stdin/stdout ---------------
    def _recv(self, off, n):
        return self._hin.read_addr(self._raddr + off, n)

    def _send(self, buf, n):
        self._hout.write_addr(uctypes.addressof(buf), n)
