"""Run logs: JSONL files (``logs/train.jsonl``, ``logs/eval.jsonl``) and TensorBoard scalars.

TensorBoard tags are those ``transformers.Trainer`` users know: ``train/loss``,
``train/learning_rate``, ``train/grad_norm``, ``train/aux_loss`` (an architecture's own penalty,
named as Hugging Face's mixture-of-experts models name their router loss) and, per task,
``train/<task>/loss`` (several tasks in a step), ``eval/<task>/accuracy`` (and every other
held-out score), ``weights/<task>`` and ``routing/<task>/<expert>`` (the mean weight a task's
gates or units gave each expert or column).
Only the main process writes them (with several processes, the others' ``RunLog`` does nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ernie_cpt import distributed
from ernie_cpt.full_disk import writing
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


# Record keys whose TensorBoard name is another (Trainer's), and dict-valued keys named per task.
TAG_NAMES = {"lr": "learning_rate", "losses": "loss", "weights": ""}
NOT_LOGGED = {"step", "stage", "task", "stage_end", "trained"}


def tensorboard_scalars(kind: str, record: dict[str, Any]) -> list[tuple[str, float]]:
    """The (tag, value) pairs of ``record`` (see the module for the tags)."""
    task = record.get("task") if kind in ("eval", "routing") else None
    scalars = []
    for key, value in record.items():
        name = TAG_NAMES.get(key, key)
        if key in NOT_LOGGED:
            continue
        if isinstance(value, dict):  # routing/<task>/<expert>, train/<task>/loss, weights/<task>
            scalars += [("/".join(filter(None, (kind, task, sub, name))), number) for sub, number in value.items()
                        if isinstance(number, (int, float))]
        elif isinstance(value, (int, float)):
            scalars.append(("/".join(filter(None, (kind, task, name))), value))
    return scalars


class RunLog:
    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.folder = run_dir / "logs"
        self.enabled = distributed.is_main()
        self.tensorboard = None
        if self.enabled:
            with writing(f"the logs in {self.folder}", self.folder):
                self.folder.mkdir(parents=True, exist_ok=True)
                if tensorboard:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tensorboard = SummaryWriter(str(self.folder / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step``: a resumed run writes those steps again."""
        if not self.enabled:
            return
        for path in self.folder.glob("*.jsonl"):
            kept = [record for record in _records(path) if record["step"] <= step]
            atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))

    def write(self, kind: str, record: dict[str, Any]) -> None:
        """Append ``record`` (which has a ``step``) to ``<kind>.jsonl`` and its numbers to TensorBoard."""
        if not self.enabled:
            return
        with writing(f"{kind}.jsonl in {self.folder}", self.folder), \
                open(self.folder / f"{kind}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            with writing(f"the TensorBoard events in {self.folder / 'tensorboard'}", self.folder / "tensorboard"):
                for tag, value in tensorboard_scalars(kind, record):
                    self.tensorboard.add_scalar(tag, value, record["step"])

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        """Close the log; when an error is already on its way, a failure to flush does not replace it."""
        try:
            self.close()
        except Exception:
            if error_type is None:
                raise

    def close(self) -> None:
        if self.tensorboard is not None:
            with writing(f"the TensorBoard events in {self.folder / 'tensorboard'}", self.folder / "tensorboard"):
                self.tensorboard.close()


def read_records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    path = run_dir / "logs" / f"{kind}.jsonl"
    return _records(path) if path.exists() else []
