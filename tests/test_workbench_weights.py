"""The workbench's "Get the real weights" section (workbench.weights.WeightsPanel), driven from Python
with a fake hub serving the tiny official-layout set: what is missing and how big, download with
progress and Cancel, the reload every tab sees, and the offline paragraph."""

import json
import shutil
import socket
import threading

import pytest
from test_weights_download import FakeHub

from acestep_engine.models import LM_FOLDER, write_lm

MAIN = ("acestep-v15-turbo", "vae", "Qwen3-Embedding-0.6B")


@pytest.fixture(scope="module")
def source(tiny_dir):
    write_lm(tiny_dir / LM_FOLDER)
    return tiny_dir


@pytest.fixture
def state(turbo, tmp_path):
    from acestep_engine import Engine, TakeStore
    from workbench import WorkbenchState

    demo = Engine.demo(device="cpu")
    return WorkbenchState(engine=demo, store=TakeStore(tmp_path / "takes"))


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _panel(state, folder, hub=None, lm=None):
    from workbench.weights import WeightsPanel

    panel = WeightsPanel(state, checkpoints_dir=folder, gpu_gib=0, hub=hub)
    if lm:
        panel.lm.value = lm
    return panel


def test_offline_it_lists_what_is_missing_and_says_how_to_copy_it(state, source, tmp_path):
    folder = tmp_path / "checkpoints"
    panel = _panel(state, folder)
    text = panel.summary.value
    for name in MAIN:
        assert f"<code>{name}/</code>" in text
    assert text.count("missing") == 3 and "about 6.3 GB" in text and " disk (free: " in text
    note = panel.offline_note.value
    assert "No network" in note and "HF_HUB_OFFLINE=1" in note and str(folder) in note
    assert "hf download ACE-Step/Ace-Step1.5 --include &#x27;acestep-v15-turbo/*&#x27;" in note
    assert panel.download_button.disabled and panel.load_button.disabled
    panel.download()
    assert panel.job is None and "no network" in panel.status.value

    for name in MAIN:  # copied by hand, as the paragraph says
        shutil.copytree(source / name, folder / name, ignore=shutil.ignore_patterns("*.py"))
    panel.refresh()
    assert "Everything is here" in panel.summary.value and panel.offline_note.value == ""
    assert panel.download_button.disabled and not panel.load_button.disabled
    old = state.engine
    panel.load_button.click()
    panel.job.wait(120)
    assert panel.job.state == "done", panel.status.value
    assert state.engine is not old and state.engine.models.paths["checkpoints"] == str(folder)
    assert state.engines == {"acestep-v15-turbo": state.engine}
    assert "loaded acestep-v15-turbo" in panel.status.value and panel.load_button.disabled


def test_online_it_shows_hub_sizes_downloads_with_progress_and_reloads_engine_and_planner(
        state, source, tmp_path, online):
    from workbench import TakeBrowser  # noqa: F401  (the package imports with the panel)

    folder = tmp_path / "checkpoints"
    shutil.copytree(source / "vae", folder / "vae")
    hub = FakeHub(source)
    panel = _panel(state, folder, hub, lm=LM_FOLDER)
    assert panel.sizes_checked.wait(30)
    expected = sum(p.stat().st_size for name in ("acestep-v15-turbo", "Qwen3-Embedding-0.6B", LM_FOLDER)
                   for p in (source / name).rglob("*") if p.is_file() and p.suffix != ".py")
    assert panel.missing_bytes == expected and "about" not in panel.summary.value
    assert panel.offline_note.value == "" and not panel.download_button.disabled
    assert panel.download_button.description.startswith("Download ")

    seen = []
    panel.progress.observe(lambda change: seen.append(change["new"]), names="value")
    state.planner = None
    old = state.engine
    panel.download_button.click()
    assert panel.job.wait(120) and panel.job.state == "done", panel.status.value
    assert seen == sorted(seen) and len(set(seen)) > 3 and panel.progress.value == 1000
    assert state.engine is not old and state.engine.models.paths["checkpoints"] == str(folder)
    assert state.planner is not None and state.planner.name == LM_FOLDER and state.planner.engine is state.engine
    assert "Everything is here" in panel.summary.value
    assert panel.download_button.disabled and panel.load_button.disabled and panel.cancel_button.disabled
    assert "vae/config.json" not in hub.fetched  # it was there already


class _HeldHub(FakeHub):
    """Stops after the first chunk until the test lets it go, so Cancel lands mid-file."""

    def __init__(self, source):
        super().__init__(source)
        self.first_chunk, self.go_on = threading.Event(), threading.Event()

    def fetch(self, file, on_bytes, cancel):
        def held(n):
            on_bytes(n)
            if not self.first_chunk.is_set():
                self.first_chunk.set()
                self.go_on.wait(30)

        super().fetch(file, held, cancel)


def test_cancel_stops_the_download_and_leaves_the_engine_and_buttons_usable(state, source, tmp_path, online):
    hub = _HeldHub(source)
    panel = _panel(state, tmp_path / "checkpoints", hub)
    old = state.engine
    panel.download_button.click()
    assert hub.first_chunk.wait(30)
    assert not panel.cancel_button.disabled and panel.download_button.disabled
    panel.cancel_button.click()
    hub.go_on.set()
    assert panel.job.wait(30) and panel.job.state == "cancelled"
    assert "download cancelled" in panel.status.value and hub.sent <= 2 * FakeHub.CHUNK
    assert state.engine is old and state.job is None
    assert not panel.download_button.disabled and panel.cancel_button.disabled

    again = FakeHub(source)  # the next Download finishes the job
    panel.hub = again
    panel.download_button.click()
    assert panel.job.wait(120) and panel.job.state == "done", panel.status.value
    assert state.engine is not old


