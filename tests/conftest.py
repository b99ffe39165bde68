"""Settings for the whole test session, applied before any test module imports torch."""
import os

# Idle OpenMP threads sleep instead of spinning; on a small shared CPU machine spinning threads make tests
# many times slower (see harness/run.py: prefer_passive_openmp).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests never touch the network: wandb, where a test turns it on, runs offline or not at all.
os.environ.setdefault("WANDB_MODE", "disabled")


# Optional extras: a test that needs one skips, naming the extra and how to install it.
EXTRA_MODULES = {
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra_plugins.hydra_joblib_launcher"),
}


def requires_extra(extra: str, *modules: str):
    """Skip the calling test unless the optional extra ``extra`` (pyproject.toml) is installed."""
    import pytest

    for module in modules or EXTRA_MODULES[extra]:
        pytest.importorskip(module, reason=f'needs the optional extra "{extra}": pip install -e ".[{extra}]"')
