"""harness: one run of the reproduction (config, run, trainer, checkpoints, run folder, metrics log, record),
with its peers beside it: the speed benchmarks (``harness.bench``), the diagnostics (``harness.analyze``), the
report (``harness.report``) and the orchestrator behind ``./reproduce.sh`` (``harness.reproduce``). Importing any
of them changes nothing in the process: entry points set process policy in their ``main()``."""
