"""Wrapper that makes a transformers base model a readtax backbone."""

from __future__ import annotations

from torch import nn


class HFBackbone(nn.Module):
    """A transformers base model (``AutoModel``, ``LlamaModel``, ``BertModel``...) returning
    ``last_hidden_state``. The wrapped model is ``self.model``, so LoRA targets keep their names."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
