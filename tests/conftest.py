"""Shared test fixtures: real GLUE data location, tiny sizes, CPU only."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _glue_dir() -> pathlib.Path:
    env = os.environ.get("GLUE_DIR")
    if env:
        return pathlib.Path(env)
    return REPO.parent / "shared" / "data" / "glue"


@pytest.fixture(scope="session")
def glue_dir() -> pathlib.Path:
    """The classic GLUE directory (GLUE_DIR, else ../shared/data/glue next to the repo)."""
    path = _glue_dir()
    if not (path / "SST-2").is_dir():
        pytest.skip(f"GLUE data not found at {path}; set GLUE_DIR")
    return path


@pytest.fixture(scope="session")
def minilm_fixture_path() -> pathlib.Path:
    """PyTorch reference outputs of all-MiniLM-L6-v2 (parity target)."""
    path = pathlib.Path(
        os.environ.get(
            "TKD_MINILM_FIXTURE", REPO.parent / "shared" / "fixtures" / "minilm_reference.npz"
        )
    )
    if not path.exists():
        pytest.skip(f"reference fixture not found at {path}")
    return path