def test_a_download_that_does_not_fit_on_the_disk_is_refused(state, tmp_path, monkeypatch, online, source):
    import workbench.weights as weights

    monkeypatch.setattr(weights, "disk_space", lambda folder: (10_000_000, 1_000_000))
    panel = _panel(state, tmp_path / "checkpoints", FakeHub(source))
    assert "not enough space" in panel.summary.value
    panel.download()
    assert panel.job is None and "not enough disk space" in panel.status.value and "1.0 MB are free" in panel.status.value


def test_a_hidden_panel_asks_the_hub_only_when_shown(state, source, tmp_path, online):
    from workbench.weights import WeightsPanel

    hub = FakeHub(source)
    panel = WeightsPanel(state, checkpoints_dir=tmp_path / "checkpoints", gpu_gib=0, hub=hub, visible=False)
    panel.dit.value = "acestep-v15-base"
    assert hub.listed == [] and "about" in panel.summary.value
    panel.set_visible(True)
    assert panel.sizes_checked.wait(30) and hub.listed and "about" not in panel.summary.value


def test_no_answer_from_the_hub_turns_into_the_offline_paragraph(state, tmp_path, online):
    class Unreachable:
        def list_files(self, repo_id):
            raise socket.gaierror(-2, "Name or service not known")

        def fetch(self, file, on_bytes, cancel):
            raise AssertionError("nothing is fetched without network")

    panel = _panel(state, tmp_path / "checkpoints", Unreachable())
    assert panel.sizes_checked.wait(30)
    assert "No network" in panel.offline_note.value and "HF_HUB_OFFLINE" not in panel.offline_note.value
    assert panel.download_button.disabled and "about 6.3 GB" in panel.summary.value


def test_in_the_workbench_loaded_weights_reach_every_tab_and_the_header(source, tmp_path):
    from acestep_engine import Engine, TakeStore
    from workbench import Workbench, close_tree

    wb = Workbench(Engine.demo(device="cpu"), TakeStore(tmp_path / "takes"))
    section, panel = wb.weights_section, wb.weights
    assert section.selected_index is None and not panel.visible and "Demo checkpoint" in wb.header.banner.value
    folder = tmp_path / "checkpoints"
    for name in MAIN:
        shutil.copytree(source / name, folder / name, ignore=shutil.ignore_patterns("*.py"))
    config = folder / "acestep-v15-turbo" / "config.json"  # as the real weights: not marked random
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items()
                                  if k != "acestep_workbench_random_weights"}))
    panel.folder.value = str(folder)
    section.selected_index = 0
    assert panel.visible and "Everything is here" in panel.summary.value
    panel.load_button.click()
    assert panel.job.wait(120) and panel.job.state == "done", panel.status.value
    assert wb.engine is wb.state.engine and wb.engine.models.paths["checkpoints"] == str(folder)
    assert wb.header.banner.value == "" and "demo" not in wb.header.models.value  # the header follows
    wb.generate_panel.batch_size.value = 1
    wb.editor.set_blueprint(wb.editor.blueprint.replace(duration=10.0))
    wb.generate_panel.generate_button.click()
    take, = wb.generate_panel.job.result(120)
    assert take.model["checkpoints"] == str(folder)  # Generate runs on the new weights
    assert wb.tracks.engine is wb.engine or wb.tracks.engine.models.paths["checkpoints"] == str(folder)
    close_tree(wb.widget)


def test_before_a_download_it_says_how_much_of_the_disk_the_weights_take(state, tmp_path, monkeypatch):
    import workbench.weights as weights

    monkeypatch.setattr(weights, "disk_space", lambda folder: (78_000_000_000, 61_000_000_000))  # Colab's disk
    panel = _panel(state, tmp_path / "checkpoints")
    text = panel.summary.value
    # about 4.79 + 0.34 + 1.2 GB of 78 GB: 8 %; 61 GB free now, 54.7 GB after
    assert "To download: <b>about 6.3 GB</b>, 8 % of this 78.0 GB disk (free: 61.0 GB now, 54.7 GB after" in text
    assert str(tmp_path / "checkpoints") in text and "not enough space" not in text


def test_in_colab_save_to_puts_the_weights_on_the_runtime_disk_or_a_mounted_drive(state, tmp_path, monkeypatch):
    import workbench.weights as weights

    runtime_disk, drive = tmp_path / "content" / "checkpoints", tmp_path / "drive" / "MyDrive" / "acestep"
    monkeypatch.setattr(weights, "COLAB_CHECKPOINTS", runtime_disk)
    monkeypatch.setattr(weights, "DRIVE_CHECKPOINTS", drive)
    mounted = []
    monkeypatch.setattr(weights, "drive_mounted", lambda: bool(mounted))
    outside = weights.WeightsPanel(state, checkpoints_dir=runtime_disk, gpu_gib=0, colab=False)
    assert outside.location not in outside.widget.children
    panel = weights.WeightsPanel(state, checkpoints_dir=runtime_disk, gpu_gib=0, colab=True)
    assert panel.location in panel.widget.children and panel.location.value == str(runtime_disk)
    panel.location.value = str(drive)  # not mounted yet: nothing moves, the status says how to mount it
    assert panel.folder.value == str(runtime_disk) and panel.location.value == str(runtime_disk)
    assert "Google Drive is not mounted" in panel.status.value and "drive.mount" in panel.status.value
    mounted.append(True)
    panel.location.value = str(drive)
    assert panel.folder.value == str(drive) and panel.root == drive and str(drive) in panel.summary.value
    panel.location.value = str(runtime_disk)
    assert panel.root == runtime_disk
