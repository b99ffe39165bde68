"""Write the whole report: per scale, one Markdown + CSV per table, its plots, and index pages.

Layout of ``<out>`` (``results/report`` by default)::

    index.md                       every scale, linking its index
    <scale>/index.md               every table of that scale: cells ok/failed/missing, rank agreement, links
    <scale>/<table>.md, .csv       the paper's rows and columns, ours beside the paper's (CSV: one line a cell)
    <scale>/plots/<table>_*.png    bars (ours | paper), training curves, ablation curves, speed, memory, Figure 2
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness.experiments import table_names, table_plan
from harness.report import claims, expected, plots, recall
from harness.report.build import OK, BuiltTable, build_run_table, long_frame
from harness.report.layout import Layout
from harness.report.paper import PAPER_DIR
from harness.report.records import placed_records
from harness.report.render import agreement, escape, table_markdown
from harness.report.sources import (
    build_table2,
    build_table7,
    fig2_status,
    locality_markdown,
    locality_means,
    read_locality,
)
from harness.report.specs import other_tables, run_tables
from harness.run_record import RunRecord
from zoo_io.atomic import atomic_write, write_text

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One line of a scale's index."""

    name: str
    title: str
    status: str
    agreement: str = ""
    files: list[str] = field(default_factory=list)


def _write_table(table: BuiltTable, folder: Path, figures: dict[str, object]) -> list[str]:
    names = []
    for suffix, figure in figures.items():
        if figure is not None:
            name = f"{table.spec.name}_{suffix}.png"
            plots.save(figure, folder / "plots" / name)
            names.append(name)
    frame = long_frame(table)
    atomic_write(folder / f"{table.spec.name}.csv", lambda tmp: frame.to_csv(tmp, index=False))
    write_text(folder / f"{table.spec.name}.md", table_markdown(table, names, table.spec.paper_file))
    return [f"{table.spec.name}.md", f"{table.spec.name}.csv", *(f"plots/{n}" for n in names)]


def _entry(table: BuiltTable, files: list[str]) -> Entry:
    counts = table.counts()
    status = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    first = table.spec.columns[0]
    return Entry(table.spec.name, table.spec.title, status or "empty",
                 f"{first.label}: {agreement(table.agreement[first.name])}", files)


def run_table_figures(table: BuiltTable) -> dict[str, object]:
    figures = {"bars": plots.bars(table), "curves": plots.training_curves(table)}
    if table.spec.plot in ("block_size", "split"):
        figures[table.spec.plot] = plots.ablation_curve(table)
    return figures


def build_scale(scale: str, records: list[RunRecord], layout: Layout | None, paper_dir: Path, out: Path,
                names: Sequence[str], folder_name: str | None = None) -> list[Entry]:
    """The tables ``names`` at ``scale`` into ``out/<folder_name or scale>``; ``layout`` None: the training
    runs' tables only (a data set other than the built-in corpus: no benchmark, no diagnostics)."""
    folder = out / (folder_name or scale)
    entries, compute_plan = [], expected.read_plan()
    for name in names:
        if name in run_tables():
            table = build_run_table(run_tables()[name], records, scale, paper_dir)
            cost = not_run_reasons(scale).get(name)
            if cost and not table.counts()[OK]:
                table.notes.append(f"No run of this table at this scale: {cost}.")
            table.expected = expected.expected_markdown(table, compute_plan)
            entries.append(_entry(table, _write_table(table, folder, run_table_figures(table))))
        elif name in recall.PAGES:
            if name == recall.PAGE:  # one page for every recall run (recall_order's runs are rows of it)
                entries.append(_write_recall(scale, records, folder))
        elif layout is None:
            continue
        elif name == "table7":
            table = build_table7(layout, scale, paper_dir)
            entries.append(_missing(name, f"no benchmark results at {layout.bench_csv(scale)}") if table is None else
                           _entry(table, _write_table(table, folder, _bench_figures(layout, scale, table))))
            entries += _decode_entry(layout, folder)  # beside Table 7: how decoding cost grows with context
        elif name == "table2":
            table = build_table2(layout, scale, paper_dir)
            entries.append(_missing(name, f"no diagnostics at {layout.gradient_csv(scale)}") if table is None else
                           _entry(table, _write_table(table, folder, {"bars": plots.bars(table)})))
        elif name == "fig2":
            entries.append(_write_fig2(layout, scale, folder))
    return entries


