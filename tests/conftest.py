"""Shared test fixtures: where the real sample data lives, and GPU detection."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TOPOCLEAR_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """Path of a sample under ../shared/data; skips the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data not found: {path} (expected ../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"sample data folder not found: {SHARED_DATA}")
    return SHARED_DATA


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")


@pytest.fixture(scope="session")
def topoclear_provider(qgis_app, qgis_processing):
    """Processing initialised with the native algorithms and the TopoClear provider registered."""
    from qgis.core import QgsApplication

    from topoclear.processing_provider.provider import TopoClearProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("topoclear")
    if provider is None:
        provider = TopoClearProvider()
        registry.addProvider(provider)
    return provider


@pytest.fixture()
def run_alg(topoclear_provider):
    """``run_alg(alg_id, **params)``: ``processing.run`` with a fresh context; raises on failure."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    def run(alg_id, feedback=None, **params):
        context = QgsProcessingContext()
        return processing.run(alg_id, params, context=context, feedback=feedback or QgsProcessingFeedback())

    return run
