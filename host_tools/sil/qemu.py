"""Host end of the QEMU target board: qemu-system-arm running the frozen image.

``QemuFirmwareProcess`` has the interface of ``link.FirmwareProcess`` (send,
read_packet, poll_packet, close, hello), so ``Simulation(target="qemu")``
and everything built on it (the BMS simulator through the ``sil`` python-can
interface, plant, conformance helpers) drive the 32-bit target unchanged.

Channels of the emulated MPS2-AN385:

* the SIL link (docs/sil-link.md) = semihosting on the emulator process's
  stdin/stdout (pipes here; ``boards/qemu/semihost.py`` says why not the UART);
* the REPL UART = a TCP socket on 127.0.0.1 that qemu connects to: the
  harness boots the firmware through the raw REPL (as mpremote does) and then
  keeps reading it (tracebacks, ``print`` output) into ``uart_text``.

``-icount shift=0``: the guest clock advances 1 ns per instruction, so
``time.ticks_us()`` differences in the firmware are thousands of
instructions -- exact and repeatable, whatever the host is doing.
"""
from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from . import link as L

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BOARD = "QEMU_M3"
MACHINE = {"QEMU_M3": "mps2-an385"}


def image_path(board: str = DEFAULT_BOARD, variant: str = "") -> Path:
    from host_tools import firmware
    return firmware.build_dir(board, variant) / "firmware.elf"


def ensure_image(board: str = DEFAULT_BOARD, variant: str = "") -> Path:
    """The image, built first if missing (``host_tools.firmware``)."""
    img = image_path(board, variant)
    if not img.exists():
        from host_tools import firmware
        firmware.build(board, variant)
    return img


def qemu_bin() -> str:
    q = shutil.which("qemu-system-arm")
    if not q:
        raise FileNotFoundError("qemu-system-arm not found (make firmware BOARD=QEMU_M3 installs it)")
    return q


class QemuError(RuntimeError):
    pass


class QemuMachine:
    """qemu-system-arm with the image, the REPL UART on a loopback socket
    and the semihosting console on pipes.  Used by ``QemuFirmwareProcess``
    (the charger) and by the target test runner (scripts in the raw REPL)."""

    def __init__(self, image: Path | None = None, board: str = DEFAULT_BOARD,
                 icount: bool = True, stderr=None):
        self.image = Path(image) if image else ensure_image(board)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        cmd = [qemu_bin(), "-machine", MACHINE.get(board, "mps2-an385"), "-nographic",
               "-monitor", "null", "-semihosting-config", "enable=on,target=native",
               "-serial", "tcp:127.0.0.1:%d" % port, "-kernel", str(self.image)]
        if icount:
            cmd[1:1] = ["-icount", "shift=0"]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr if stderr is not None else subprocess.PIPE)
        srv.settimeout(20)
        try:
            self.uart, _ = srv.accept()
        except socket.timeout:
            self.proc.kill()
            raise QemuError("qemu did not connect its UART: %s" % self._stderr_text())
        finally:
            srv.close()
        self.uart.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ubuf = bytearray()
        self._ulock = threading.Condition()
        self._ureader = None
        self.rx = bytearray()
        self._out_fd = self.proc.stdout.fileno()
        self.closed = False

    # -- the REPL UART -----------------------------------------------------
    def _uart_recv(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.uart], [], [], timeout)
        if not r:
            return b""
        c = self.uart.recv(65536)
        if not c:
            raise QemuError("UART closed")
        return c

    def uart_until(self, token: bytes, timeout: float = 20.0) -> bytes:
        """Read the UART until ``token``; returns everything up to and with it."""
        end = time.monotonic() + timeout
        while token not in self._ubuf:
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise QemuError("UART: no %r within %.0f s; got %r%s" % (
                    token, timeout, bytes(self._ubuf[-300:]), self._stderr_text()))
            self._ubuf += self._uart_recv(min(left, 0.5))
        i = self._ubuf.index(token) + len(token)
        out = bytes(self._ubuf[:i])
        del self._ubuf[:i]
        return out

    def raw_repl(self) -> None:
        """Enter the raw REPL from the banner (Ctrl-C, Ctrl-A)."""
        self.uart_until(b">>> ")
        self.uart.sendall(b"\r\x03\x03\x01")
        self.uart_until(b"raw REPL; CTRL-B to exit\r\n>")

    def raw_exec_start(self, code: str) -> None:
        """Send ``code`` for execution (Ctrl-D) and wait for ``OK``."""
        self.uart.sendall(code.encode() + b"\x04")
        self.uart_until(b"OK")

    def raw_result(self, timeout: float = 60.0) -> tuple[str, str]:
        """stdout and stderr of the command started by ``raw_exec_start``."""
        out = self.uart_until(b"\x04", timeout)[:-1]
        err = self.uart_until(b"\x04", timeout)[:-1]
        self.uart_until(b">", timeout)
        return out.decode(errors="replace"), err.decode(errors="replace")

    def raw_exec(self, code: str, timeout: float = 60.0) -> tuple[str, str]:
        self.raw_exec_start(code)
        return self.raw_result(timeout)

    def keep_reading_uart(self) -> None:
        """From now on collect UART output in the background (``uart_text``)."""
        def loop():
            try:
                while not self.closed:
                    c = self._uart_recv(0.2)
                    if c:
                        with self._ulock:
                            self._ubuf += c
            except (OSError, QemuError):
                pass
        self._ureader = threading.Thread(target=loop, daemon=True)
        self._ureader.start()

    @property
    def uart_text(self) -> str:
        with self._ulock:
            return self._ubuf.decode(errors="replace")

    # -- the semihosting link ----------------------------------------------
    def send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as e:
            raise ConnectionError("target closed the link: %s" % self._why()) from e

    def _fill(self, n: int, timeout: float | None) -> bool:
        while len(self.rx) < n:
            r, _, _ = select.select([self._out_fd], [], [], timeout)
            if not r:
                return False
            chunk = os.read(self._out_fd, 65536)
            if not chunk:
                raise ConnectionError("target closed the link: %s" % self._why())
            self.rx += chunk
        return True

    def read_packet(self, timeout: float | None = None) -> L.Packet | None:
        if not self._fill(2, timeout):
            return None
        n = self.rx[1]
        if not self._fill(2 + n, timeout):
            return None
        p = L.Packet(self.rx[0], bytes(self.rx[2:2 + n]))
        del self.rx[:2 + n]
        return p

    def poll_packet(self) -> L.Packet | None:
        return self.read_packet(timeout=0)

    # -- lifecycle -----------------------------------------------------------
    def _stderr_text(self) -> str:
        try:
            if self.proc.poll() is not None and self.proc.stderr:
                return " / qemu: " + self.proc.stderr.read().decode(errors="replace")[-2000:]
        except Exception:
            pass
        return ""

    def _why(self) -> str:
        time.sleep(0.2)
        return ("UART: " + self.uart_text[-2000:] + self._stderr_text()).strip()

    def close(self, timeout: float = 5.0) -> int | None:
        if self.closed:
            return self.proc.returncode
        self.closed = True
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        try:
            self.uart.close()
        except OSError:
            pass
        return self.proc.returncode


