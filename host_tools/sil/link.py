"""Host end of the SIL link: starts the firmware process and speaks the wire
format of ``docs/sil-link.md`` (mirrors ``boards/unix/sil_board.py``)."""
from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# host -> firmware
T_STEP, T_FRAME, T_INPUT, T_STOP, T_INJECT, T_CAN_STATE = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
T_STATS = 0x07
# firmware -> host
T_HELLO, T_ACK, T_FRAME_OUT, T_OUTPUT, T_TEXT, T_TELEMETRY, T_BYE = (
    0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86)
T_STATS_OUT = 0x87

INPUT_NAMES = ("v_inside", "v_outside", "i_out", "cc1_mv", "insulation_kohm",
               "t_gun_pos", "t_gun_neg", "estop", "k12_fb", "lock_fb",
               "leakage_ma", "mains_ok")
OUTPUT_NAMES = ("k12", "k34", "lock", "bleed", "pwr_en", "v_set", "i_set")
EXT_FLAG = 0x80000000


def micropython_bin() -> str:
    cand = Path(sys.executable).parent / "micropython"
    if cand.exists():
        return str(cand)
    import shutil
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError("micropython not found (run `make` to build .venv)")
    return found


def mpy_path(firmware_dir: Path | None = None) -> str:
    fw = firmware_dir or (ROOT / "firmware")
    return os.pathsep.join([str(ROOT / "boards" / "unix"), str(ROOT / "boards" / "simlink"), str(fw)])


@dataclass
class Packet:
    type: int
    payload: bytes


def pk_step(target_ms: int) -> bytes:
    return struct.pack("<BBI", T_STEP, 4, target_ms)


def pk_frame(can_id: int, data: bytes) -> bytes:
    d = bytes(data[:8])
    return struct.pack("<BBIB", T_FRAME, 13, can_id | EXT_FLAG, len(d)) + d.ljust(8, b"\0")


def pk_input(index: int, value: int) -> bytes:
    return struct.pack("<BBBi", T_INPUT, 5, index, int(value))


def pk_stop() -> bytes:
    return bytes((T_STOP, 0))


def pk_inject(code: int) -> bytes:
    return bytes((T_INJECT, 1, code))


def pk_can_state(state: int) -> bytes:
    return bytes((T_CAN_STATE, 1, state))


STATS_RESET, STATS_COLLECT, STATS_HEAP_WATCH = 1, 2, 4


def pk_stats(reset: bool = False, collect: bool = False, heap_watch: bool = False) -> bytes:
    """Ask for a STATS_OUT snapshot.  Flags: ``reset`` the statistics after
    it, ``collect`` garbage before reading the heap figures, ``heap_watch``:
    from now on the board samples the heap high-water mark after every STEP."""
    flags = ((STATS_RESET if reset else 0) | (STATS_COLLECT if collect else 0)
             | (STATS_HEAP_WATCH if heap_watch else 0))
    return bytes((T_STATS, 1, flags))


def open_console_pty() -> tuple[int, int, str]:
    """A pseudo-terminal for the firmware's console: ``(master, slave, path)``.

    The firmware process gets the **master** end as its stdin/stdout
    (``console_fd=master``); ``path`` (``/dev/pts/N``) is the slave end, the
    one ``mpremote connect PATH`` opens, like a board's ``/dev/ttyACM0``.
    Keep ``slave`` open for as long as the bench runs: without a process
    holding it, each mpremote that disconnects would hang the line up."""
    master, slave = os.openpty()
    return master, slave, os.ttyname(slave)


def prepare_board_dir(board_dir, config: str | None = None, fresh: bool = False) -> Path:
    """The SIL board's flash: a directory that the firmware process runs in,
    holding ``config.json`` and ``state/`` like the root of a board's
    filesystem (what ``mpremote fs ls`` lists).  ``config``: a file copied
    in as ``config.json`` (as ``make deploy`` does); ``fresh``: start from an
    empty board (``make charge``: every run alike)."""
    import shutil
    d = Path(board_dir)
    if fresh and d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    if config is not None:
        shutil.copyfile(config, d / "config.json")
    return d


