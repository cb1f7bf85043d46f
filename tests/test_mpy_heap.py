"""The heap figure behind `deploy --mpy`'s refusal, re-measured on the target.

host_tools/mpy_heap.py installs the firmware as .mpy files (mpy-cross
-march=armv7m) on the QEMU board's RAM filesystem and imports it from there
(docs/boards.md, "Heap: image or .mpy files"):

- on the stock large-heap image (no charger frozen) it measures what stays
  allocated after ``import charger`` and, by bisection with a blocker, the
  smallest heap the import succeeds in; both must be within 10 % of the
  figures host_tools/deploy.py quotes (MPY_HEAP_RETAINED, MPY_HEAP_NEED), and
  the need must still separate the boards the gate separates;
- on the product image (PYBv1.1 heap, 105,632 bytes) the same import must
  end in MemoryError.
"""
import pytest

from host_tools import deploy, mpy_heap


@pytest.fixture(scope="module")
def rep():
    lines = []
    r = mpy_heap.measure(echo=lines.append)
    r["lines"] = lines
    return r


def test_retained_and_need_match_the_quoted_figures(rep):
    b = rep["bare"]
    assert b["heap_bytes"] == 1024 * 1024
    assert b["modules"] >= 30                       # the whole charger, from .mpy files
    assert abs(b["retained"] - deploy.MPY_HEAP_RETAINED) <= deploy.MPY_HEAP_RETAINED // 10, \
        "update MPY_HEAP_RETAINED and docs/boards.md: %s" % "\n".join(rep["lines"])
    assert abs(b["need_heap"] - deploy.MPY_HEAP_NEED) <= deploy.MPY_HEAP_NEED // 10, \
        "update MPY_HEAP_NEED and docs/boards.md: %s" % "\n".join(rep["lines"])
    assert b["retained"] < b["need_usable"] <= b["need_heap"]


def test_need_still_separates_the_boards(rep):
    need = rep["bare"]["need_heap"]
    T = deploy.BOARD_TABLE
    assert T["PYBV11"].heap < need < T["NUCLEO_H743ZI"].heap
    assert T["esp32"].heap < need < T["esp32"].psram_heap


def test_product_heap_raises_memory_error(rep):
    p = rep["product"]
    assert p["heap_bytes"] == deploy.BOARD_TABLE["PYBV11"].heap
    assert not p["ok"] and p["error"].startswith("MemoryError"), p