class QemuFirmwareProcess(QemuMachine):
    """The charger on the QEMU target, booted and speaking the SIL link."""

    def __init__(self, config: str | None = None, epoch_s: int | None = None,
                 image: Path | None = None, board: str = DEFAULT_BOARD, stderr=None,
                 config_text: str | None = None, boot_timeout: float = 30.0,
                 state_dir: str | None = None, files: dict | None = None,
                 prelude: str | None = None):
        """``state_dir``: a host directory that stands for the board's
        ``state/`` on flash: its files are copied onto the board's RAM
        filesystem before the app starts and the board's files are written
        back when the firmware stops (``close``), so records can be read and
        a second run boots from them (a reboot).  ``files``: more files for
        the board's filesystem (name -> bytes, e.g. ``keys.json``);
        ``prelude``: code run on the board after them, before the app
        starts (a measurement's set-up, e.g. a sealed link's session keys)."""
        super().__init__(image=image, board=board, stderr=stderr)
        self.raw_repl()
        lines = ["import qemu.main as m", "m.prepare()"]
        if config_text is None and config:
            config_text = Path(config).read_text()
        if config_text is not None:
            lines.append("m.put('config.json', %r)" % config_text.encode())
        for name, data in (files or {}).items():
            lines.append("m.put(%r, %r)" % (name, bytes(data)))
        if prelude:
            lines.append(prelude)
        extra = ""
        if state_dir:
            sd = Path(state_dir).resolve()
            sd.mkdir(parents=True, exist_ok=True)
            names = sorted(p.name for p in sd.iterdir() if p.is_file())
            extra = ", host_state=%r, restore=%r" % (str(sd), names)
        lines.append("m.run(config='config.json', epoch=%d%s)" % (
            epoch_s if epoch_s is not None else 1767225600, extra))
        self.raw_exec_start("\n".join(lines) + "\n")
        self.keep_reading_uart()
        self.hello = self.read_packet(timeout=boot_timeout)
        if self.hello is None or self.hello.type != L.T_HELLO:
            raise QemuError("expected HELLO from the target, got %r; %s" % (self.hello, self._why()))

    def close(self, timeout: float = 5.0) -> int | None:
        if not self.closed:
            try:
                self.send(L.pk_stop())
            except (OSError, ConnectionError):
                pass
        return super().close(timeout)
