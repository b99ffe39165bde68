"""Settings for the whole test session, applied before any test module imports torch."""
import os

# Idle OpenMP threads sleep instead of spinning; on a small shared CPU machine spinning threads make tests
# many times slower (see harness/__init__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Tests never touch the network: wandb, where a test turns it on, runs offline or not at all.
os.environ.setdefault("WANDB_MODE", "disabled")
