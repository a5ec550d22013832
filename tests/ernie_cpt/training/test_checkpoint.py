import logging
import os
import stat

import pytest
import torch

from ernie_cpt.errors import UserError
from ernie_cpt.training.checkpoint import checkpoints, find_checkpoint, latest_checkpoint, save_checkpoint, stage_end


def _save(root, step, value, keep=2):
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return save_checkpoint(root, step, model, {"rng": torch.get_rng_state(), "n": step}, {"step": step}, keep=keep)


def test_keeps_the_last_k_and_points_to_the_newest(tmp_path):
    for step in (10, 20, 30):
        _save(tmp_path, step, float(step))
    assert [p.name for p in checkpoints(tmp_path)] == ["step-00000020", "step-00000030"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-00000030"
    path, (weights, training_state, trainer_state) = latest_checkpoint(tmp_path)
    assert path.name == "step-00000030" and trainer_state == {"step": 30} and training_state["n"] == 30
    assert torch.all(weights["weight"] == 30.0)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_a_damaged_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
    _save(tmp_path, 10, 1.0)
    newest = _save(tmp_path, 20, 2.0)
    data = (newest / "model.safetensors").read_bytes()
    (newest / "model.safetensors").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING):
        path, (weights, _, _) = latest_checkpoint(tmp_path)
    assert path.name == "step-00000010" and torch.all(weights["weight"] == 1.0)
    assert "skipping unreadable checkpoint" in caplog.text


def test_a_pickle_in_place_of_the_weights_is_refused(tmp_path):
    only = _save(tmp_path, 10, 1.0)
    torch.save({"weight": torch.ones(2, 2)}, only / "model.safetensors")
    assert latest_checkpoint(tmp_path) is None


def test_leftovers_of_a_killed_write_are_removed_by_the_next_save(tmp_path):
    _save(tmp_path, 10, 1.0)
    for name in (".tmp-step-00000020-4242", ".trash-step-00000005-4242"):
        (tmp_path / "checkpoints" / name).mkdir()
        (tmp_path / "checkpoints" / name / "model.safetensors").write_bytes(b"half")
    _save(tmp_path, 20, 2.0)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000010",
                                                                           "step-00000020"]


def test_a_failed_write_removes_its_folder_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    import pytest

    from ernie_cpt.errors import UserError
    from ernie_cpt.training import checkpoint

    _save(tmp_path, 10, 1.0)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(UserError, match=r"no space left on device while writing checkpoint step-00000020 .*"
                                        r"the last checkpoint, step-00000010, is intact"):
        _save(tmp_path, 20, 2.0)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000010"]
    assert latest_checkpoint(tmp_path)[0].name == "step-00000010"


def test_resaving_a_step_replaces_it_and_keeps_newer_leftovers(tmp_path):
    """After a resume from an older checkpoint, the same step is written again; a newer checkpoint of
    the interrupted run is not counted against the limit of the one just written."""
    for step in (10, 20, 30):
        _save(tmp_path, step, float(step), keep=3)
    (tmp_path / "checkpoints" / "latest").write_text("step-00000010\n")  # killed before the pointer moved on
    _save(tmp_path, 20, 5.0, keep=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["step-00000010", "step-00000020", "step-00000030"]
    path, (weights, _, _) = latest_checkpoint(tmp_path)
    assert path.name == "step-00000020" and torch.all(weights["weight"] == 5.0)


def _save_stage(root, step, stage_end=None, keep=1):
    state = {"step": step, **({"stage_end": stage_end} if stage_end else {})}
    return save_checkpoint(root, step, torch.nn.Linear(2, 2), {}, state, keep=keep)


def test_stage_end_checkpoints_are_never_rotated_away(tmp_path):
    _save_stage(tmp_path, 4, stage_end=1)
    _save_stage(tmp_path, 5)
    _save_stage(tmp_path, 6)
    _save_stage(tmp_path, 9, stage_end=2)
    _save_stage(tmp_path, 10)
    assert [p.name for p in checkpoints(tmp_path)] == ["step-00000004", "step-00000009", "step-00000010"]
    assert [stage_end(p) for p in checkpoints(tmp_path)] == [1, 2, None]


def test_find_checkpoint_by_name_stage_or_latest(tmp_path):
    _save_stage(tmp_path, 4, stage_end=1)
    _save_stage(tmp_path, 600, keep=5)
    assert find_checkpoint(tmp_path).name == "step-00000600"
    for name in ("step-600", "600", "step-00000600", str(tmp_path / "checkpoints" / "step-00000600")):
        assert find_checkpoint(tmp_path, name).name == "step-00000600"
    assert find_checkpoint(tmp_path, stage=1).name == "step-00000004"
    with pytest.raises(UserError, match=r"has no checkpoint step-7; its checkpoints: step-00000004 \(stage 1\), "
                                        r"step-00000600$"):
        find_checkpoint(tmp_path, "step-7")
    with pytest.raises(UserError, match="has no checkpoint of the end of stage 2"):
        find_checkpoint(tmp_path, stage=2)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_checkpoint_files_get_the_umask_modes(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = save_checkpoint(tmp_path, 1, torch.nn.Linear(2, 2), {}, {"step": 1}, keep=1, description={"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask
    files = sorted(p.name for p in path.iterdir())
    assert files == ["ernie_cpt_model.json", "model.safetensors", "trainer_state.json", "training_state.pt"]
    assert {stat.S_IMODE((path / name).stat().st_mode) for name in files} == {0o666 & ~mask}
