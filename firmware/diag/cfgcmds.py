"""Console commands for the configuration: ``cfg()`` and ``cfg_set()``.

A mixin of ``diag.commands.Diag`` (kept apart to keep modules small).
``cfg_set`` checks a value with ``config.validate`` (the very rules the
firmware applies at boot) against the configuration file; an invalid value
is refused with the validator's message and nothing is written.  A valid
value is written to the file and takes effect at the next boot, except the
settings in ``LIVE`` (diagnostics only), which also apply at once.
"""
import json
import config
from diag import eventlog as ev

# Settings applied at once by cfg_set (diagnostics only; everything else
# waits for the next boot).  key -> function(diag, value).  Not here, on
# purpose: sched.alloc_stats (the scheduler reads it before and after each
# task, and the console is a task: switching it mid-pass breaks run_due).
LIVE = {
    "diag.trace_lines": lambda d, v: setattr(d.tracer, "lines", v),
    "diag.trace_frames": lambda d, v: setattr(d.tracer, "size", v),   # next trace(True)
}


class ConfigCommands:
    def _file(self):
        """(dict of the file's settings, error text or None): read by the
        loader the firmware boots with (same strict rules, same bounds)."""
        return config.read(self.config_path())

    def cfg_lines(self, key=None):
        run = self.app.cfg
        sch = [e for e in config.schema() if e[0] in run]
        filed, err = self._file()
        L = []
        if err:
            L.append(err)
        groups = {}
        for e in sch:
            k = e[0]
            v = run[k]
            nxt = filed.get(k, e[1])
            if key is None:
                g = k.split(".")[0]
                groups[g] = groups.get(g, 0) + 1
                if v == e[1] and nxt == v:
                    continue                 # cfg(): only what differs
            elif k != key and not k.startswith(key):
                continue
            line = "%s = %r" % (k, v)
            if v != e[1]:
                line += "  (default %r)" % (e[1],)
            if nxt != v:
                line += "  (next boot %r)" % (nxt,)
            L.append(line)
            if k == key:
                L.append("  %s; unit %s; range %s; %s" % (
                    e[5], e[4], "-" if e[2] is None else "%d..%d" % (e[2], e[3]),
                    "changes live" if k in LIVE else "changes at next boot"))
        if key is None:
            if len(L) == (1 if err else 0):
                L.append("all %d settings at their defaults" % len(sch))
            L.append("groups: " + " ".join("%s(%d)" % (g, groups[g]) for g in sorted(groups)))
            L.append('cfg("h8") lists a group, cfg("h8.ma") one setting, cfg("") all')
        elif len(L) == (1 if err else 0):
            L.append("no setting %r" % key)
        return L

    def cfg(self, key=None):
        """cfg() settings that differ from the defaults (and the groups);
        cfg("h8") those starting with "h8"; cfg("h8.ma") one setting with its
        range, unit and meaning; cfg("") every setting."""
        self.emit(self.cfg_lines(key))

    def cfg_set_lines(self, key, value):
        app = self.app
        path = self.config_path()
        if key not in app.cfg:
            return ["refused: unknown setting %r (cfg() lists them)" % (key,)]
        filed, err = self._file()
        if err:
            return ["refused: %s; fix the file first" % err]
        base = config.defaults()
        base.update(filed)
        before = config.validate(base, config.CROSS_CHECKS)
        cand = dict(base)
        cand[key] = value
        after = config.validate(cand, config.CROSS_CHECKS)
        new = [e for e in after if e not in before or key in e]
        if new:
            return ["refused: " + e for e in new]
        default = None
        for e in config.schema():
            if e[0] == key:
                default = e[1]
        if value == default and type(value) is type(default):
            filed.pop(key, None)
        else:
            filed[key] = value
        wr = _write_json(path, filed)
        if wr:
            return ["refused: could not write %s (%s)" % (path, wr)]
        self._op(ev.OP_CONFIG, 0, key)
        if key in LIVE:
            LIVE[key](self, value)
            app.cfg[key] = value
            L = ["%s = %r applied now and stored in %s" % (key, value, path)]
        else:
            L = ["%s = %r stored in %s; takes effect at the next boot (running: %r)"
                 % (key, value, path, app.cfg[key])]
        if after:
            L.append("note: the file still has errors: " + "; ".join(after))
        return L

    def cfg_set(self, key, value):
        """Validate and store a setting (see the module doc: live or next boot)."""
        self.emit(self.cfg_set_lines(key, value))


def _write_json(path, d):
    """Write ``d`` as JSON, one setting per line; rename into place where the
    filesystem allows (a power cut leaves the old or the new file), else
    write in place (a torn file is invalid JSON: the charger then refuses to
    charge instead of running on defaults).  Returns None or an error text."""
    import os
    body = "{\n" + ",\n".join("  %s: %s" % (json.dumps(k), json.dumps(d[k]))
                              for k in sorted(d)) + "\n}\n"
    tmp = path + ".new"
    try:
        with open(tmp, "w") as f:
            f.write(body)
        try:
            os.rename(tmp, path)
            return None
        except OSError:
            pass
        with open(path, "w") as f:
            f.write(body)
        try:
            os.remove(tmp)
        except OSError:
            pass
        return None
    except OSError as e:
        return str(e)
