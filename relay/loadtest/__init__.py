"""``qkd-relay loadtest``: concurrent SAEs against the gateways over ETSI 014, with latency percentiles,
throughput, errors, pool use, QKD consumption, CSV/JSON output and PNG plots.

| module | responsibility |
|---|---|
| ``topologies`` | the load-test topologies (three-region, pqc-only chains) with free ports |
| ``scenarios`` | named scenarios: SAE pairs, topology, on-demand or pool-served |
| ``target`` | start a testbed for a group of scenarios, or attach to a running one |
| ``sae`` | a simulated SAE: enc_keys at the master's gateway, dec_keys at the slave's, compared |
| ``schedule`` | open-loop arrival times (uniform or Poisson) |
| ``runner`` | open- and closed-loop workers, per-request records |
| ``histogram`` | HdrHistogram percentiles |
| ``admin`` | gateway and vendor-KMS admin snapshots, sampled every second |
| ``results`` | per-run summary: percentiles, throughput, errors, pool use, QKD bits, key rates |
| ``output`` | requests.csv, summary.json, the printed table |
| ``plots`` | PNG plots (matplotlib, Agg) |
| ``progress`` | the progress bar: rich live on a terminal, one line otherwise |
| ``cpu`` | cores used per process during a run (``/proc``) |
| ``campaign`` | the whole run: groups, warm-up, prefill, runs, outputs |
| ``command`` | the ``qkd-relay loadtest`` options and printed table |

Import ``relay.loadtest.campaign`` only where a load test runs: it pulls in matplotlib.
"""
