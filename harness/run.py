"""One run: ``python -m harness.run [overrides]``; a sweep: ``python -m harness.run -m key=a,b ...``.

Compose ``conf/`` -> validate -> (skip if the run folder's record says completed with the same config hash)
-> build and prepare the task -> build the model -> train -> write the run record (:mod:`harness.execute`).
The run folder is ``<run.root>/<task>/<backend>/<scale>/seed<seed>-<hash>``, so starting the same configuration
again finds its checkpoints and resumes. In a sweep, a failing run is recorded as failed and the sweep goes on;
the sweep ends with a summary of its cells and a non-zero exit when one failed (``harness.sweep``). SIGTERM,
SIGINT and SIGUSR1 stop a run at the next update boundary after a checkpoint, with its record marked
``interrupted`` and exit code 75 (``harness.stop``). Under ``torchrun`` every process runs this; rank 0 alone
writes the record, logs and checkpoints (``harness.distributed``, ``harness.trainer``).

This module is the entry point only: it imports nothing heavy, so that :func:`main` sets the process's OpenMP
policy before torch loads (importing a harness module never changes the process).
"""
from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig


def prefer_passive_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (read once, when torch loads): on a small or shared CPU
    machine spinning threads steal the cores the work needs (measured: training steps 7x slower on a loaded
    2-core machine with the default policy). ``OMP_WAIT_POLICY`` set by the user wins. Child processes (a
    sweep's workers, torchrun's ranks) inherit it; the speed benchmarks do not set it (what a torch user gets)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from harness.compose import register_configs
    from harness.execute import hydra_task

    register_configs()  # a launcher's worker process unpickles this function without running main()
    return hydra_task(cfg)


def main() -> None:
    """Console script ``attention-zoo-run`` and ``python -m harness.run``."""
    prefer_passive_openmp()
    from harness import sweep  # torch loads from here on
    from harness.compose import CONF_DIR, check_override_keys, register_configs
    from harness.config import ConfigError

    register_configs()
    try:
        check_override_keys(sys.argv[1:], str(CONF_DIR))
    except ConfigError as err:
        raise SystemExit(f"invalid configuration: {err}") from None
    with sweep.stopping_workers():
        _hydra_main()
    sweep.exit_if_a_cell_failed()


if __name__ == "__main__":
    main()
