"""Analysis of runs: ``results/runs/<run-id>/`` traces, Parquet tables, plots and summaries.

- ``trace``: the manifest (spec, seed, git commit, package versions, host) and the Parquet tables
  (``tasks.parquet``, ``spans.parquet``, ``links/tc_stats.parquet``) built from the runner's JSONL.
- ``report``: plots (inference-time CDF per source and policy, per-node timeline of what ran where)
  and a Markdown summary, regenerated from a run folder by ``pamdi report RUN_DIR``.
"""
