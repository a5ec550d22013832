"""``make gpu-data``: the data a GPU command carries, annotated here, and the size of all it sends.

The GPU image has no spaCy (and 64 MiB cannot hold it: spaCy, its pipeline and their dependencies
are 72 MB of cp312 wheels). So the corpora are annotated here and their cache entries carried:
with the record beside each entry (:mod:`ernie_cpt.data.annotation_record`), the GPU side finds them
and spaCy's English stop words without spaCy. ``.gpu/data.tar.xz`` holds

* ``cache/annotations/<fingerprint>/``: the bundled sample's annotations (the smoke test and the
  benchmarks) and, for the full run, the six Austen novels' (the value experiment);
* ``corpora/austen/*.txt``: the novels themselves (their content is the key of their annotations);
* ``corpora/fortunes-topics/{train,test}.jsonl``: the downstream set of the value experiment.

``--quick`` (the dry run) packs the bundled sample and its first 3 chapters (the dry run's corpus),
with the first 80/20 rows of the fortunes sets, into ``.gpu-build/data-quick.tar.xz`` instead (never
carried). A data file is kept once built: delete it to rebuild. The corpora come from
``../shared/corpora``. Sizes: Austen's annotations are 8.4 MB and the novels 4.0 MB; xz packs them
with the fortunes sets into 2.4 MB.

``python -m scripts.gpu.carry [--quick]``; :func:`report_sizes` prints what a command sends and
exits 2 when it is 64 MiB or more.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from scripts.gpu.wheelhouse import BUILD, CARRY, ROOT, WHEELHOUSE

SHARED = ROOT.parent / "shared" / "corpora"
DATA = CARRY / "data.tar.xz"
QUICK_DATA = BUILD / "data-quick.tar.xz"  # the dry run's: never carried, never in place of the real one
LIMIT = 64 * 2**20  # what one device command may send: working tree and carried paths together
QUICK_ROWS = {"train.jsonl": 80, "test.jsonl": 20}  # 80: a validation row for each of the 8 labels
QUICK_CHAPTERS = [f"ernie_cpt/data/persuasion/chapter-{i:02d}.txt" for i in (1, 2, 3)]  # the dry run's corpus
CARRIED = (WHEELHOUSE, CARRY)  # the `carry` of the device call


def annotate(corpus: list[Path], cache: Path) -> str:
    """Annotate ``corpus`` into ``cache`` with ``ernie-cpt prepare`` (a cache hit when done before);
    returns the entry's folder name."""
    out = subprocess.run([sys.executable, "-m", "ernie_cpt.cli", "prepare", "--corpus", *map(str, corpus),
                          "--output-dir", str(cache)], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return Path(next(line for line in out.splitlines() if line.startswith("Annotations: ")).split(": ", 1)[1]).name


def data_file(quick: bool) -> Path:
    return QUICK_DATA if quick else DATA


def build(quick: bool) -> dict:
    """Write the data file (``.gpu/data.tar.xz``; with ``quick``, ``.gpu-build/data-quick.tar.xz``) and
    its manifest beside it (what it holds); kept when built before."""
    data = data_file(quick)
    manifest_file = data.with_name(data.name.replace(".tar.xz", ".json"))
    if data.is_file() and manifest_file.is_file():
        kept = json.loads(manifest_file.read_text())
        if kept.get("downstream_rows") == (QUICK_ROWS if quick else "all"):  # else built with other rows: rebuilt
            return kept
    from ernie_cpt.data.corpus import bundled_corpus

    fortunes = SHARED / "fortunes-topics"
    corpora = {"sample": [bundled_corpus()], **({"sample3": [ROOT / c for c in QUICK_CHAPTERS]} if quick
                                               else {"austen": [SHARED / "austen"]})}
    missing = [str(p) for p in [*(c[0] for c in corpora.values()), fortunes] if not p.exists()]
    if missing:
        raise SystemExit(f"scripts.gpu.carry: error: {', '.join(missing)} absent; the corpora come from ../shared")
    cache, staged = BUILD / "cache", BUILD / "downstream"
    entries = {name: annotate(path, cache) for name, path in corpora.items()}
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for name in QUICK_ROWS:
        lines = (fortunes / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (staged / name).write_text("".join(lines[:QUICK_ROWS[name]] if quick else lines), encoding="utf-8")
    data.parent.mkdir(exist_ok=True)
    tmp = data.with_name(f".{data.name}.tmp")
    with tarfile.open(tmp, "w:xz") as tar:
        for entry in entries.values():  # the entry's dataset and record, not what datasets cached beside them
            tar.add(cache / "annotations" / entry, f"cache/annotations/{entry}",
                    filter=lambda member: None if Path(member.name).name.startswith("cache-") else member)
        if not quick:
            tar.add(corpora["austen"][0], "corpora/austen")
        tar.add(staged, "corpora/fortunes-topics")
    tmp.replace(data)
    manifest = {"quick": quick, "annotations": entries, "corpora": [] if quick else ["austen"],
                "downstream_rows": QUICK_ROWS if quick else "all"}
    manifest_file.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def sizes() -> dict[str, int]:
    """Bytes a device command sends: the working tree (tracked and untracked files git does not
    ignore) and each carried path."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    tree = sum((ROOT / name).stat().st_size for name in listed if name and (ROOT / name).is_file())
    return {"working tree": tree, **{path.name + "/": _size(path) for path in CARRIED if path.exists()}}


def report_sizes() -> int:
    """Print what a device command sends; 2 when it reaches the 64 MiB limit, else 0."""
    measured = sizes()
    total = sum(measured.values())
    for name, size in [*measured.items(), ("total", total)]:
        print(f"{name:>14}: {size / 2**20:6.2f} MiB")
    if total >= LIMIT:
        print(f"scripts.gpu: error: a device command would send {total / 2**20:.2f} MiB, over the 64 MiB it "
              f"takes; carry less", file=sys.stderr)
        return 2
    print(f"{(LIMIT - total) / 2**20:.2f} MiB to spare under the 64 MiB a device command takes")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gpu.carry", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled sample and a slice of the fortunes sets")
    args = parser.parse_args(argv)
    manifest = build(args.quick)
    data = data_file(args.quick)
    print(f"{data.relative_to(ROOT)}: annotations of {', '.join(manifest['annotations'])}, "
          f"{data.stat().st_size / 2**20:.2f} MiB")
    return report_sizes()


if __name__ == "__main__":
    sys.exit(main())
