"""File-writing rules shared by every layer: atomic writes and the fault points that test them.

A neutral package (no torch, no Hydra at import) so that ``attention_zoo``-free tools, the tasks and the
harness all write files the same way.
"""
from zoo_io.atomic import atomic_write, torch_save, write_json, write_text
from zoo_io.faults import fault_point

__all__ = ["atomic_write", "fault_point", "torch_save", "write_json", "write_text"]
