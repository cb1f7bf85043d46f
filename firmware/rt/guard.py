"""Exception guards whose Python frame is made once.

MicroPython (without ``MICROPY_ENABLE_PYSTACK``, as the stm32 and qemu ports
are built) takes the frame of a bytecode function from the GC heap at every
call when its locals and value stack exceed 11 words -- and any
``try``/``except ... as e`` makes a frame that big.  A heap allocation is a
first-fit scan of the allocation table: cheap on a tidy heap, several
kinstr when it must skip the small holes a collection left (measured: 6.5
kinstr per protection tick on the QEMU target, docs/performance.md).  The
per-tick functions that must never raise (the protection tick, the check
ticks, the app's pass) therefore run inside a generator: its frame is made
once, when the guard is made, and each call is a resume (``send``).

``start(fn, fail)`` returns a callable ``g(x)``: ``fn(x)``'s result, or, if
``fn`` raised an ``Exception`` ``e``, ``fail(e)`` is called and 0 returned.
With ``base=True`` every ``BaseException`` goes to ``fail`` (which may
re-raise).  An exception that leaves the guard (not caught, or re-raised by
``fail``) ends it: the next call raises ``StopIteration``; the owner then
starts a new one (``call``).
"""


def _guard(fn, fail):
    x = yield
    while True:
        try:
            r = fn(x)
        except Exception as e:
            fail(e)
            r = 0
        x = yield r


def _guard_base(fn, fail):
    x = yield
    while True:
        try:
            r = fn(x)
        except BaseException as e:
            fail(e)
            r = 0
        x = yield r


def start(fn, fail, base=False):
    g = (_guard_base if base else _guard)(fn, fail)
    next(g)
    return g.send
