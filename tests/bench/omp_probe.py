"""A stand-in cell for the OpenMP test: imports what the benchmarks and their cells import, then writes the
wait policy it sees (none of those imports may set it)."""
import json
import os
import sys

import harness.bench.cell  # noqa: F401
import harness.bench.decode_cell  # noqa: F401
import harness.bench.public  # noqa: F401
import harness.bench.table7_cell  # noqa: F401
from harness.bench.cli import build_parser

if __name__ == "__main__":
    build_parser()  # imports every benchmark module
    with open(sys.argv[2], "w") as f:
        json.dump({"status": "ok", "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}, f)