class FirmwareProcess:
    """The ``micropython`` process running ``boards/unix/main.py``.

    ``stdin``/``stdout`` of the process are the console (a pipe by default,
    or a pseudo-terminal given as ``console_fd``: the master end of
    ``open_console_pty()``); the link is a TCP socket on 127.0.0.1 that the
    firmware connects back to.

    The process runs in ``board_dir``, the SIL board's filesystem
    (``prepare_board_dir``): ``config.json`` and ``state/`` in it unless
    ``config`` / ``state_dir`` say otherwise.  Without ``board_dir`` a
    temporary one is used and removed at ``close()`` (the checkout is never
    the board's filesystem)."""

    def __init__(self, mode="lockstep", config: str | None = None, heapsize=None,
                 console_fd: int | None = None, state_dir: str | None = None,
                 firmware_dir: Path | None = None, stderr=None, extra_env=None,
                 epoch_s: int | None = None, board_dir: str | Path | None = None,
                 console_auth: int | None = 0):
        import tempfile
        self._tmp_board = None
        if board_dir is None:
            self._tmp_board = board_dir = tempfile.mkdtemp(prefix="sil-board-")
        self.board_dir = Path(board_dir)
        self.board_dir.mkdir(parents=True, exist_ok=True)
        if config:
            config = os.path.abspath(config)
        if state_dir:
            state_dir = os.path.abspath(state_dir)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        port = self.listener.getsockname()[1]
        cmd = [micropython_bin()]
        if heapsize:
            cmd += ["-X", "heapsize=%s" % heapsize]
        cmd += [str(ROOT / "boards" / "unix" / "main.py"), "--link", "127.0.0.1:%d" % port,
                "--mode", mode]
        cmd += ["--config", config or "config.json"]
        cmd += ["--store", state_dir or "state"]
        if epoch_s is not None:
            cmd += ["--epoch", str(int(epoch_s))]
        if console_fd is not None:
            cmd += ["--console"]
        if console_auth is not None:
            # the bench's console is open by default (no keys on a bench);
            # None: the firmware's ``console.auth`` setting decides (roles)
            cmd += ["--console-auth", str(int(console_auth))]
        env = dict(os.environ, MICROPYPATH=mpy_path(firmware_dir))
        if extra_env:
            env.update(extra_env)
        self.cmd = cmd
        stdio = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        if console_fd is not None:
            stdio = dict(stdin=console_fd, stdout=console_fd)
        self.proc = subprocess.Popen(cmd, env=env, stderr=stderr if stderr is not None
                                     else subprocess.PIPE, cwd=str(self.board_dir), **stdio)
        self.listener.settimeout(20)
        try:
            self.sock, _ = self.listener.accept()
        except socket.timeout:
            err = self._stderr_text()
            self.proc.kill()
            raise RuntimeError("firmware did not connect: %s" % err)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)
        self.rx = bytearray()
        self.hello = self.read_packet()
        if self.hello.type != T_HELLO:
            raise RuntimeError("expected HELLO, got %r" % (self.hello,))
        self.closed = False

    def _stderr_text(self) -> str:
        try:
            if self.proc.stderr:
                self.proc.kill()
                return self.proc.stderr.read().decode(errors="replace")[-3000:]
        except Exception:
            pass
        return ""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, timeout: float | None) -> bool:
        while len(self.rx) < n:
            if timeout is not None:
                r, _, _ = select.select([self.sock], [], [], timeout)
                if not r:
                    return False
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("firmware closed the link: %s" % self._stderr_text())
            self.rx += chunk
        return True

    def read_packet(self, timeout: float | None = None) -> Packet | None:
        if not self._fill(2, timeout):
            return None
        n = self.rx[1]
        if not self._fill(2 + n, timeout):
            return None
        p = Packet(self.rx[0], bytes(self.rx[2:2 + n]))
        del self.rx[:2 + n]
        return p

    def poll_packet(self) -> Packet | None:
        """A packet if one is already buffered or readable now, else None."""
        return self.read_packet(timeout=0)

    def close(self, timeout=5.0) -> int | None:
        if self.closed:
            return self.proc.returncode
        self.closed = True
        try:
            self.send(pk_stop())
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for s in (self.sock, self.listener):
            try:
                s.close()
            except OSError:
                pass
        if self._tmp_board:
            import shutil
            shutil.rmtree(self._tmp_board, ignore_errors=True)
        return self.proc.returncode


def decode_frame(p: Packet):
    t_ms, cid, dlc = struct.unpack_from("<IIB", p.payload, 0)
    return t_ms, cid & 0x1FFFFFFF, bytes(p.payload[9:9 + min(dlc, 8)])


def decode_output(p: Packet):
    return struct.unpack_from("<IBi", p.payload, 0)


def decode_text(p: Packet):
    (t_ms,) = struct.unpack_from("<I", p.payload, 0)
    return t_ms, p.payload[4:].decode(errors="replace")


STATS_GLOBAL_FIELDS = ("passes", "pass_wcet_us", "loop_us", "mem_alloc", "mem_free",
                       "rx_frames", "rx_overruns", "rx_backlog_max", "ntasks", "heap_peak")
STATS_TASK_FIELDS = ("runs", "total_us", "wcet_us", "overruns", "alloc_bytes",
                     "alloc_max", "late_max_ms")


def decode_stats(p: Packet):
    """One STATS_OUT packet -> (t_ms, index, dict); index 0xFF = totals."""
    t_ms, idx = struct.unpack_from("<IB", p.payload, 0)
    if idx == 0xFF:
        n = min(len(STATS_GLOBAL_FIELDS), (len(p.payload) - 5) // 4)
        vals = struct.unpack_from("<%dI" % n, p.payload, 5)
        return t_ms, idx, dict(zip(STATS_GLOBAL_FIELDS, vals))
    vals = struct.unpack_from("<7I", p.payload, 5)
    d = dict(zip(STATS_TASK_FIELDS, vals))
    d["name"] = p.payload[33:].decode(errors="replace")
    return t_ms, idx, d
