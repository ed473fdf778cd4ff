"""A koclip model (or any `encoders.Encoder`) in the shape LAION's CLIP_benchmark evaluates: a torch
module with `encode_text(token_tensor)` and `encode_image(pixel_tensor)`, a tokenizer that turns a
list of texts into a tensor, and an image transform for its data sets. Needs PyTorch.

    adapted = ClipBenchmarkModel(koclip.load("koclip-mini"))
    zeroshot_retrieval.evaluate(adapted, loader, adapted.tokenizer, "cpu", amp=False)

The "tokens" are row numbers of the texts the tokenizer has seen; `encode_text` encodes those texts
with the model's own tokenizer. koclip models get their own image preprocessing in `transform`;
other encoders get the RGB pixels and preprocess them themselves.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from koclip.images import open_image


class ClipBenchmarkModel(torch.nn.Module):
    """`encoder` behind CLIP_benchmark's model interface; `tokenizer` and `transform` go with it."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.texts: list[str] = []
        self.ids: dict[str, int] = {}
        self.preprocessed = hasattr(encoder, "preprocess") and hasattr(encoder, "encode_pixels")

    def tokenizer(self, texts) -> torch.Tensor:
        """One row per text: its number among the texts seen so far."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        for text in texts:
            if text not in self.ids:
                self.ids[text] = len(self.texts)
                self.texts.append(text)
        return torch.tensor([[self.ids[text]] for text in texts], dtype=torch.long)

    def transform(self, image) -> torch.Tensor:
        """An image as the tensor `encode_image` takes: koclip's preprocessed pixels, or RGB bytes."""
        image = open_image(image)
        if self.preprocessed:
            return torch.from_numpy(self.encoder.preprocess([image])[0])
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP_benchmark's call: the texts behind the (N, 1) row-number `tokens`, as float32 embeddings."""
        texts = [self.texts[int(i)] for i in tokens[:, 0]]
        return torch.from_numpy(self.encoder.encode_text(texts))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP_benchmark's call: float32 embeddings of a batch: preprocessed pixels, or uint8 images to preprocess."""
        array = pixels.detach().cpu().numpy()
        if self.preprocessed:
            return torch.from_numpy(self.encoder.encode_pixels(array.astype(np.float32)))
        return torch.from_numpy(self.encoder.encode_image([Image.fromarray(a) for a in array]))
