"""The moderation embedder loads straight in its dtype, with the weights a float32 load cast afterwards has."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelmill.moderation import embedding


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_direct_load_gives_the_weights_and_embeddings_of_load_then_cast(monkeypatch, dtype):
    from transformers import AutoModel

    try:
        folder = embedding.default_model_dir()
    except embedding.EmbeddingModelMissing:
        pytest.skip("the embedding model is not installed")
    monkeypatch.setenv("PIXELMILL_MODERATION_DTYPE", dtype)
    direct = embedding.Embedder(folder)
    cast = AutoModel.from_pretrained(str(folder), local_files_only=True).eval().to(getattr(torch, dtype))
    a, b = direct.model.state_dict(), cast.state_dict()
    assert a.keys() == b.keys()
    assert all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    texts = ["a large red circle on a blue background", "a small green cross on a white background"]
    first = direct.encode(texts)
    direct.model = cast
    assert np.array_equal(first, direct.encode(texts))
