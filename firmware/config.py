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
guessed configuration.
"""
import json

CONFIG_SCHEMA = (
    ("charger.id", 1, 0, 0xFFFFFFFF, "-", "Charger number sent in CRM/CSD"),
    ("charger.region", "440", None, None, "-", "Region code, 3 ASCII chars (CRM bytes 6-8)"),
    ("rating.max_v", 7500, 500, 15000, "0.1 V", "Rated (max) output voltage"),
    ("rating.min_v", 2000, 0, 15000, "0.1 V", "Min output voltage"),
    ("rating.max_i", 2000, 10, 10000, "0.1 A", "Rated (max) output current"),
    ("rating.min_i", 0, 0, 10000, "0.1 A", "Min output current"),
    ("rating.max_p", 600, 10, 10000, "0.1 kW", "Rated output power"),
)


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


def get(cfg, key):
    """``cfg[key]``, else the registered default (modules read their
    settings with this at construction, so a partial dict works in tests);
    ``KeyError`` for a key no module declares."""
    if cfg is not None and key in cfg:
        return cfg[key]
    for s in _modules:
        for e in s:
            if e[0] == key:
                return e[1]
    raise KeyError(key)


def defaults():
    return dict((e[0], e[1]) for e in schema())


def validate(cfg, checks=()):
    """Return a list of human-readable errors (empty = valid)."""
    errors = []
    known = {}
    for e in schema():
        known[e[0]] = e
    for k in cfg:
        if k not in known:
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
            if v not in (True, False, 0, 1):
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
    if len(cfg["charger.region"]) > 3:
        return "charger.region is at most 3 characters"
    return None


CROSS_CHECKS = [_cross]


def load(path=None, overrides=None):
    """Defaults, then the JSON file at ``path`` (if any), then ``overrides``.

    Returns ``(cfg, errors)``; ``errors`` non-empty means do not charge."""
    cfg = defaults()
    errors = []
    if path:
        try:
            with open(path) as f:
                data = json.load(f)
            if not isinstance(data, dict):
                errors.append("%s: top level must be an object" % path)
            else:
                cfg.update(data)
        except OSError:
            pass  # no file: defaults apply, which is a valid configuration
        except ValueError as e:
            errors.append("%s: not valid JSON (%s)" % (path, e))
    if overrides:
        cfg.update(overrides)
    errors.extend(validate(cfg, CROSS_CHECKS))
    return cfg, errors