def write_claims(scale: str, records: list[RunRecord], layout: Layout | None, folder: Path,
                 data: str, claims_file: Path | None = None,
                 tables: Sequence[str] | None = None) -> list[claims.Decision]:
    """``claims.md`` and ``claims.csv`` (+ the budget plot) of one scale and data set (the claims about
    ``tables`` only, when given); returns the decisions."""
    wanted = [c for c in claims.load_claims(claims_file) if tables is None or c.table in tables]
    if layout is None:  # another data set: the claims of the run tables that were run on it
        run = {n for n in run_tables() if build_run_table(run_tables()[n], records, scale, PAPER_DIR).counts()["ok"]}
        wanted = [c for c in wanted if c.table in run]
    locality = read_locality(layout, scale) if layout is not None else None
    decisions = claims.decide_all(wanted, records, scale, layout, locality, not_run_reasons(scale))
    if layout is None:  # another data set: the claims whose runs were made on it
        decisions = [d for d in decisions if d.verdict != claims.NOT_RUN]
    budgets = claims.budget_frame(records, scale)
    plot = None
    if not budgets.empty:
        figure = plots.budget_curves(budgets, f"Table 4 against the training budget ({scale}, {data})", "test ppl")
        plots.save(figure, folder / "plots" / "claims_budget.png")
        plot = "claims_budget.png"
    table = claims.frame(decisions)
    atomic_write(folder / "claims.csv", lambda tmp: table.to_csv(tmp, index=False))
    if not budgets.empty:
        atomic_write(folder / "claims_budget.csv", lambda tmp: budgets.to_csv(tmp, index=False))
    write_text(folder / "claims.md", claims.claims_markdown(decisions, scale, data, plot))
    return decisions


def not_run_reasons(scale: str) -> dict[str, str]:
    """table -> what running it costs at ``scale``, from its experiment file (``reproduce.cost``)."""
    plans = {name: table_plan(name) for name in table_names()}
    return {name: plan.cost[scale] for name, plan in plans.items() if scale in plan.cost}


def data_label(record: RunRecord) -> str:
    """"" for the built-in data, else the data folder's name (``wikitext-2``): the report's pages per data set."""
    data = record.config.get("task", {}).get("data", {}) or {}
    if data.get("source", "builtin") == "builtin" or not data.get("path"):
        return ""
    return Path(str(data["path"])).name


def _missing(name: str, why: str) -> Entry:
    return Entry(name, other_tables()[name], f"missing: {why}")


def _bench_figures(layout: Layout, scale: str, table: BuiltTable) -> dict[str, object]:
    import pandas as pd

    frame = pd.read_csv(layout.bench_csv(scale))
    ok = frame[frame["status"] == "ok"]
    figures: dict[str, object] = {"bars": plots.bars(table)}
    if not ok.empty:
        label = "label" if "label" in ok else "backend"
        figures["speed"] = plots.lines_by_label(ok, "length", "steps_per_sec", label, f"speed vs length ({scale})",
                                                "sequence length", "steps / sec", logy=True, logx=True, facet="mode")
        if "peak_memory_mib" in ok:
            figures["memory"] = plots.lines_by_label(ok, "length", "peak_memory_mib", label,
                                                     f"peak memory vs length ({scale})", "sequence length",
                                                     "peak memory (MiB)", logy=True, logx=True, facet="mode")
    return figures


def _decode_entry(layout: Layout, folder: Path) -> list[Entry]:
    """The decode benchmark's page (python -m harness.bench decode), copied in when its results exist."""
    source = layout.root / "bench" / "decode"
    if not (source / "decode.md").is_file():
        return []
    files = ["decode.md"]
    write_text(folder / "decode.md", (source / "decode.md").read_text()
               + ("\n![decode.png](plots/decode.png)\n" if (source / "decode.png").is_file() else ""))
    if (source / "decode.png").is_file():
        data = (source / "decode.png").read_bytes()
        atomic_write(folder / "plots" / "decode.png", lambda tmp: Path(tmp).write_bytes(data))
        files.append("plots/decode.png")
    return [Entry("decode", "Decoding: time per token and state memory against context (not in the paper)",
                  "measured", "", files)]


