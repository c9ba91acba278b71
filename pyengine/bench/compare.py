"""``pyengine bench --compare A.json B.json``: the ratio of every result both runs share
(same family, case, size and provider), for regressions and for comparing two machines."""
from __future__ import annotations

import math

from .report import machine_line, text_table


def compare(a: dict, b: dict) -> list[dict]:
    """Rows for the results present in both documents; ``speedup`` is A's time over B's
    (> 1: B is faster)."""
    key = lambda r: (r["family"], r["case"], r["size"], r["provider"])  # noqa: E731
    in_b = {key(r): r for r in b["results"]}
    rows = []
    for r in a["results"]:
        other = in_b.get(key(r))
        if other is not None:
            rows.append({"family": r["family"], "case": r["case"], "size": r["size"], "provider": r["provider"],
                         "ms_a": r["ms"], "ms_b": other["ms"], "speedup": r["ms"] / other["ms"]})
    return rows


def geomean(values) -> float:
    values = list(values)
    if not values:
        raise ValueError("geomean of no values")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def render(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> str:
    rows = compare(a, b)
    head = [f"A = {name_a}: {a['date']}, {machine_line(a)}", f"B = {name_b}: {b['date']}, {machine_line(b)}", ""]
    if not rows:
        return "\n".join(head + ["The two runs share no (family, case, size, provider) result."])
    table = text_table(["family", "case", "size", "provider", "A ms", "B ms", "A/B"],
                       [[r["family"], r["case"], str(r["size"]), r["provider"], f"{r['ms_a']:.3f}",
                         f"{r['ms_b']:.3f}", f"{r['speedup']:.2f}x"] for r in rows])
    summary = (f"\n{len(rows)} shared results; geometric mean A/B = {geomean(r['speedup'] for r in rows):.2f}x "
               "(> 1: B is faster)")
    return "\n".join(head) + table + summary
