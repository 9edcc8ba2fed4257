"""Turn a ``bench/cells.py`` JSON file into the markdown table of ``bench/RESULTS.md``.

python bench/report.py bench/out/cells-cpu.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAMES = {
    "auto": "rnnkit (auto)",
    "own": "own kernels",
    "native": "torch op via rnnkit",
    "reference": "reference",
}


def fmt(r: dict | None) -> str:
    return f"{r['median']:.2f}x [{r['min']:.2f}, {r['max']:.2f}]" if r else "–"


def table(path: str) -> str:
    data = json.loads(Path(path).read_text())
    m = data["machine"]
    args = data["args"]
    impls = [k for k in NAMES if any(k in r["ratio_vs_torch"] for r in data["rows"])]
    lines = [
        f"`{path}`: {m['date']}, {m.get('gpu', m['cpu'])}, torch {m['torch']}, {m['threads']} threads; "
        f"batch {args['batch']} x bptt {args['bptt']}, {args['layers']} layers; "
        f"matmul peak {data['matmul_peak_gflops']:.0f} GFLOP/s",
        "",
        "| cell | H | dtype | lengths | torch tok/s | "
        + " | ".join(NAMES[k] for k in impls)
        + " | % of peak | target |",
        "| --- | ---: | --- | --- | ---: | " + " | ".join("---" for _ in impls) + " | ---: | --- |",
    ]
    for row in data["rows"]:
        r = row["ratio_vs_torch"]
        target = ""
        if row["target"] is not None and m["device"] == "cpu":  # the targets are for this CPU
            met = r["auto"]["median"] >= row["target"]
            target = f"≥ {row['target']:.2f}x: {'met' if met else '**missed**'}"
        lines.append(
            f"| {row['case']} | {row['hidden']} | {row['dtype']} | {'yes' if row['lengths'] else 'no'} | "
            f"{row['tokens_per_s']['torch']:,.0f} | "
            + " | ".join(fmt(r.get(k)) for k in impls)
            + f" | {100 * row['gflops']['auto'] / data['matmul_peak_gflops']:.0f}% | {target} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print("\n\n".join(table(p) for p in sys.argv[1:]))
