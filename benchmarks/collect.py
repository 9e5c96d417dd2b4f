"""Print the figures of finished benchmark runs as the Markdown tables that go
into benchmarks/RESULTS.md (nothing is recomputed here).

    .venv/bin/python benchmarks/collect.py
"""

from __future__ import annotations

import json
from pathlib import Path

from protocol import OUT


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def stage_one_table(out: Path) -> str:
    lines = [
        "| data | seed | valid acc. | best epoch / epochs | train pairs/s | s/epoch | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "logs"):
        for seed_dir in sorted(folder.glob("seed*")):
            r = _load(seed_dir / "a" / "results.json")
            if r is None:
                continue
            h = r["history"]
            pps = sum(e["train_pairs_per_s"] for e in h) / len(h)
            sec = sum(e["epoch_seconds"] for e in h) / len(h)
            rss = max((e.get("peak_rss_mb") or 0 for e in h), default=0)
            bench = _load(seed_dir / "a" / "benchmark.json")
            rss = rss or (bench or {}).get("peak_rss_mb") or 0
            lines.append(
                f"| {folder.name} | {r['seed']} | {100 * r['scores']['valid']['accuracy']:.2f} | {r['best_epoch']} / {r['epochs']} | "
                f"{pps:.1f} | {sec:.0f} | {f'{rss:.0f}' if rss else '—'} |"
            )
    return "\n".join(lines)


def analysis_summary(out: Path) -> str:
    parts = []
    for path in sorted(out.glob("*/analysis/analysis.json")):
        a = json.loads(path.read_text())
        roc = {r["criterion"]: r for r in a["roc"]}
        aucs = "; ".join(
            f"{c} {r['auc']:.4f} (oriented {r['auc_oriented']:.4f}, no-attack reference "
            f"{a['no_attack_auc_oriented'].get(c, float('nan')):.4f})"
            for c, r in roc.items()
        )
        parts.append(
            f"- {path.parent.parent.name}: {a['pairs']} pairs, A accuracy {a['accuracy_of_A']:.4f}; AUC {aucs}; "
            f"flipped {a['flip_rate']:.2%}; mean ||V1-V2|| {a['mean_distance']:.4g}; {a['pairs_per_s']:.1f} pairs/s"
        )
    return "\n".join(parts)


def main() -> None:
    out = Path(OUT)
    print("## Stage one\n")
    print(stage_one_table(out))
    print("\n## Vulnerability analyses\n")
    print(analysis_summary(out))
    for table in sorted(out.glob("*/table3.md")):
        print(f"\n## {table.parent.name}\n")
        print(table.read_text())
    for cost in sorted(out.glob("*/cost.json")):
        print(f"\n## cost: {cost.parent.name}\n")
        print(cost.read_text())


if __name__ == "__main__":
    main()
