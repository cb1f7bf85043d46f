"""The monitoring platform (seed 000 section 4.2, requirements A-1, A-2).

    wire       MQTT topics and payload, vectorised Table-1 decoder
    broker     a local mosquitto (Debian) for tests and the demo
    tcu        the charger side: ring buffer, QoS-1 publisher, stop -> console
    ingest     MQTT subscriber -> store, exactly once (sequence numbers)
    store      Parquet by day and charger, DuckDB queries, compaction, retention
    analytics  session features, 3-sigma rule (A-1), KL divergence (A-2), alarms
    fleet      synthetic fleet generator with injected faults
    report     alarm report with plots
    cli        ``python -m host_tools.platform ...`` (demo, bench, ingest, analyze, ...)

docs/platform.md describes all of it.
"""
