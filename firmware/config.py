"""Configuration: every threshold, timeout and limit, with a documented default.

Each module that has settings declares ``CONFIG_SCHEMA``: a tuple of
``(key, default, lo, hi, unit, doc)``.  ``lo``/``hi`` bound integers; a
string setting has ``lo = hi = None`` and its default gives the type.  The
product's full schema is the concatenation of the modules' schemas
(``schema()``), so a setting is documented next to the code that uses it
and ``docs/configuration.md`` is generated from the same table.

``load`` reads a JSON file of overrides, checks every key against the
schema (unknown key, wrong type, out of range, cross-field rules) and
returns ``(cfg, errors)``.  A non-empty error list means: refuse to charge
and say why on the console.  The firmware never charges on a partial or
guessed configuration.  ``load`` never raises.

The file is read by ``read`` with the strict parser of ``cfgjson``
(why not the ``json`` module: see there).
"""

CONFIG_SCHEMA = (
    ("charger.id", 1, 0, 0xFFFFFFFF, "-", "Charger number sent in CRM/CSD"),
    ("charger.region", "440", None, None, "-", "Region code: exactly 3 printable ASCII characters, sent as is in CRM bytes 6-8"),
    ("rating.max_v", 7500, 500, 15000, "0.1 V", "Rated (max) output voltage"),
    ("rating.min_v", 2000, 0, 15000, "0.1 V", "Min output voltage"),
    ("rating.max_i", 2000, 10, 10000, "0.1 A", "Rated (max) output current"),
    ("rating.min_i", 0, 0, 10000, "0.1 A", "Min output current"),
    ("rating.max_p", 600, 10, 10000, "0.1 kW", "Rated output power"),
)


# Settings older firmware had: still an error in a file (the firmware never
# guesses), but one that says what to do.
REMOVED = {
    "telemetry.rtc_epoch_2000": "every board gives its RTC in the firmware epoch 2020-01-01",
    "trip.tick_ms": "the trip path works to the protection tick, sched.protect_ms",
}


class ConfigError(Exception):
    pass


_modules = []


def register(schema):
    """Add a module's schema to the product schema (call at import)."""
    if schema not in _modules:
        _modules.append(schema)


register(CONFIG_SCHEMA)


def schema():
    out = []
    for s in _modules:
        out.extend(s)
    return out


def entry(key):
    """The registered schema tuple of ``key``; ``KeyError`` for a key no
    module declares."""
    for s in _modules:
        for e in s:
            if e[0] == key:
                return e
    raise KeyError(key)


def get(cfg, key):
    """``cfg[key]``, else the registered default (modules read their
    settings with this at construction, so a partial dict works in tests);
    ``KeyError`` for a key no module declares.  ``cfg``: a dict or a
    ``Settings``."""
    if cfg is not None:
        cfg = getattr(cfg, "_d", cfg)       # Settings: its non-default values
        if key in cfg:
            return cfg[key]
    return entry(key)[1]


def get_int(cfg, key):
    """``get``, but the registered default when the value is not an int in
    the schema's range: for a board, which builds its hardware thresholds
    before the app has validated the whole configuration (the app then
    refuses to charge on the bad value; the hardware keeps a sane one)."""
    e = entry(key)
    v = get(cfg, key)
    if isinstance(v, int) and not isinstance(v, bool) and e[2] <= v <= e[3]:
        return v
    return e[1]


def defaults():
    return dict((e[0], e[1]) for e in schema())


