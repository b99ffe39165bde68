"""Masked language modelling (``task=mlm``): RoBERTa-style pretraining for the bidirectional tables."""
from tasks.mlm.task import MaskedLanguageModelTask, MLMTaskConfig

__all__ = ["MLMTaskConfig", "MaskedLanguageModelTask"]
