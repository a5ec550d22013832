"""Run logs: JSONL files (``logs/train.jsonl``, ``logs/eval.jsonl``) and TensorBoard scalars.

Only the main process writes them (with several processes, the others' ``RunLog`` does nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

from ernie_cpt import distributed
from ernie_cpt.training.checkpoint import atomic_write_text


def _records(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL log; a line cut short by a killed process is left out."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


class RunLog:
    def __init__(self, run_dir: Path) -> None:
        self.folder = run_dir / "logs"
        self.enabled = distributed.is_main()
        if self.enabled:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.tensorboard = SummaryWriter(str(self.folder / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step``: a resumed run writes those steps again."""
        if not self.enabled:
            return
        for path in self.folder.glob("*.jsonl"):
            kept = [record for record in _records(path) if record["step"] <= step]
            atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))

    def write(self, kind: str, record: dict[str, Any]) -> None:
        """Append ``record`` (which has a ``step``) to ``<kind>.jsonl`` and its numbers to TensorBoard
        (numbers in a dict, such as per-task losses or weights, under ``<key>/<task>``)."""
        if not self.enabled:
            return
        with open(self.folder / f"{kind}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        prefix = f"{kind}/{record['task']}/" if "task" in record else f"{kind}/"
        for key, value in record.items():
            values = value if isinstance(value, dict) else {"": value}
            for name, number in values.items():
                if key != "step" and isinstance(number, (int, float)):
                    self.tensorboard.add_scalar(prefix + key + (f"/{name}" if name else ""), number, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.tensorboard.close()


def read_records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    path = run_dir / "logs" / f"{kind}.jsonl"
    return _records(path) if path.exists() else []