def _write_recall(scale: str, records: list[RunRecord], folder: Path) -> Entry:
    """The recall page (harness/report/recall.py): its table, plots and CSV of cells."""
    runs = recall.runs_frame(records)
    table = recall.cells(runs)
    files, plots_by_task = [f"{recall.PAGE}.md"], {}
    for task, part in table.groupby("task", sort=True):
        for kind, figure in recall.figures(part, task).items():
            name = f"plots/recall_{task}_{kind}.png"
            plots.save(figure, folder / name)
            plots_by_task.setdefault(task, []).append(name)
            files.append(name)
    title = other_tables()[recall.PAGE]
    write_text(folder / f"{recall.PAGE}.md", recall.page_markdown(table, runs, scale, plots_by_task, title))
    if not table.empty:
        atomic_write(folder / f"{recall.PAGE}.csv", lambda tmp: table.to_csv(tmp, index=False))
        files.append(f"{recall.PAGE}.csv")
    status = f"{len(table)} cells, {len(runs)} runs" if not table.empty else "missing: not run"
    return Entry(recall.PAGE, title, status, "", files)


def _write_fig2(layout: Layout, scale: str, folder: Path) -> Entry:
    frame = read_locality(layout, scale)
    if frame is None or frame.empty:
        return _missing("fig2", f"no locality curves at {layout.locality_csv(scale)}")
    plot = "fig2_locality.png"
    figure = plots.lines_by_label(locality_means(frame), "ratio", "score", "model",
                                  f"Figure 2: locally accumulated attention ({scale})",
                                  "neighbourhood size r (share of the sequence)", "l(r)")
    plots.save(figure, folder / "plots" / plot)
    write_text(folder / "fig2.md", locality_markdown(frame, scale, plot))
    return Entry("fig2", other_tables()["fig2"], fig2_status(frame), "",
                 ["fig2.md", f"plots/{plot}"])


def provenance(records: Iterable[RunRecord]) -> list[str]:
    """Hardware and time behind a scale's runs: hosts, devices, summed wall time, first start, last end."""
    records = list(records)
    if not records:
        return []
    hosts = set()
    for record in records:
        host = record.host
        device = host.get("gpu") or f"{host.get('cpu_count', '?')} CPU cores, {host.get('torch_threads', '?')} threads"
        hosts.add(f"{host.get('hostname', '?')} ({host.get('platform', '?')}; {device})")
    wall = sum(r.spent_seconds or 0.0 for r in records)
    times = [t for r in records for t in (r.started, r.finished) if t]
    lines = [f"- Machines: {'; '.join(sorted(hosts))}",
             f"- Runs: {len(records)}; summed wall time of the runs {wall / 60:.1f} min"]
    if times:
        first, last = min(times), max(times)
        span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() / 60
        lines.append(f"- First run started {first}, last finished {last} ({span:.1f} min apart)")
    versions = records[0].versions
    if versions:
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    return lines


def _index_markdown(scale: str, entries: list[Entry], records: list[RunRecord],
                    decisions: Sequence[claims.Decision] = (), data: str = "built-in corpus") -> str:
    lines = [f"# Report at scale `{scale}` ({data})", "", *provenance(records), ""]
    if decisions:
        lines += [f"## The paper's claims: {claims.summary_line(decisions)}", "",
                  "Generated from [claims.md](claims.md) (95% intervals over seeds, how to read them, the budgets):",
                  "", *claims.verdict_table(decisions), ""]
        if claims.budget_line(decisions):
            lines += [claims.budget_line(decisions), ""]
    lines += ["## Tables", "", "| table | what | cells | rank agreement with the paper | files |",
              "|---|---|---|---|---|"]
    for e in entries:
        files = " ".join(f"[{Path(f).name}]({f})" for f in e.files)
        lines.append(f"| {e.name} | {escape(e.title)} | {escape(e.status)} | {e.agreement} | {files} |")
    return "\n".join(lines) + "\n"


def records_behind(names: Sequence[str], records: list[RunRecord]) -> list[RunRecord]:
    """The runs the tables ``names`` read, by their tasks' families (``lra`` for ``lra/text``), so that a page set
    built with ``--tables`` says the same (its index's run count and times) when runs of other tables are added
    beside them; every run when one of the tables reads no task list (a benchmark's or an analysis's page)."""
    families: set[str] = set()
    for name in names:
        if name in run_tables():
            families |= set(run_tables()[name].tasks)
        elif name in recall.PAGES:
            families.add(recall.PREFIX.rstrip("/"))
        else:
            return records
    return [r for r in records if r.task.split("/")[0] in families]


