"""The repository watcher: what a look sees, with inotify and by polling, and what an idle look costs."""

import os
import shutil

import pytest

from fastserve.registry import folder_events, repository
from fastserve.registry.repository import Watcher

MODES = [pytest.param(True, id="inotify"), pytest.param(False, id="polling")]


def version(folder, text="x"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_text(text)


def later(path):
    """Move a file's or folder's time on, as a write a moment later would (file times are coarse on some disks)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


@pytest.fixture
def watcher(request):
    made = []

    def make(notify):
        w = Watcher(notify=notify)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()


@pytest.mark.parametrize("notify", MODES)
def test_a_look_sees_models_appear_change_and_go(tmp_path, watcher, notify):
    version(tmp_path / "a" / "1")
    w = watcher(notify)
    first = w.look(tmp_path)
    assert list(first) == ["a"] and list(first["a"][2]) == [1]
    if notify:
        assert w.mode == "inotify"
    assert w.look(tmp_path)["a"] is first["a"]  # nothing changed: the same entry (the registry skips it)

    staged = tmp_path / "a" / "_staging"  # the usual publish: written aside, renamed in
    version(staged)
    os.rename(staged, tmp_path / "a" / "2")
    version(tmp_path / "b" / "1")
    look = w.look(tmp_path)
    assert sorted(look) == ["a", "b"] and sorted(look["a"][2]) == [1, 2]

    (tmp_path / "b" / "fastserve.toml").write_text("[model]\n")
    later(tmp_path / "b" / "fastserve.toml")
    assert w.look(tmp_path)["b"][1] == b"[model]\n"
    (tmp_path / "b" / "fastserve.toml").write_text("[MODEL]\n")  # same size, other bytes
    later(tmp_path / "b" / "fastserve.toml")
    assert w.look(tmp_path)["b"][1] == b"[MODEL]\n"

    shutil.rmtree(tmp_path / "a")
    assert list(w.look(tmp_path)) == ["b"]


@pytest.mark.parametrize("notify", MODES)
def test_a_version_folder_made_before_its_model_file_is_seen_when_the_file_comes(tmp_path, watcher, notify):
    version(tmp_path / "a" / "1")
    w = watcher(notify)
    w.look(tmp_path)
    (tmp_path / "a" / "2").mkdir()  # copied in place, not renamed: the folder first, its files after
    assert list(w.look(tmp_path)["a"][2]) == [1]
    (tmp_path / "a" / "2" / "model.onnx").write_text("x")
    if not notify:  # (with inotify, touching the folder would itself be an event in the model folder)
        later(tmp_path / "a" / "2")
    assert sorted(w.look(tmp_path)["a"][2]) == [1, 2]

    (tmp_path / "new" / "1").mkdir(parents=True)  # a new model whose only version is not written yet
    assert "new" not in w.look(tmp_path)
    (tmp_path / "new" / "1" / "model.onnx").write_text("x")
    if not notify:
        later(tmp_path / "new" / "1")
    assert list(w.look(tmp_path)["new"][2]) == [1]


def test_an_idle_look_with_inotify_reads_no_model_folder(tmp_path, watcher, monkeypatch):
    for i in range(50):
        version(tmp_path / f"m{i}" / "1")
    w = watcher(True)
    w.look(tmp_path)
    assert w.mode == "inotify"
    stats = []
    real = os.stat
    monkeypatch.setattr(repository.os, "stat", lambda p, *a, **k: stats.append(p) or real(p, *a, **k))
    looks = [w.look(tmp_path) for _ in range(3)]
    assert len(looks[-1]) == 50 and {str(p) for p in stats} == {str(tmp_path)}  # the repository folder only
    version(tmp_path / "m7" / "2")
    assert sorted(w.look(tmp_path)["m7"][2]) == [1, 2]
    read = {str(p) for p in stats} - {str(tmp_path)}
    assert read and all(p.startswith(str(tmp_path / "m7")) for p in read)


def test_when_watches_run_out_the_watcher_polls_and_misses_nothing(tmp_path, watcher, monkeypatch):
    for name in ("a", "b", "c"):
        version(tmp_path / name / "1")
    real = folder_events.FolderEvents._add

    def limited(self, path):
        if path.endswith("c"):  # the kernel's limit reached at the third model
            self.failed = True
            return -1
        return real(self, path)
    monkeypatch.setattr(folder_events.FolderEvents, "_add", limited)
    w = watcher(True)
    assert sorted(w.look(tmp_path)) == ["a", "b", "c"]
    version(tmp_path / "c" / "2")
    assert sorted(w.look(tmp_path)["c"][2]) == [1, 2]
    assert w.mode == "polling"
    version(tmp_path / "c" / "3")
    assert sorted(w.look(tmp_path)["c"][2]) == [1, 2, 3]


def test_the_repository_moved_away_and_back_is_looked_at_again(tmp_path, watcher):
    repo = tmp_path / "models"
    version(repo / "a" / "1")
    w = watcher(True)
    assert list(w.look(repo)) == ["a"]
    os.rename(repo, tmp_path / "aside")
    version(tmp_path / "aside" / "b" / "1")
    os.rename(tmp_path / "aside", repo)
    assert sorted(w.look(repo)) == ["a", "b"]


def test_a_model_file_written_while_its_folder_is_being_read_is_seen_at_the_next_look(tmp_path, watcher,
                                                                                       monkeypatch):
    """Polling: the stamp that says "unchanged" is taken before the folder is read, so a write that lands during
    the read changes the next look's stamp instead of hiding behind this one."""
    version(tmp_path / "a" / "1")
    w = watcher(False)
    w.look(tmp_path)
    (tmp_path / "a" / "2").mkdir()
    later(tmp_path / "a")
    real = repository._versions

    def listed_then_written(model_dir):
        found = real(model_dir)
        if not (model_dir / "2" / "model.onnx").exists():
            (model_dir / "2" / "model.onnx").write_text("x")  # right after the listing saw folder 2 empty
            later(model_dir / "2")
        return found
    monkeypatch.setattr(repository, "_versions", listed_then_written)
    assert sorted(w.look(tmp_path)["a"][2]) == [1]
    monkeypatch.setattr(repository, "_versions", real)
    assert sorted(w.look(tmp_path)["a"][2]) == [1, 2]
