"""The kernel benchmark's targets, evaluated on its rows (dicts as written to the CSV).

- causal ``norm_attention`` at the target length is at least 10x faster than causal ``vanilla``;
- causal ``norm_attention`` takes at most 2.5x the time of bidirectional ``norm_attention``;
- the peak memory of every linear backend (registry flags ``linear_causal`` / ``linear_bidirectional``)
  grows at most 2.2x whenever N doubles.
The achieved fraction of the machine's matmul throughput of the bidirectional linear backends at the
target length is reported beside them (a figure, not a target).
"""
from __future__ import annotations

from typing import Any

SPEEDUP_OVER_VANILLA_MIN = 10.0
CAUSAL_OVER_BIDIRECTIONAL_MAX = 2.5
MEMORY_GROWTH_PER_DOUBLING_MAX = 2.2
TARGET_LENGTH = 16384


def _ok_cells(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r["backend"], r["mode"], int(r["n"])): r for r in rows if r.get("status") == "ok"}


def target_length(rows: list[dict[str, Any]]) -> int | None:
    """16K when measured, else the longest measured length."""
    lengths = {int(r["n"]) for r in rows}
    if not lengths:
        return None
    return TARGET_LENGTH if TARGET_LENGTH in lengths else max(lengths)


def _target(name: str, value: float | None, limit: str, passed: bool | None, detail: str) -> dict[str, Any]:
    return {"target": name, "value": value, "limit": limit, "passed": passed, "detail": detail}


def evaluate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per target: ``target``, ``value``, ``limit``, ``passed`` (None when not measured), ``detail``."""
    cells, n = _ok_cells(rows), target_length(rows)
    results = []
    norm_causal = cells.get(("norm_attention", "causal", n))
    vanilla_causal = cells.get(("vanilla", "causal", n))
    norm_bidirectional = cells.get(("norm_attention", "bidirectional", n))
    if norm_causal and vanilla_causal:
        speedup = vanilla_causal["time_median_s"] / norm_causal["time_median_s"]
        detail = f"{vanilla_causal['time_median_s']:.3g} s / {norm_causal['time_median_s']:.3g} s"
        results.append(_target(f"speed-up of causal norm_attention over causal vanilla at N={n}", speedup,
                               f">= {SPEEDUP_OVER_VANILLA_MIN:g}", speedup >= SPEEDUP_OVER_VANILLA_MIN, detail))
    else:
        results.append(_target(f"speed-up of causal norm_attention over causal vanilla at N={n}", None,
                               f">= {SPEEDUP_OVER_VANILLA_MIN:g}", None, "not measured"))
    if norm_causal and norm_bidirectional:
        ratio = norm_causal["time_median_s"] / norm_bidirectional["time_median_s"]
        detail = f"{norm_causal['time_median_s']:.3g} s / {norm_bidirectional['time_median_s']:.3g} s"
        results.append(_target(f"causal / bidirectional time of norm_attention at N={n}", ratio,
                               f"<= {CAUSAL_OVER_BIDIRECTIONAL_MAX:g}", ratio <= CAUSAL_OVER_BIDIRECTIONAL_MAX, detail))
    else:
        results.append(_target(f"causal / bidirectional time of norm_attention at N={n}", None,
                               f"<= {CAUSAL_OVER_BIDIRECTIONAL_MAX:g}", None, "not measured"))
    results.extend(memory_growth(rows))
    return results


def memory_growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per linear (backend, mode): the largest peak-memory ratio between N and 2N."""
    cells = _ok_cells(rows)
    pairs: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for row in rows:
        if not row.get("linear"):
            continue
        key = (row["backend"], row["mode"])
        pairs.setdefault(key, [])
        small, large = cells.get((*key, int(row["n"]))), cells.get((*key, 2 * int(row["n"])))
        if small and large and small["peak_memory_mib"] > 0:
            pairs[key].append((large["peak_memory_mib"] / small["peak_memory_mib"], int(row["n"])))
    results = []
    for (backend, mode), ratios in pairs.items():
        name = f"peak memory growth per doubling of N, {backend} ({mode})"
        limit = f"<= {MEMORY_GROWTH_PER_DOUBLING_MAX:g}"
        if not ratios:
            results.append(_target(name, None, limit, None, "no pair of measured lengths N, 2N"))
            continue
        worst, n = max(ratios)
        in_order = ", ".join(f"{ratio:.2f}" for ratio, _ in sorted(ratios, key=lambda pair: pair[1]))
        detail = f"worst from N={n} to {2 * n}; all, by N: {in_order}"
        results.append(_target(name, worst, limit, worst <= MEMORY_GROWTH_PER_DOUBLING_MAX, detail))
    return results


def throughput_fractions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bidirectional linear backends at the target length: FLOPs, time and fraction of the matmul peak."""
    n = target_length(rows)
    found = []
    for row in rows:
        if (row.get("status") == "ok" and row["mode"] == "bidirectional" and int(row["n"]) == n
                and row.get("linear") and row.get("fraction_of_matmul_peak") is not None):
            found.append({key: row[key] for key in ("backend", "n", "flops_fwd_bwd", "time_median_s",
                                                     "achieved_gflops", "fraction_of_matmul_peak")})
    return found
