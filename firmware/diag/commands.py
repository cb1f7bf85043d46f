"""Diagnostic commands of the console (placeholder until the diagnostics
engineer lands the real set; ``install`` adds them to the namespace)."""


def install(console, app):
    console.add("app", app)
