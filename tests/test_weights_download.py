"""Downloading real weights file by file (acestep_engine.models.hub): exact sizes, byte progress, Cancel,
resume, and the short offline error. A fake hub serves the tiny official-layout set (no network)."""

import threading
from pathlib import Path

import pytest

from acestep_engine.errors import GenerationCancelled
from acestep_engine.models import LM_FOLDER, hub as hubmod, write_lm
from acestep_engine.models.checkpoints import MAIN_REPO, DownloadError


class FakeHub:
    """Serves `source` (a tiny checkpoint set) as the hub would: the main repository holds turbo, VAE,
    text encoder and the 1.7B LM folders; other variants and LMs have repositories of their own."""

    CHUNK = 4096

    def __init__(self, source: Path, stop_after_bytes: int | None = None, cancel: threading.Event | None = None):
        self.source, self.listed, self.fetched = source, [], []
        self.stop_after_bytes, self.cancel_to_set, self.sent = stop_after_bytes, cancel, 0

    def _repo_root(self, repo_id):
        return self.source if repo_id == MAIN_REPO else self.source / repo_id.split("/")[1]

    def list_files(self, repo_id):
        self.listed.append(repo_id)
        root = self._repo_root(repo_id)
        files = {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}
        files["handler.py" if repo_id != MAIN_REPO else "acestep-v15-turbo/handler.py"] = 10  # never fetched
        return files

    def fetch(self, file, on_bytes, cancel):
        self.fetched.append(file.filename)
        assert not file.filename.endswith(".py")
        data = (self._repo_root(file.repo_id) / file.filename).read_bytes()
        file.path.parent.mkdir(parents=True, exist_ok=True)
        with open(file.path, "wb") as out:
            for i in range(0, len(data), self.CHUNK):
                if cancel.is_set():
                    raise GenerationCancelled("download cancelled")
                out.write(data[i:i + self.CHUNK])
                on_bytes(len(data[i:i + self.CHUNK]))
                self.sent += len(data[i:i + self.CHUNK])
                if self.stop_after_bytes is not None and self.sent >= self.stop_after_bytes:
                    self.cancel_to_set.set()


@pytest.fixture(scope="module")
def hub_source(tiny_dir):
    write_lm(tiny_dir / LM_FOLDER)
    return tiny_dir


def test_plan_lists_exact_sizes_of_only_the_missing_files(hub_source, tmp_path):
    import shutil

    shutil.copytree(hub_source / "vae", tmp_path / "vae")
    hub = FakeHub(hub_source)
    plan = hubmod.plan_download(tmp_path, dit="acestep-v15-base", lm=LM_FOLDER, hub=hub)
    assert [c.folder for c in plan.missing] == ["acestep-v15-base", "Qwen3-Embedding-0.6B", LM_FOLDER]
    assert plan.exact and not any(f.filename.endswith(".py") for f in plan.files)
    assert {f.component for f in plan.files} == {"acestep-v15-base", "Qwen3-Embedding-0.6B", LM_FOLDER}
    expected = sum(p.stat().st_size for folder in ("acestep-v15-base", "Qwen3-Embedding-0.6B", LM_FOLDER)
                   for p in (hub_source / folder).rglob("*") if p.is_file() and p.suffix != ".py")
    assert plan.missing_bytes == expected  # the layout's code files (as upstream ships them) are skipped
    base = next(f for f in plan.files if f.filename == "model.safetensors" and f.component == "acestep-v15-base")
    assert base.repo_id == "ACE-Step/acestep-v15-base" and base.local_dir == tmp_path / "acestep-v15-base"
    assert set(hub.listed) == {MAIN_REPO, "ACE-Step/acestep-v15-base", f"ACE-Step/{LM_FOLDER}"}


def test_fetch_reports_bytes_and_leaves_a_loadable_set(hub_source, tmp_path):
    from acestep_engine import Engine

    hub = FakeHub(hub_source)
    plan = hubmod.plan_download(tmp_path, dit="acestep-v15-turbo", hub=hub)
    reports = []
    after = hubmod.fetch(plan, hub, progress=lambda done, total, f: reports.append((done, total)))
    assert after.complete and reports[-1] == (plan.missing_bytes, plan.missing_bytes)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)  # only forward
    assert len(reports) > len(plan.files)  # per chunk, not per file
    engine = Engine.from_pretrained(tmp_path, dit="acestep-v15-turbo", device="cpu")
    assert engine.variant.name == "acestep-v15-turbo" and Path(engine.models.paths["checkpoints"]) == tmp_path
    assert hubmod.plan_download(tmp_path, hub=hub).complete


def test_cancel_stops_within_a_chunk_and_the_next_download_resumes(hub_source, tmp_path):
    cancel = threading.Event()
    hub = FakeHub(hub_source, stop_after_bytes=3 * FakeHub.CHUNK, cancel=cancel)
    plan = hubmod.plan_download(tmp_path, hub=hub)
    with pytest.raises(GenerationCancelled):
        hubmod.fetch(plan, hub, cancel=cancel)
    assert hub.sent <= 4 * FakeHub.CHUNK
    assert not hubmod.plan_download(tmp_path, online=False).complete

    again = FakeHub(hub_source)
    rest = hubmod.plan_download(tmp_path, hub=again)
    assert len(rest.files) < len(plan.files) or rest.missing_bytes < plan.missing_bytes
    assert hubmod.fetch(rest, again).complete


def test_offline_plan_keeps_known_sizes_and_says_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError) as err:
        hubmod.plan_download(tmp_path, lm="acestep-5Hz-lm-1.7B")  # the real client, offline
    assert err.value.offline and str(err.value).startswith("No network")
    plan = hubmod.plan_download(tmp_path, lm="acestep-5Hz-lm-1.7B", online=False)
    assert not plan.exact and plan.missing_bytes == 4_790_000_000 + 337_000_000 + 1_200_000_000 + 3_500_000_000
    assert hubmod.format_bytes(plan.missing_bytes) == "9.8 GB"


def test_hub_fetch_counts_bytes_through_huggingface_hubs_progress_bar_and_cancels(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_hf_hub_download(repo_id, filename, *, local_dir, token=None, tqdm_class=None, **kwargs):
        calls.append((repo_id, filename, Path(local_dir)))
        bar = tqdm_class(unit="B", unit_scale=True, total=10_000, initial=1_000, desc=filename)
        with bar:
            for _ in range(9):
                bar.update(1_000)
                bar.update_transfer(1_000)  # newer huggingface_hub also reports network bytes
        return str(Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_hub_download)
    counted, cancel = [], threading.Event()
    file = hubmod.RemoteFile("vae", MAIN_REPO, "vae/config.json", tmp_path, 10_000)
    hubmod.Hub().fetch(file, counted.append, cancel)
    assert sum(counted) == 10_000 and counted[0] == 1_000  # the resumed part first
    assert calls == [(MAIN_REPO, "vae/config.json", tmp_path)]

    counted.clear()
    cancel.set()
    with pytest.raises(GenerationCancelled):
        hubmod.Hub().fetch(file, counted.append, cancel)
    assert sum(counted) == 1_000


def test_free_bytes_and_sizes_are_readable(tmp_path):
    assert hubmod.free_bytes(tmp_path / "not" / "yet") > 0
    assert hubmod.format_bytes(337_000_000) == "337.0 MB" and hubmod.format_bytes(512) == "512 B"
