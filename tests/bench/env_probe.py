"""A stand-in cell for the runner's tests: writes the allocator variables it was started with."""
import json
import os
import sys

if __name__ == "__main__":
    names = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
    with open(sys.argv[2], "w") as f:
        json.dump({"status": "ok", **{name: os.environ.get(name) for name in names}}, f)
