"""Observability helpers every component uses: Prometheus exposition and structured JSON logs.

Each component owns its metrics and health (e.g. :mod:`relay.gateway.metrics`); this package imports none
of them.

Nothing here is process-global: each gateway or simulator owns its metric registry, so several run in one
process (as in the tests) without mixing their counts. Nothing here ever sees key material: exporters read
levels and counters, and the JSON log formatter drops byte values it is handed.
"""
