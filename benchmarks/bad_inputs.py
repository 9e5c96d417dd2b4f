"""Try the bad inputs and values of docs/reliability.md ("Inputs, configuration
and values") against the `vaa` command and print what each gives now, as the
Markdown rows of that table. Tiny files in a temporary folder; a few seconds
of CPU (one 1-epoch ESIM with hidden size 4).

    PYTHONPATH=src python benchmarks/bad_inputs.py
"""

from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

SNLI_HEADER = (
    "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
    "sentence1\tsentence2\tcaptionID\tpairID\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5"
)
WORDS = "cat dog bird fish horse cow sheep goat lion tiger".split()
GENERIC = ["--format", "generic", "--columns", "a=a,b=b,label=y"]


def vaa(*args: str) -> tuple[int, str]:
    """Exit code and the line that matters: the error, else a warning or the
    read report (kept/skipped rows), else the last line printed."""
    code = "import sys; from vaa.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    err = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("INFO", "\r"))]
    out = [line for line in done.stdout.splitlines() if line.strip()]
    for candidates in (
        [line for line in err if "error" in line],
        [line for line in err if "WARNING" in line],
        [line for line in err + out if "skipped" in line or "kept of" in line],
        err,
        out,
        [""],
    ):
        if candidates:
            return done.returncode, candidates[-1]
    return done.returncode, ""


