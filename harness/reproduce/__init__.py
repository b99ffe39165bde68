"""The orchestrator behind ``./reproduce.sh`` (``python -m harness.reproduce``), a peer of the run and the
report: it launches runs, benchmarks and diagnostics and reads back only their records and files.

``./reproduce.sh [TABLE ...] [--scale smoke|cpu|paper] [--seeds N] [--launcher local|joblib|slurm]``.

Runs the sweeps, benchmark and diagnostics behind the paper's tables, then builds the report. With no TABLE,
the paper's core claims: Tables 1, 4, 7, Figure 2 and the layer-split (Table 8) and block-size (Table 11)
ablations (the experiment files whose ``reproduce`` section says ``core: true``); ``all`` is every table.
What a table needs besides its sweep is data in its experiment file (:class:`harness.experiments.TablePlan`).
Each table is one or more commands, printed before they run:

- a Hydra sweep ``python -m harness.run -m experiment=<table> scale=<scale> seed=0,..,N-1 ...``: a run whose
  record says completed with the same configuration is skipped, an interrupted one resumes from its last
  checkpoint, a failed one is recorded as failed (its cell says so) and the sweep goes on; the sweep then exits
  3, the table goes on and is reported "cells failed" (exit 1 at the end); a stopped sweep (exit 75) stops the
  command;
- Table 7: ``python -m harness.bench table7`` (skipped when its results exist with the same settings);
- Table 2 and Figure 2: ``python -m harness.analyze`` on the runs their sweep trained.
A table whose task or experiment does not exist yet prints ``not yet available: <why>`` and the rest go on.
``--dry-run`` prints the commands and, under each sweep, its runs and their estimated wall time
(:func:`harness.reproduce.estimate.estimate_sweep`: completed and shared runs cost nothing, the others their
updates times the seconds per update measured on this machine's completed runs, else ``SECONDS_PER_UPDATE``).
The ablations (Tables 1, 3, 8-12 and the positional encodings) run on the masked LM as the paper's did when
that task is available, else on the causal LM (said when it happens); ``--ablation-task`` chooses, and the
no-argument run at cpu scale uses the causal LM, which learns within its budget (the masked LM does not learn
much in 200 updates) and shares its TransNormer runs with Table 4. Anything after ``--`` is passed to
every sweep as Hydra overrides (e.g. ``-- trainer.max_steps=200 task.data.source=files task.data.path=DIR``).
"""
