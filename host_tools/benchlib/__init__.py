"""Benchmark machinery behind ``make bench`` (``host_tools.bench``).

``session`` runs simulated charging sessions on the SIL bench and takes
firmware-side statistics snapshots (the SIL link's STATS packet) at every
stage change; ``figures`` turns them into the figures of docs/performance.md.
"""
