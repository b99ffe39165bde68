"""The claims: the file is checked, each kind of claim is decided from synthetic runs (paired by seed, Welch,
trend, bootstrap of timed steps), verdicts follow the interval, other budgets are decided again, pages and the
README's section are generated."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.report import claims as C
from harness.report.layout import Layout
from harness.report.records import placed_records
from harness.report.report import README_BEGIN, README_END, Section, build_report, readme_section
from tests.report.conftest import write_run

T2 = "attention=transnormer_t2"


def claim(**fields) -> C.Claim:
    base = dict(id="c", table="table4", paper="p", column="ppl_test", expect="less", a="transnormer_t2", b="elu")
    return C.Claim(**(base | fields))


def test_the_committed_claims_file_loads_and_names_real_rows():
    found = C.load_claims()
    assert len(found) >= 30 and len({c.id for c in found}) == len(found)
    assert {c.table for c in found} >= {"table1", "table2", "table3", "table4", "table5", "table6", "table7", "table8",
                                        "table9", "table10", "table11", "table12", "fig2"}
    for c in found:  # every run-table claim's column exists (an unknown one fails loudly)
        if c.table in C.run_tables():
            assert c.column in {col.name for col in C.run_tables()[c.table].columns}, c.id


@pytest.mark.parametrize("text, message", [
    ("claims: [{id: x, table: table99, paper: p, column: ppl, expect: less, a: a, b: b}]", "table='table99'"),
    ("claims: [{id: x, table: table4, paper: p, column: ppl, expect: lower, a: a, b: b}]", "expect='lower'"),
    ("claims: [{id: x, table: table4, paper: p, column: ppl, expect: less, a: a}]", "needs a and b"),
    ("claims: [{id: x, table: table4, paper: p, column: ppl, expect: less, a: a, b: b, colour: red}]", "colour"),
    ("claims: [{id: x, table: table11, paper: p, column: ppl, expect: less, kind: trend}]", "needs rows"),
])
def test_a_wrong_claims_file_names_the_claim_and_the_valid_choices(tmp_path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="claim 1 \\(x\\)") as err:
        C.load_claims(path)
    assert message in str(err.value)


def test_paired_difference_is_a_t_interval_over_the_seeds_differences():
    a, b = {0: 30.0, 1: 31.0, 2: 29.5}, {0: 32.0, 1: 32.5, 2: 32.2}
    d = C.decide_difference(claim(), a, b)
    diffs = np.array([a[s] - b[s] for s in (0, 1, 2)])
    low, high = sps.t.interval(0.95, df=2, loc=diffs.mean(), scale=sps.sem(diffs))
    assert d.verdict == C.HOLDS and d.method == "paired t" and d.n == 3
    assert d.estimate == pytest.approx(diffs.mean()) and (d.low, d.high) == pytest.approx((low, high))
    assert C.decide_difference(claim(expect="greater"), a, b).verdict == C.CONTRADICTED


def test_an_interval_across_zero_or_one_seed_is_inconclusive_and_a_missing_side_not_run():
    assert C.decide_difference(claim(), {0: 30.0, 1: 33.0}, {0: 31.0, 1: 32.0}).verdict == C.INCONCLUSIVE
    one = C.decide_difference(claim(), {0: 30.0}, {0: 40.0})
    assert one.verdict == C.INCONCLUSIVE and one.low is None and "one seed" in one.reason
    assert C.decide_difference(claim(), {}, {0: 40.0}).verdict == C.NOT_RUN


def test_sides_without_common_seeds_use_welch():
    d = C.decide_difference(claim(), {0: 30.0, 1: 30.5}, {2: 35.0, 3: 35.4})
    assert d.method.startswith("Welch") and d.verdict == C.HOLDS


def test_trend_is_the_mean_slope_over_seeds():
    rows = ("16", "32", "64", "128")
    by_row = {r: {s: 30.0 - i - 0.1 * s * i for s in range(3)} for i, r in enumerate(rows)}
    d = C.decide_trend(claim(kind="trend", rows=rows, x="log2", table="table11", column="ppl"), by_row)
    assert d.verdict == C.HOLDS and d.estimate == pytest.approx(-1.1) and d.n == 3


def test_speed_ratio_bootstraps_the_timed_steps():
    fast, slow = [10.0, 10.5, 9.8, 10.2], [5.0, 5.1, 4.9, 5.2]
    d = C.decide_ratio(claim(ratio=True, expect="greater", table="table7", column="train_1024"), fast, slow)
    assert d.estimate == pytest.approx(np.median(fast) / np.median(slow))
    assert d.verdict == C.HOLDS and 1.0 < d.low <= d.estimate <= d.high
    tied = C.decide_ratio(claim(ratio=True, expect="greater"), [5.0, 5.4, 4.6], [5.1, 4.8, 5.3])
    assert tied.verdict == C.INCONCLUSIVE


def test_run_claims_take_the_table_page_runs_and_every_other_budget(tmp_path):
    for seed, (t2, elu) in enumerate(((30.0, 33.0), (31.0, 33.5), (30.5, 34.0))):
        write_run(tmp_path, T2, f"seed={seed}", valid=t2)
        write_run(tmp_path, "attention=elu", f"seed={seed}", valid=elu)
        write_run(tmp_path, "attention=vanilla", f"seed={seed}", valid=32.0)
        # a longer budget of the same comparison: there 1+elu is ahead
        write_run(tmp_path, T2, f"seed={seed}", "trainer.max_steps=40", valid=25.0 + seed * 0.1)
        write_run(tmp_path, "attention=elu", f"seed={seed}", "trainer.max_steps=40", valid=24.0 + seed * 0.2)
    records = placed_records(tmp_path)
    [main, longer] = C.decide_all([claim()], records, "smoke", None)
    assert main.main and main.verdict == C.HOLDS and main.n == 3 and main.budget == 20
    assert not longer.main and longer.budget == 40 and longer.verdict == C.CONTRADICTED
    page = C.claims_markdown([main, longer], "smoke", "built-in corpus", None)
    assert "Verdicts that change with the budget: `c`" in page and "40 updates: contradicted" in page
    budgets = C.budget_frame(records, "smoke")
    assert set(budgets["row"]) == {"transnormer_t2", "elu"} and set(budgets["updates"]) == {20, 40}


def test_the_budget_frame_counts_each_seed_once(tmp_path):
    # Table 2's runs repeat Table 4's with gradient logging (not part of the context): the same seeds, not more
    for seed in range(3):
        for observe in ([], ["trainer.record_gradients=true"]):
            write_run(tmp_path, T2, f"seed={seed}", *observe, valid=30.0 + seed)
        write_run(tmp_path, T2, f"seed={seed}", "trainer.max_steps=40", valid=25.0 + seed)
    budgets = C.budget_frame(placed_records(tmp_path), "smoke").set_index("updates")
    assert budgets.loc[20, "n"] == 3 and budgets.loc[40, "n"] == 3
    assert budgets.loc[20, "std"] == pytest.approx(1.0)


def test_report_writes_claims_and_the_readme_section(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(3):
        write_run(runs, T2, f"seed={seed}", valid=30.0 + seed)
        write_run(runs, "attention=elu", f"seed={seed}", valid=33.0 + seed * 1.1)
    wikitext = {"task.data.source": "files", "task.data.path": str(tmp_path / "wikitext-2")}
    (tmp_path / "wikitext-2").mkdir()
    for name in ("train", "valid", "test"):
        (tmp_path / "wikitext-2" / f"wiki.{name}.tokens").write_text(" a b \n")
    for seed in range(3):
        for backend, value in (("transnormer_t2", 100.0), ("elu", 90.0)):
            write_run(runs, f"attention={backend}", f"seed={seed}", *(f"{k}={v}" for k, v in wikitext.items()),
                      valid=value + seed)
    bench = Layout(tmp_path).bench_csv("smoke")
    bench.parent.mkdir(parents=True)
    pd.DataFrame([{"label": b, "backend": b, "mode": "train", "length": 1024, "status": "ok", "steps_per_sec": v,
                   "times_s": ";".join(str(1 / (v + e)) for e in (-0.1, 0.0, 0.1))}
                  for b, v in (("transnormer_t2", 4.0), ("vanilla", 2.0))]).to_csv(bench, index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{README_BEGIN}\nold text\n{README_END}\n\nafter\n")
    build_report(tmp_path, tmp_path / "report", scales=["smoke"], readme=readme)

    table = pd.read_csv(tmp_path / "report" / "smoke" / "claims.csv").set_index("claim")
    assert table.loc["t4_t2_beats_elu", "verdict"] == C.HOLDS and table.loc["t4_t2_beats_elu", "n"] == 3
    assert table.loc["t7_t2_trains_faster_1k", "verdict"] == C.HOLDS
    assert table.loc["t5_t1_beats_vanilla", "verdict"] == C.NOT_RUN
    assert "64 runs per seed" not in table.loc["t5_t1_beats_vanilla", "reason"]  # that cost is cpu scale's
    real = pd.read_csv(tmp_path / "report" / "smoke-wikitext-2" / "claims.csv").set_index("claim")
    assert real.loc["t4_t2_beats_elu", "verdict"] == C.CONTRADICTED and "t7_t2_trains_faster_1k" not in real.index
    index = (tmp_path / "report" / "smoke" / "index.md").read_text()
    assert "## The paper's claims:" in index and "**holds**" in index
    text = readme.read_text()
    assert "old text" not in text and text.endswith(f"{README_END}\n\nafter\n")
    assert "**smoke-wikitext-2**" in text and "(report/smoke/claims.md)" in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no generated results section"):
        build_report(tmp_path, tmp_path / "report", scales=["smoke"], readme=readme)


def test_a_page_set_whose_runs_decide_no_claim_is_still_listed_in_the_readme(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, T2, valid=30.0)
    record = placed_records(runs)
    done = C.decide_difference(claim(), {0: 30.0, 1: 31.0}, {0: 33.0, 1: 34.5})
    text = readme_section([Section("smoke", "smoke", "built-in corpus", record, [done]),
                           Section("smoke-glue", "smoke", "glue", record),
                           Section("smoke-empty", "smoke", "empty", [])], tmp_path / "report", tmp_path)
    assert "**smoke** (built-in corpus, 1 runs; [claims](report/smoke/claims.md)" in text
    assert "**smoke-glue** (glue, 1 runs; [tables](report/smoke-glue/index.md)): no claim is decided" in text
    assert "smoke-empty" not in text


def test_a_page_set_without_claims_writes_a_claims_csv_with_its_header():
    assert list(C.frame([]).columns) == list(C.FRAME_COLUMNS)  # an empty file would not parse


def test_a_decided_claims_row_has_exactly_the_header_columns():
    d = C.decide_difference(claim(), {0: 30.0, 1: 30.5}, {0: 35.0, 1: 35.4})
    assert list(C.frame_row(d)) == list(C.FRAME_COLUMNS)  # frame's columns= would drop a key the header lacks


def test_a_claim_in_an_experiment_file_is_about_that_table(monkeypatch):
    entry = {"id": "x", "paper": "p", "column": "ppl_test", "expect": "less", "a": "vanilla", "b": "elu"}
    monkeypatch.setattr(C, "table_names", lambda: ("table4",))
    monkeypatch.setattr(C, "section", lambda table, key: [entry])
    assert C.load_claims()[0].table == "table4" and "table" not in entry  # implied, the file's data untouched
    monkeypatch.setattr(C, "section", lambda table, key: [entry | {"table": "table1"}])
    with pytest.raises(ValueError, match=r"table4.yaml: claim 1 \(x\): table='table1'; a claim in this file is about"):
        C.load_claims()
