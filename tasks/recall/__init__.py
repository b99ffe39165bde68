"""Associative recall diagnostics: Zoology's MQAR and MAD's noisy in-context recall and selective copying.

``task=recall/mqar | recall/noisy | recall/selective_copy``; see ``tasks/recall/task.py`` and docs/recall.md.
"""
from tasks.recall.task import RecallTask, RecallTaskConfig

__all__ = ["RecallTask", "RecallTaskConfig"]
