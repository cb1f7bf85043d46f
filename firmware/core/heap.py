"""When the app collects garbage (issue 9, docs/performance.md).

Collected only with no session in progress (IDLE, CONNECTED, DONE: every
output off; once at plug-in by the records pass), never from the lock to
the end of a session (a collection is ~680 kinstr on the target with the
app's heap, 9.8 ms of an F405) unless the app's own allocations reach
16 KB.  The app counts what it allocates where it allocates (``note``)."""
import gc
from micropython import const
from rt.clock import ticks_diff
from gbt.stages import IDLE, CONNECTED, DONE
import config

# Heap bytes the app counts per allocation site (estimates, generous), and
# what it lets accumulate while charging before the slow task collects:
# a third of the ~50 KB a PYBv1.1 has free at charging (docs/performance.md)
GC_TEXT = const(192)       # one text event: formatting, the board's copy, log record
GC_CONSOLE = const(2048)   # one console poll that had input (a command line)
GC_SLOW = const(1024)      # lockout notes, persistence (pack, file I/O)
_GC_CHARGING = const(16384)
# Stages in which the slow task collects as it needs (no session: outputs
# off); in every other stage only past _GC_CHARGING (see HeapPolicy.slow)
_GC_STAGES = const(0x2003)  # 1 << IDLE | 1 << CONNECTED | 1 << DONE
assert _GC_STAGES == (1 << IDLE) | (1 << CONNECTED) | (1 << DONE)


class HeapPolicy:
    def __init__(self, clock):
        self.clock = clock
        self.due = True                 # the app allocated since the last collection
        self.plug = False               # plugged in: collect before the session (records)
        self.bytes = 0                  # ... about this much (see slow)
        self.max_ms = 0                 # sched.gc_max_s (configure)
        self.runs = 0                   # collections so far
        self.t = clock.ticks_ms()

    def configure(self, cfg):
        self.max_ms = config.get(cfg, "sched.gc_max_s") * 1000
        self.t = self.clock.ticks_ms()

    def note(self, n):
        """The app allocated about ``n`` bytes (text, console, persistence)."""
        self.due = True
        self.bytes += n

    def slow(self, now, stage):
        # Collect here, between control passes, so that a collection never
        # lands inside the protection or session tick; and not while a
        # session is in progress (LOCKING .. FINISH: the lock, the
        # auxiliary supply, the power stage or K1/K2 may be on): a
        # collection costs ~680 kinstr on the target with the app's heap
        # (9.8 ms of an F405; docs/performance.md, "worst pass"), ten 1 ms
        # passes, and would delay the protection tick by that much.  With
        # no session (IDLE, CONNECTED, DONE: every output the protection
        # tick guards is off) a late tick cuts nothing.  There: when the
        # app allocated (``due``: text events, the console, the slow
        # tick's persistence) or every ``sched.gc_max_s`` (the board may
        # allocate).  In a session: only once the app's allocations since
        # the last collection (``bytes``, counted where it allocates: text
        # length + formatting, console input, persistence) reach
        # ``_GC_CHARGING`` -- the heap running low.  (Asking the heap
        # itself, gc.mem_free(), scans the allocation table: 230 kinstr,
        # about a collection.)
        if not (_GC_STAGES >> stage) & 1:
            if self.bytes < _GC_CHARGING:
                return
        elif not (self.due or ticks_diff(now, self.t) >= self.max_ms):
            return
        self._collect(now)

    def plug_collect(self, stage):
        # Plugged in, not started yet (CONNECTED: every output off, so a
        # pass made long by the collection delays no protection that could
        # cut anything): start the session with the heap collected, as
        # the slow task will not collect again until it ends (slow).
        self.plug = False
        if stage == CONNECTED:
            self._collect(self.clock.ticks_ms())

    def _collect(self, now):
        self.due = False
        self.bytes = 0
        self.t = now
        gc.collect()
        self.runs += 1
