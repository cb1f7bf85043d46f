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

The file is read by ``read`` with its own strict parser, not the ``json``
module: MicroPython's ``json`` accepts text that is not JSON (a trailing
comma, ``07000``, ``{"a" 1}``, ``{"a": 1 2}``, unknown escapes), keeps the
last of duplicate keys, recurses on nesting and reads the whole file into
the heap.  The parser takes exactly one flat JSON object of scalars
(RFC 8259 grammar; ASCII only; at most ``MAX_FILE`` bytes) and rejects,
with the line number: a trailing comma, a number with a leading zero, a
duplicate key, an array or object as a value (this is also the nesting
bound: depth 1, no recursion anywhere), text after the object, a non-ASCII
byte, a number longer than ``_NUM_MAX`` characters.  A number with a
fraction or exponent is read as a float, which no setting accepts (not even
a true/false one: ``1.0`` is refused).  ``host_tools/config_check.py``
runs this very code on the ``micropython`` binary, so host and board give
the same verdict for the same file.
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
_NUM_MAX = 24          # longest number token (characters)

_WS = b" \t\r\n"
_ESC = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 0x08, 0x66: 0x0C,
        0x6E: 0x0A, 0x72: 0x0D, 0x74: 0x09}


class _Bad(Exception):
    pass


def _line(b, i):
    return b.count(b"\n", 0, i) + 1 if i <= len(b) else b.count(b"\n") + 1


def _ws(b, i):
    n = len(b)
    while i < n and b[i] in _WS:
        i += 1
    return i


def _str(b, i):
    """String token at ``b[i] == '"'``: (str, index after it)."""
    out = bytearray()
    i += 1
    n = len(b)
    while True:
        if i >= n:
            raise _Bad((i, "unterminated string"))
        c = b[i]
        if c == 0x22:
            return str(out, "ascii"), i + 1
        if c == 0x5C:
            i += 1
            e = b[i] if i < n else 0
            if e in _ESC:
                out.append(_ESC[e])
                i += 1
            elif e == 0x75:                       # \uXXXX
                u = 0
                for k in range(i + 1, i + 5):
                    h = b[k] if k < n else 0
                    if 0x30 <= h <= 0x39:
                        h -= 0x30
                    elif 0x61 <= (h | 0x20) <= 0x66:
                        h = (h | 0x20) - 0x57
                    else:
                        raise _Bad((i, "bad \\u escape"))
                    u = u * 16 + h
                if u >= 0x80:
                    raise _Bad((i, "\\u%04x: settings are ASCII" % u))
                out.append(u)
                i += 5
            else:
                raise _Bad((i, "unknown escape"))
        elif c < 0x20:
            raise _Bad((i, "control character in a string"))
        else:
            out.append(c)
            i += 1


def _num(b, i):
    """Number token (JSON grammar): (int or float, index after it)."""
    n = len(b)
    j = i
    if j < n and b[j] == 0x2D:
        j += 1
    d0 = j
    while j < n and 0x30 <= b[j] <= 0x39:
        j += 1
    if j == d0:
        raise _Bad((i, "not a value"))
    if b[d0] == 0x30 and j - d0 > 1:
        raise _Bad((i, "number with a leading zero"))
    is_float = False
    if j < n and b[j] == 0x2E:
        is_float = True
        j += 1
        k = j
        while j < n and 0x30 <= b[j] <= 0x39:
            j += 1
        if j == k:
            raise _Bad((i, "bad number"))
    if j < n and b[j] in b"eE":
        is_float = True
        j += 1
        if j < n and b[j] in b"+-":
            j += 1
        k = j
        while j < n and 0x30 <= b[j] <= 0x39:
            j += 1
        if j == k:
            raise _Bad((i, "bad number"))
    if j - i > _NUM_MAX:
        raise _Bad((i, "number longer than %d characters" % _NUM_MAX))
    t = b[i:j]
    return (float(t) if is_float else int(t)), j


def _value(b, i, key):
    n = len(b)
    c = b[i] if i < n else 0
    if c == 0x22:
        return _str(b, i)
    for word, v in ((b"true", True), (b"false", False), (b"null", None)):
        if b[i:i + len(word)] == word:
            return v, i + len(word)
    if c == 0x5B or c == 0x7B:
        raise _Bad((i, "%r: an array/object is not a setting value "
                       "(the file is one flat object)" % key))
    return _num(b, i)


def parse(b):
    """Strict parse of one flat JSON object of scalars (``bytes``) into a
    dict; raises ``ValueError("line N: why")``.  No recursion; allocates
    the dict, its keys and values only."""
    try:
        for k in range(len(b)):
            if b[k] >= 0x80:
                raise _Bad((k, "non-ASCII byte 0x%02x (settings are ASCII)" % b[k]))
        n = len(b)
        i = _ws(b, 0)
        if i >= n:
            raise _Bad((i, "empty file"))
        if b[i] != 0x7B:
            raise _Bad((i, "top level must be an object"))
        d = {}
        i = _ws(b, i + 1)
        if i < n and b[i] == 0x7D:
            i += 1
        else:
            while True:
                if i >= n or b[i] != 0x22:
                    raise _Bad((i, "expected a \"key\""))
                k0 = i
                key, i = _str(b, i)
                i = _ws(b, i)
                if i >= n or b[i] != 0x3A:
                    raise _Bad((i, "expected ':' after %r" % key))
                i = _ws(b, i + 1)
                v, i = _value(b, i, key)
                if key in d:
                    raise _Bad((k0, "duplicate key %r" % key))
                d[key] = v
                i = _ws(b, i)
                c = b[i] if i < n else 0
                if c == 0x2C:
                    i = _ws(b, i + 1)
                    if i < n and b[i] == 0x7D:
                        raise _Bad((i, "trailing comma before }"))
                elif c == 0x7D:
                    i += 1
                    break
                else:
                    raise _Bad((i, "expected ',' or '}' after the value of %r" % key))
        i = _ws(b, i)
        if i < n:
            raise _Bad((i, "text after the closing }"))
        return d
    except _Bad as e:
        at, why = e.args[0]
        raise ValueError("line %d: %s" % (_line(b, at), why))


def read(path):
    """The overrides in the file at ``path``: ``(dict, error or None)``.
    A missing file is ``({}, None)`` (defaults apply, a valid configuration).
    Never raises: an unreadable, oversized or malformed file gives an error."""
    try:
        f = open(path, "rb")
    except OSError:
        return {}, None
    try:
        try:
            # the file's size first: ``read(MAX_FILE + 1)`` would ask the
            # heap for 16 KB in one piece whatever the file's size, which a
            # fragmented heap may not have (the console's cfg_set reads it
            # while the app runs)
            n = f.seek(0, 2)
            f.seek(0)
            data = f.read(n + 1 if n <= MAX_FILE else MAX_FILE + 1)
        finally:
            f.close()
        if len(data) > MAX_FILE:
            return {}, "%s: larger than %d bytes" % (path, MAX_FILE)
        return parse(data), None
    except ValueError as e:
        return {}, "%s: not valid JSON (%s)" % (path, e)
    except MemoryError:
        return {}, "%s: not enough memory to read it" % path
    except Exception as e:
        return {}, "%s: unreadable (%s %s)" % (path, type(e).__name__, e)


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
