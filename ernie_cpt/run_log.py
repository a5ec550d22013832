"""Run logs: JSONL files (``logs/train.jsonl``, ``logs/eval.jsonl``) and TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter


class RunLog:
    def __init__(self, run_dir: Path) -> None:
        self.folder = run_dir / "logs"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.tensorboard = SummaryWriter(str(self.folder / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step``: a resumed run writes those steps again."""
        for path in self.folder.glob("*.jsonl"):
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, kind: str, record: dict[str, Any]) -> None:
        """Append ``record`` (which has a ``step``) to ``<kind>.jsonl`` and its numbers to TensorBoard
        (numbers in a dict, such as per-task losses or weights, under ``<key>/<task>``)."""
        with open(self.folder / f"{kind}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        prefix = f"{kind}/{record['task']}/" if "task" in record else f"{kind}/"
        for key, value in record.items():
            values = value if isinstance(value, dict) else {"": value}
            for name, number in values.items():
                if key != "step" and isinstance(number, (int, float)):
                    self.tensorboard.add_scalar(prefix + key + (f"/{name}" if name else ""), number, record["step"])

    def close(self) -> None:
        self.tensorboard.close()


def read_records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    path = run_dir / "logs" / f"{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
