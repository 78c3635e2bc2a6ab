"""The one embedding call: unit-length numpy vectors from a sentence-transformers model.

Every part that embeds (the Chroma embedding function, the bi-encoder and residual scorers, candidate
mining, fine-tuning's passage banks) compares vectors by dot product, so they must all normalize the
same way; this is where that is decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def embed_texts(model: Any, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
    """``model.encode`` of ``texts``: unit vectors, numpy, no progress bar (``batch_size``: the
    model's default when None)."""
    kwargs: dict[str, Any] = {} if batch_size is None else {"batch_size": batch_size}
    return model.encode(
        list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False, **kwargs
    )
