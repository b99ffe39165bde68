"""Benchmark cells run with the user's OpenMP wait policy, never with the passive one the harness sets for
training, even when the benchmark is itself started by a harness process (./reproduce.sh runs it as a child)."""
import os
import subprocess
import sys

import pytest

from harness import POLICY_FROM_HARNESS

CHILD = "import harness; from harness.bench.runner import omp_wait_policy; print(omp_wait_policy())"
PARENT = ("import harness, subprocess, sys; print(subprocess.run([sys.executable, '-c', sys.argv[1]], "
          "capture_output=True, text=True, check=True).stdout.strip())")


@pytest.mark.parametrize("user_policy, expected", [(None, "default (unset)"), ("ACTIVE", "ACTIVE")])
def test_a_benchmark_started_by_a_harness_process_sees_the_users_policy(user_policy, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", POLICY_FROM_HARNESS)}
    if user_policy:
        env["OMP_WAIT_POLICY"] = user_policy
    done = subprocess.run([sys.executable, "-c", PARENT, CHILD], env=env, capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == expected
