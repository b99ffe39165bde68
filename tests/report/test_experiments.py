"""Every job of every ablation sweep composes, validates and builds; the launchers compose."""
from __future__ import annotations

from dataclasses import asdict

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from attention_zoo import build_backbone
from harness.compose import register_configs
from harness.config import resolved_dict, split_points, validate
from tasks.base import backbone_options
from tests.conftest import requires_extra
from tests.report.conftest import CONF_DIR

EXPERIMENTS = ("table1", "table2", "table3", "table8", "table9", "table10", "table11", "table12", "pos_ablation")
ABLATIONS = tuple(e for e in EXPERIMENTS if e != "table2")


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    """conf/ loaded once for the module's compositions."""
    register_configs()  # resolvers and schemas (nothing registers on import)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield


def compose_hydra(*overrides: str):
    return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(experiment: str, *arguments: str) -> list[list[str]]:
    """The jobs Hydra's basic sweeper makes of ``experiment`` and command-line ``arguments``: the sweep's
    parameters, then the arguments (a later value of a key wins), expanded into their product."""
    parser = OverridesParser.create()
    fixed = [a for a, o in zip(arguments, parser.parse_overrides(list(arguments))) if not o.is_sweep_override()]
    params = [f"{k}={v}" for k, v in compose_hydra(f"experiment={experiment}", *fixed).hydra.sweeper.params.items()]
    parsed = parser.parse_overrides([*params, *arguments])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def job_configs(experiment: str, *arguments: str):
    for job in sweep_jobs(experiment, *arguments):
        yield job, compose(config_name="config", overrides=[f"experiment={experiment}", *job])


@pytest.mark.parametrize("task", ["lm", "mlm"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_job_composes_validates_and_builds(experiment, task):
    if task == "mlm" and experiment not in ABLATIONS:
        pytest.skip("Table 2 runs on the causal LM")
    seen = []
    for _, cfg in job_configs(experiment, f"task={task}", "scale=smoke"):
        typed = validate(cfg)
        assert typed.task.name == task
        model = backbone_options(asdict(typed.model)) | {"causal": task == "lm"}
        build_backbone(typed.attention.as_mapping(), model)  # the layer plan and knobs are valid
        seen.append(OmegaConf.to_yaml(resolved_dict(cfg)))
    assert len(seen) >= 2 and len(set(seen)) == len(seen), "every job of the sweep is a distinct configuration"


def resolved_jobs(experiment: str, *arguments: str) -> list[dict]:
    return [resolved_dict(cfg) for _, cfg in job_configs(experiment, *arguments)]


@pytest.mark.parametrize("task", ["lm", "mlm"])
def test_half_the_layers_follows_the_scale(task):
    jobs = resolved_jobs("table9", f"task={task}", "scale=cpu")
    n_layers = jobs[0]["model"]["n_layers"]
    assert [c["attention"]["layer_plan"] for c in jobs] == [None, f"reverse_split:{n_layers // 2}"]
    table3 = [c["attention"]["layer_plan"] for c in resolved_jobs("table3", f"task={task}", "scale=cpu")]
    assert table3[1] == {"split": n_layers // 2, "first": "elu", "second": "vanilla"}


def test_table8_widens_to_every_split_point_on_the_command_line():
    jobs = resolved_jobs("table8", "scale=cpu")
    n_layers = jobs[0]["model"]["n_layers"]
    assert [c["attention"]["layer_plan"] for c in jobs] == ["split:0", None, f"split:{n_layers}"]
    widened = sweep_jobs("table8", "scale=cpu", f"attention.layer_plan={split_points(n_layers)}", "seed=0,1")
    plans = [next(o for o in job if o.startswith("attention.layer_plan=")) for job in widened if "seed=0" in job]
    assert [p.partition("=")[2].replace("\\", "") for p in plans] == \
        [f"split:{k}" if k != n_layers // 2 else "null" for k in range(n_layers + 1)]
    assert len(widened) == 2 * (n_layers + 1)


def test_table1_variants():
    knobs = {(c["attention"]["name"], c["attention"].get("normalize"), c["attention"].get("norm"),
              c["attention"].get("pos")) for c in resolved_jobs("table1", "scale=smoke")}
    assert knobs == {("elu", True, None, None), ("elu", False, None, None),
                     *(("norm_attention", None, n, "none") for n in ("none", "layernorm", "rmsnorm", "srmsnorm"))}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Hydra: launcher files named like the plugins' schemas
@pytest.mark.parametrize("launcher", ["local", "joblib", "submitit_local", "submitit_slurm"])
def test_launchers_compose(launcher):
    if launcher != "local":
        requires_extra("slurm")
    cfg = compose_hydra(f"hydra/launcher={launcher}", "experiment=table11")
    target = cfg.hydra.launcher._target_
    assert target.split(".")[-1] == {"local": "BasicLauncher", "joblib": "JoblibLauncher",
                                     "submitit_local": "LocalLauncher", "submitit_slurm": "SlurmLauncher"}[launcher]
    if launcher == "submitit_slurm":
        cfg = compose_hydra("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                            "hydra.launcher.array_parallelism=4", "hydra.launcher.timeout_min=60")
        slurm = cfg.hydra.launcher
        assert (slurm.partition, slurm.array_parallelism, slurm.timeout_min, slurm.gpus_per_node) == ("gpu", 4, 60, 1)


# --------------------------------------------------------------------- a table is its experiment file
def test_every_table_is_one_experiment_file_with_its_page_and_claims():
    from harness.experiments import section, table_names
    from harness.report.claims import load_claims
    from harness.report.specs import other_tables, run_tables

    names = table_names()
    assert names[:4] == ("table1", "table2", "table3", "table4")
    assert names[-4:] == ("pos_ablation", "fig2", "recall", "recall_order")
    assert set(run_tables()) | set(other_tables()) == set(names)
    assert run_tables()["table11"].sort_key("16") == (0, 16) and run_tables()["table4"].paper_key(
        {"backend": "vanilla"}) == "vanilla"
    claims = load_claims()
    assert [c.table for c in claims] == sorted((c.table for c in claims), key=names.index)  # the tables' order
    assert {c.table for c in claims} == {n for n in names if section(n, "claims")}


def test_a_wrong_report_section_names_the_file_the_key_and_the_valid_choices():
    from harness.experiments import TablePlan
    from harness.report.specs import run_table

    good = {"title": "t", "tasks": ["lm"], "columns": [{"name": "ppl", "label": "ppl"}], "rows": {"by": "backend"}}
    table = run_table("tableX", good | {"paper_key": "{backend}:{knobs}"}, TablePlan(ablation=True), "x.yaml")
    assert table.paper_key({"backend": "elu", "knobs": "a=1"}) == "elu:a=1" and "ablation" in table.note
    for wrong, message in [({"colour": "red"}, r"x.yaml: unknown key\(s\) \['colour'\] in report; valid"),
                           ({"rows": {"by": "nope"}}, r"x.yaml: rows.by='nope' is not valid; valid: \['backend'"),
                           ({"plot": "pie"}, r"plot='pie' is not valid; valid: \['bars', 'block_size', 'split'\]"),
                           ({"paper_key": "backend"}, r"paper_key='backend' is neither one of"),
                           ({"columns": [{"name": "a", "lable": "b"}]}, r"unknown column key\(s\) \['lable'\]")]:
        with pytest.raises(ValueError, match=message):
            run_table("tableX", good | wrong, TablePlan(), "x.yaml")
