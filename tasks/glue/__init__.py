"""GLUE (``task=glue/<name>``): official-format loaders, built-in generators, metrics and fine-tuning."""
from tasks.glue.formats import GLUE_FORMATS, GlueFormat, get_format
from tasks.glue.metrics import glue_metrics, primary_metric, table5_average
from tasks.glue.reader import GlueFormatError, GlueSplit, read_split
from tasks.glue.task import GlueTask, GlueTaskConfig

__all__ = [
    "GLUE_FORMATS", "GlueFormat", "GlueFormatError", "GlueSplit", "GlueTask", "GlueTaskConfig", "get_format",
    "glue_metrics", "primary_metric", "read_split", "table5_average",
]