def pairs_file(path: Path, n: int, seed: int, extra: list[str] | None = None) -> Path:
    rng = random.Random(seed)
    lines = ["a\tb\ty"]
    for i in range(n):
        x = rng.choice(WORDS)
        y = x if i % 2 == 0 else rng.choice([w for w in WORDS if w != x])
        lines.append(f"the {x} is here\twhere is the {y}\t{int(x == y)}")
    lines[3:3] = extra or []
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="vaa-bad-"))
    train = pairs_file(tmp / "train.tsv", 40, 0)
    run = tmp / "a"
    code, _ = vaa(
        "train",
        "--train",
        str(train),
        *GENERIC,
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--output",
        str(run),
        "--no-progress",
    )
    assert code == 0, "could not train the tiny model A"
    malformed = pairs_file(tmp / "bad.tsv", 26, 1, ["the cat is here\twhere is the cat\t1\textra field"])
    snli = tmp / "snli.txt"
    row = lambda g, s1, pid: "\t".join([g, "( x )", "( y )", "(R x)", "(R y)", s1, "A man rests.", "c", pid, g])  # noqa: E731
    good = [row(g, f"A man sleeps {i}.", f"p{i}{g[0]}") for i in range(3) for g in ("neutral", "entailment", "contradiction")]
    snli.write_text("\n".join([SNLI_HEADER, *good[:2], row("neutral", "A man\tsleeps.", "bad"), *good[2:]]) + "\n")
    csv_file = tmp / "q.csv"
    csv_file.write_text('a,b,y\nhow are you,"fine thanks,1\nwhat is x,what is y,0\nwhere,"there",1\nok,fine,0\n')
    gz = tmp / "c.tsv.gz"
    body = gzip.compress(train.read_bytes())
    gz.write_bytes(body[:20] + bytes(b ^ 0x5A for b in body[20:60]) + body[60:])
    one_class = tmp / "one.tsv"
    one_class.write_text("a\tb\ty\n" + "".join(f"s{i} x\tt{i} y\t1\n" for i in range(12)))
    noise = tmp / "noise.tsv"
    noise.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(300)))
    nul = tmp / "nul.csv"
    nul.write_text("a,b,y\nthe cat\x00,a cat,1\n")
    utf16 = tmp / "u16.tsv"
    utf16.write_bytes(train.read_text().encode("utf-16"))
    utf16_le = tmp / "u16le.tsv"
    utf16_le.write_bytes(train.read_text().encode("utf-16-le"))
    long_file = tmp / "long.tsv"
    long_file.write_text("a\tb\ty\n" + " ".join(["cat"] * 20000) + "\twhere is the cat\t1\nthe dog\ta dog\t1\n")
    preset = tmp / "p.yaml"
    preset.write_text("extends: esim\noptim:\n  batch_size: 0\n")
    out = tmp / "out"

    cases = [
        (
            "`--set optim.lr=1e-3` (README)",
            [
                "train",
                "--train",
                str(train),
                *GENERIC,
                "--hidden",
                "4",
                "--epochs",
                "1",
                "--set",
                "optim.lr=1e-3",
                "--output",
                str(tmp / "lr"),
                "--no-progress",
            ],
        ),
        ("`--set optim.batch_size=abc`", ["train", "--set", "optim.batch_size=abc", "--output", str(out)]),
        ("`--batch-size 0`", ["train", "--batch-size", "0", "--output", str(out)]),
        ("`--epochs 0`", ["train", "--epochs", "0", "--output", str(out)]),
        ("`--lr nan`", ["train", "--lr", "nan", "--output", str(out)]),
        ("`--lr 1e30`", ["train", "--lr", "1e30", "--print-config"]),
        ("`--set model.pooling=max`", ["train", "--set", "model.pooling=max", "--output", str(out)]),
        ("`--set optim.learning_rate=1`", ["train", "--set", "optim.learning_rate=1", "--output", str(out)]),
        ("preset with `batch_size: 0`", ["train", "--preset", str(preset), "--output", str(out)]),
        ("`train-vaa --eps inf`", ["train-vaa", "--model-a", str(run), "--eps", "inf", "--output", str(out)]),
        ("`vulnerability --eps nan`", ["vulnerability", str(run), "--pair", "a cat", "a dog", "--eps", "nan"]),
        (
            "`vulnerability --eps 1e38`",
            ["vulnerability", str(run), str(train), *GENERIC, "--eps", "1e38", "--output", str(tmp / "v.csv"), "--no-progress"],
        ),
        ("`vulnerability --batch-size 0`", ["vulnerability", str(run), "--pair", "a cat", "a dog", "--batch-size", "0"]),
        ('`predict --pair "" "a dog"`', ["predict", str(run), "--pair", "", "a dog"]),
        (
            "train without `--valid`, one malformed row, `--on-error skip`",
            [
                "train",
                "--train",
                str(malformed),
                *GENERIC,
                "--on-error",
                "skip",
                "--hidden",
                "4",
                "--epochs",
                "1",
                "--output",
                str(tmp / "skip"),
                "--no-progress",
            ],
        ),
        ("the same, raise mode", ["train", "--train", str(malformed), *GENERIC, "--output", str(out), "--no-progress"]),
        ("`evaluate` on it, `--on-error skip`", ["evaluate", str(run), str(malformed), *GENERIC, "--on-error", "skip"]),
        (
            "`predict` on it, `--on-error skip`",
            ["predict", str(run), str(malformed), *GENERIC, "--on-error", "skip", "--output", str(tmp / "p.csv")],
        ),
        (
            "`vulnerability` on it, `--on-error skip`",
            [
                "vulnerability",
                str(run),
                str(malformed),
                *GENERIC,
                "--on-error",
                "skip",
                "--output",
                str(tmp / "v2.csv"),
                "--no-progress",
            ],
        ),
        ("SNLI `.txt`, tab inside a sentence", ["evaluate", str(run), str(snli)]),
        (
            "the same, `--on-error skip` (`train`)",
            [
                "train",
                "--train",
                str(snli),
                "--on-error",
                "skip",
                "--hidden",
                "4",
                "--epochs",
                "1",
                "--output",
                str(tmp / "snli-run"),
                "--no-progress",
            ],
        ),
        ("CSV with an unbalanced quote", ["predict", str(run), str(csv_file), "--columns", "a=a,b=b,label=y"]),
        ("corrupt `.gz`", ["predict", str(run), str(gz), *GENERIC]),
        ("random bytes as a `.tsv`", ["predict", str(run), str(noise)]),
        ("NUL byte in a CSV", ["predict", str(run), str(nul), "--columns", "a=a,b=b,label=y"]),
        ("UTF-16 file", ["predict", str(run), str(utf16), *GENERIC]),
        ("UTF-16-LE file without BOM", ["predict", str(run), str(utf16_le), *GENERIC]),
        ("training set with one class", ["train", "--train", str(one_class), *GENERIC, "--output", str(out)]),
        ("a 20,000-token sentence (ESIM)", ["predict", str(run), str(long_file), *GENERIC, "--output", str(tmp / "p3.csv")]),
    ]
    print("| input or value | exit | what it gives now |")
    print("|---|---|---|")
    for name, args in cases:
        code, line = vaa(*args)
        if name.startswith("`--set optim.lr=1e-3`"):
            line = f"trained; lr of epoch 1 in metrics.jsonl: {json.loads((tmp / 'lr' / 'metrics.jsonl').read_text().splitlines()[0])['lr']}"
        line = line.replace(str(tmp) + "/", "").replace("|", "\\|")
        print(f"| {name} | {code} | `{line}` |")
    print(f"\n(the refused commands above all used --output {out.name}; it exists afterwards: {out.exists()})")


if __name__ == "__main__":
    main()
