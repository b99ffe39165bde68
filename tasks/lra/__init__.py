"""Long-Range Arena: official-format loaders, seeded built-in generators, models and the task.

``task=lra/listops | lra/text | lra/retrieval | lra/image | lra/pathfinder | lra/pathx``; see
``tasks/lra/task.py`` and docs/lra.md.
"""
from tasks.lra.task import LraTask, LraTaskConfig

__all__ = ["LraTask", "LraTaskConfig"]