class Settings:
    """The running configuration, compact: a dict of the values that differ
    from the schema's defaults (type included: ``1`` for a ``True`` default
    is kept), every other key read from the schemas (tuples in flash on a
    board).  A dict of every setting is a 223-slot table (1.8 KB of heap);
    the app keeps one of these instead.  Reads, tests and changes like the
    dict ``load`` returns (``[]``, ``in``, ``get``, iteration, ``len``,
    ``keys``, ``items``, ``[] =``); not for a hot path: a default is found
    by a scan of the schemas."""

    def __init__(self, cfg):
        d = {}
        n = 0
        for s in _modules:
            for e in s:
                k = e[0]
                if k in cfg:
                    n += 1
                    v = cfg[k]
                    if v != e[1] or type(v) is not type(e[1]):
                        d[k] = v
        if n != len(cfg):                   # keys no schema declares
            for k in cfg:
                if k not in d and not _declared(k):
                    d[k] = cfg[k]
        self._d = d

    def __getitem__(self, key):
        return get(self, key)

    def __setitem__(self, key, value):
        self._d[key] = value

    def __contains__(self, key):
        return key in self._d or _declared(key)

    def get(self, key, default=None):
        if key in self:
            return get(self, key)
        return default

    def keys(self):
        out = [e[0] for e in schema()]
        for k in self._d:
            if not _declared(k):
                out.append(k)
        return out

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def items(self):
        return [(k, get(self, k)) for k in self.keys()]


def _declared(key):
    for s in _modules:
        for e in s:
            if e[0] == key:
                return True
    return False


def validate(cfg, checks=()):
    """Return a list of human-readable errors (empty = valid)."""
    errors = []
    known = {}
    for e in schema():
        known[e[0]] = e
    for k in cfg:
        if k not in known:
            if k in REMOVED:
                errors.append("setting %r was removed (%s): delete it" % (k, REMOVED[k]))
            else:
                errors.append("unknown setting %r" % k)
    for k, e in known.items():
        if k not in cfg:
            errors.append("missing setting %r" % k)
            continue
        v = cfg[k]
        default, lo, hi = e[1], e[2], e[3]
        if isinstance(default, str):
            if not isinstance(v, str):
                errors.append("%s must be text, got %r" % (k, v))
        elif isinstance(default, bool):
            # true/false or the integers 0/1; a float (1.0) is not a flag
            if not (isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))):
                errors.append("%s must be true/false, got %r" % (k, v))
        else:
            if not isinstance(v, int) or isinstance(v, bool):
                errors.append("%s must be an integer (%s), got %r" % (k, e[4], v))
            elif (lo is not None and v < lo) or (hi is not None and v > hi):
                errors.append("%s = %d outside %d..%d %s" % (k, v, lo, hi, e[4]))
    if not errors:
        for fn in checks:
            msg = fn(cfg)
            if msg:
                errors.append(msg)
    return errors


def _cross(cfg):
    if cfg["rating.min_v"] >= cfg["rating.max_v"]:
        return "rating.min_v must be below rating.max_v"
    if cfg["rating.min_i"] >= cfg["rating.max_i"]:
        return "rating.min_i must be below rating.max_i"
    r = cfg["charger.region"]
    if len(r) != 3 or not all(0x20 < ord(ch) < 0x7F for ch in r):
        return "charger.region must be exactly 3 printable ASCII characters (CRM bytes 6-8), got %r" % (r,)
    return None


CROSS_CHECKS = [_cross]


# Largest configuration file accepted (bytes).  A file with every setting
# of the schema at a long value is ~8 KB; the file is read whole into the
# heap (~100 KB on a board), so the bound is checked before reading it.
MAX_FILE = 16384


def _reader():
    """The strict reader, imported for one call and not kept: it runs at
    boot and on cfg_set only, and its module would hold RAM all day."""
    import sys
    import cfgjson
    sys.modules.pop("cfgjson", None)
    return cfgjson


def parse(b):
    """``cfgjson.parse``: one flat JSON object of scalars -> dict; raises
    ``ValueError("line N: why")``."""
    return _reader().parse(b)


def read(path):
    """``cfgjson.read``: the overrides in the file at ``path``,
    ``(dict, error or None)``; never raises."""
    return _reader().read(path)


def load(path=None, overrides=None):
    """Defaults, then the JSON file at ``path`` (if any), then ``overrides``.

    Returns ``(cfg, errors)``; ``errors`` non-empty means do not charge.
    Never raises (an error in the validation itself is an error too)."""
    cfg = defaults()
    errors = []
    if path:
        data, err = read(path)
        if err:
            errors.append(err)
        else:
            cfg.update(data)
    if overrides:
        cfg.update(overrides)
    try:
        errors.extend(validate(cfg, CROSS_CHECKS))
    except Exception as e:
        errors.append("validation failed (%s %s)" % (type(e).__name__, e))
    return cfg, errors
