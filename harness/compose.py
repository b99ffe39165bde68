"""The one way the harness composes ``conf/`` outside ``@hydra.main``: ``compose(overrides)``.

Used by every entry point that needs a configuration without running it (the override pre-check, the report's
default settings, ``reproduce.sh``'s planning, the Table 7 benchmark, the parameter counts), so that they all
see the config tree ``python -m harness.run`` sees: the same folder, the same resolvers and the ConfigStore
entries of plugin backends (both registered by importing :mod:`harness.config`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose(overrides: Sequence[str] = (), *, hydra_section: bool = False,
            conf_dir: str | Path = CONF_DIR) -> DictConfig:
    """``conf/config.yaml`` with ``overrides``; ``hydra_section=True`` keeps Hydra's own section (a sweep's
    parameters, the launcher)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import harness.config  # noqa: F401  (resolvers, schemas, plugin backends' config entries)

    if GlobalHydra.instance().is_initialized():  # inside a running app (harness.run): its own config tree
        if Path(conf_dir).resolve() != CONF_DIR:
            raise ValueError(f"cannot compose {conf_dir} inside a running Hydra app (it composes {CONF_DIR})")
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_section)
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra_section)
