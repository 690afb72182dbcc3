"""Result files are written whole or not at all (a crash mid-write keeps the previous file and leaves no debris),
and a layout linked together from other folders never replaces an entry already there."""

from __future__ import annotations

import pandas as pd
import pytest

from src.core.files import link_layout, write_atomically, write_csv_atomically, write_text_atomically


def crash_halfway(temporary):
    temporary.write_text("id,target\nabc,0.")
    raise KeyboardInterrupt  # e.g. the session is cut off while the file is being written


def test_crash_mid_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "submission.csv"
    write_text_atomically(path, "id,target\nabc,0.25\n")
    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, crash_halfway)
    assert path.read_text() == "id,target\nabc,0.25\n"
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_crash_mid_write_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "oof.csv", crash_halfway)
    assert list(tmp_path.iterdir()) == []


def test_temporary_name_is_hidden_from_checkpoint_globs(tmp_path):
    seen = []
    write_atomically(
        tmp_path / "fold0.safetensors", lambda temporary: seen.append(temporary.name) or temporary.write_text("x")
    )
    assert seen == [".fold0.safetensors.tmp"] and not list(tmp_path.glob("fold*.tmp"))


def test_write_csv_atomically(tmp_path):
    path = tmp_path / "submission.csv"
    table = pd.DataFrame({"id": ["000000000000123", "abc"], "target": [0.25, 0.75]})
    write_csv_atomically(table, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]
    back = pd.read_csv(path, dtype={"id": str})
    pd.testing.assert_frame_equal(back, table)
    # overwriting works and still leaves no temporary file
    write_csv_atomically(table.assign(target=[0.5, 0.5]), path)
    assert pd.read_csv(path)["target"].tolist() == [0.5, 0.5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]


def test_link_layout_links_parts_of_other_folders_and_keeps_what_is_there(tmp_path):
    source = tmp_path / "source"
    (source / "train").mkdir(parents=True)
    (source / "train" / "a.npy").write_bytes(b"x")
    (source / "train_labels.csv").write_text("id,target\n")
    folder = tmp_path / "layout"
    folder.mkdir()
    (folder / "sample_submission.csv").write_text("mine\n")
    links = {
        "train": source / "train",
        "train_labels.csv": source / "train_labels.csv",
        "sample_submission.csv": source / "train_labels.csv",
    }
    assert link_layout(folder, links) == folder
    assert (folder / "train").is_symlink() and (folder / "train" / "a.npy").read_bytes() == b"x"
    assert (folder / "train_labels.csv").read_text() == "id,target\n"
    assert (folder / "sample_submission.csv").read_text() == "mine\n"  # an existing entry is never replaced
    assert link_layout(folder, links) == folder  # again: nothing to do, no error
