"""Output folders appear complete or not at all."""
import pytest

from fusion_prune_ros.atomic import built_in_place


def test_a_finished_block_renames_the_folder_into_place(tmp_path):
    out = tmp_path / "set"
    with built_in_place(out) as partial:
        (partial / "table.json").write_text("[]")
        assert not out.exists()
    assert (out / "table.json").read_text() == "[]" and not (tmp_path / "set.partial").exists()


def test_a_failed_block_leaves_nothing_behind(tmp_path):
    out = tmp_path / "set"
    with pytest.raises(KeyboardInterrupt):
        with built_in_place(out) as partial:
            (partial / "half.bin").write_bytes(b"x")
            raise KeyboardInterrupt
    assert not out.exists() and not (tmp_path / "set.partial").exists()


def test_nested_for_writers_that_name_their_files_after_their_folder(tmp_path):
    out = tmp_path / "scene"
    with built_in_place(out, nested=True) as folder:
        assert folder.name == "scene" and not folder.exists()
        folder.mkdir()
        (folder / "scene.mcap").write_bytes(b"")
    assert (out / "scene.mcap").is_file() and not (tmp_path / "scene.partial").exists()