@dataclass
class Section:
    """One page set of the report: a scale on one data set (``cpu``, ``cpu-wikitext-2``)."""

    name: str
    scale: str
    data: str
    records: list[RunRecord]
    decisions: list[claims.Decision] = field(default_factory=list)


def build_report(
    results: str | Path = "results",
    out: str | Path | None = None,
    paper_dir: str | Path = PAPER_DIR,
    scales: Sequence[str] | None = None,
    tables: Sequence[str] | None = None,
    readme: str | Path | None = None,
) -> Path:
    """Build every table (or ``tables``) at every scale found (or ``scales``), and the claims of each; with
    ``readme``, rewrite that file's generated results section. Returns the top index page."""
    layout = Layout(Path(results))
    out = Path(out) if out is not None else layout.report
    order = table_names()
    names = [n for n in order if tables is None or n in tables]
    unknown = sorted(set(tables or ()) - set(order))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; valid: {list(order)}")
    records = records_behind(names, placed_records(layout.runs))
    found = sorted({r.scale for r in records} | layout.other_scales())
    scales = list(scales) if scales else found
    top = ["# Reproduction report", "",
           "Each page set lists the paper's claims with their verdicts and the paper's tables with our numbers "
           "beside the paper's (`python -m harness.report`).", ""]
    sections = []
    for scale in scales:
        mine = [r for r in records if r.scale == scale]
        by_data: dict[str, list[RunRecord]] = {}
        for record in mine:
            by_data.setdefault(data_label(record), []).append(record)
        for label in ["", *sorted(k for k in by_data if k)]:
            section = Section(f"{scale}-{label}" if label else scale, scale, label or "built-in corpus",
                              by_data.get(label, []))
            scale_layout = layout if not label else None
            entries = build_scale(scale, section.records, scale_layout, Path(paper_dir), out, names,
                                  section.name)
            section.decisions = write_claims(scale, section.records, scale_layout, out / section.name,
                                             section.data, tables=None if tables is None else names)
            write_text(out / section.name / "index.md",
                       _index_markdown(scale, entries, section.records, section.decisions, section.data))
            top.append(f"- [{section.name}]({section.name}/index.md): {section.data}, {len(section.records)} runs, "
                       f"{len(entries)} tables; claims: {claims.summary_line(section.decisions)}")
            sections.append(section)
    if not scales:
        top.append(f"No runs yet under {layout.runs}: run `./reproduce.sh` or `python -m harness.run` first.")
    index = out / "index.md"
    write_text(index, "\n".join(top) + "\n")
    if readme is not None:
        update_readme(Path(readme), sections, out)
    return index


README_BEGIN = "<!-- results: generated by python -m harness.report --readme README.md; do not edit by hand -->"
README_END = "<!-- end of the generated results -->"


def readme_section(sections: Sequence[Section], out: Path, readme_dir: Path) -> str:
    """The README's results: per page set, its claims' verdict table (from its claims.md)."""
    lines = [README_BEGIN]
    for section in sections:
        folder = Path(os.path.relpath(out / section.name, readme_dir)).as_posix()
        head = f"**{section.name}** ({section.data}, {len(section.records)} runs; "
        if not section.decisions:  # runs that fill only part of a claim's rows (say two GLUE columns): listed
            if section.records:
                lines += ["", f"{head}[tables]({folder}/index.md)): no claim is decided on these runs alone"]
            continue
        lines += ["", f"{head}[claims]({folder}/claims.md), [tables]({folder}/index.md)): "
                  f"{claims.summary_line(section.decisions)}", "",
                  *claims.verdict_table(section.decisions, f"{folder}/")]
        if claims.budget_line(section.decisions):
            lines += ["", claims.budget_line(section.decisions)]
    return "\n".join([*lines, "", README_END])


def update_readme(readme: Path, sections: Sequence[Section], out: Path) -> None:
    """Replace the text between the README's markers with :func:`readme_section`; no markers: an error."""
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme}: no generated results section; add the two lines\n{README_BEGIN}\n{README_END}")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    write_text(readme, head + readme_section(sections, out, readme.resolve().parent) + tail)
