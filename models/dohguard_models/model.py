"""The character-level CNN that scores registered domains.

Embedding -> parallel 1-D convolutions of widths 2..5 (character n-gram detectors) ->
global max pool -> two dense layers -> one logit. Convolutions are unpadded ("valid"), so a
window that lies entirely in the left padding always gives the same value. That lets the
forward pass drop the padding columns no row of the batch needs (:func:`trim_padding`,
keeping one full window of padding) and still compute exactly what the full 64-column input
gives. The trimming is written in tensor operations, so it is exported into the ONNX graph
too: a typical 16-character name costs a third of the full-width convolution, in training
and in the scorer.

:class:`ScoreHead` wraps the network for export: it applies the sigmoid, so the ONNX output
``score`` is a probability as the model card promises.
"""

from __future__ import annotations

import torch
from torch import nn

from .encoding import MAX_LENGTH, PAD_ID, VOCAB_SIZE


class CharCNN(nn.Module):
    def __init__(
        self,
        embed_dim: int = 32,
        channels: int = 96,
        widths: tuple[int, ...] = (2, 3, 4, 5),
        hidden: int = 96,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.embed = nn.Embedding(VOCAB_SIZE, embed_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, channels, w) for w in widths)
        self.head = nn.Sequential(
            nn.Linear(channels * len(widths), hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    @property
    def max_width(self) -> int:
        return max(self.widths)

    def forward(self, ids: torch.Tensor, trim: bool = True) -> torch.Tensor:
        """``ids``: ``[batch, length]`` int64 -> logits ``[batch]``."""
        if trim:
            ids = trim_padding(ids, self.max_width)
        x = self.embed(ids).transpose(1, 2)  # [batch, embed, length]
        pooled = [torch.relu(conv(x)).amax(dim=2) for conv in self.convs]
        return self.head(torch.cat(pooled, dim=1)).squeeze(1)


class ScoreHead(nn.Module):
    """Export wrapper: probabilities instead of logits."""

    def __init__(self, net: CharCNN) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(input_ids))


def trim_padding(ids: torch.Tensor, max_width: int) -> torch.Tensor:
    """Drop left-padding columns that no row needs, keeping ``max_width`` pad columns
    before the longest name so that the pure-padding window still exists (see module doc).
    Tensor operations only (no Python ints), so tracing exports a dynamic ``Slice``."""
    used = (ids != PAD_ID).to(torch.int64).amax(dim=0)  # [length]: 1 where any row has a char
    first = torch.argmax(used)  # first used column (0 when all padding: keep everything)
    start = torch.clamp(first - max_width, min=0)
    return ids[:, start:]


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


__all__ = ["CharCNN", "ScoreHead", "trim_padding", "parameter_count", "MAX_LENGTH"]
