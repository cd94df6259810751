"""The intent classifier's training and validation examples, built from a config.

The data file, split by intent; then, as configured, generated small talk and
greeting-opened copies (``small_talk.py``), paraphrase-style rewrites and casual
requests (``augment.py``) and out-of-scope text (``out_of_scope.py``). Rewrites of
training rows join training and rewrites of validation rows join validation, so no
source sentence is on both sides. The paraphrase test set is read only to remove
its lines (and texts containing them) from both (``decontaminate.py``).
"""

from __future__ import annotations

import random

from core.training.augment import augment, casual_examples
from core.training.config import IntentTrainConfig
from core.training.data import Example, load_examples, stratified_split
from core.training.decontaminate import decontaminate, held_out_texts
from core.training.out_of_scope import load_oos
from core.training.small_talk import generate_small_talk, with_openers


def split_examples(cfg: IntentTrainConfig) -> tuple[list[Example], list[Example]]:
    """(train, validation) with small talk, rewrites, casual requests and out-of-scope
    text added as configured. Rewrites of training rows join training and rewrites of
    validation rows join validation, so the two never share a source sentence. Lines
    of the evaluation sets are removed from both (``decontaminate.py``)."""
    examples = load_examples(cfg.train_file)
    if cfg.validation_file is not None:
        train, val = examples, load_examples(cfg.validation_file)
    else:
        train, val = stratified_split(examples, cfg.validation_split, seed=cfg.seed)
    if cfg.limit and cfg.limit < len(train):  # stratified subsample, same seed same rows
        train = stratified_split(train, 1 - cfg.limit / len(train), seed=cfg.seed)[0][: cfg.limit]
    share = cfg.validation_split if cfg.validation_file is None else 0.2
    if cfg.small_talk:
        chat_train, chat_val = stratified_split(generate_small_talk(seed=cfg.seed), share, seed=cfg.seed)
        chat_train = chat_train[: max(cfg.limit // 8, 3) if cfg.limit else None]
        train += with_openers(train, seed=cfg.seed) + chat_train
        val += with_openers(val, seed=cfg.seed + 1) + chat_val
    if cfg.augment:
        train += augment(train, cfg.augment, seed=cfg.seed)
        val += augment(val, 1.0, seed=cfg.seed + 1)
    if cfg.casual:
        intents = {e.intent for e in train}
        casual_train, casual_val = stratified_split(
            casual_examples(intents, cfg.casual, cfg.seed), 0.2, cfg.seed
        )
        train += casual_train
        val += casual_val
    if cfg.oos_examples:
        oos = load_oos(cfg.oos_examples, {e.intent for e in train}, cfg.seed)
        random.Random(cfg.seed).shuffle(oos)
        n_val = len(oos) if cfg.oos_method == "threshold" else max(1, round(len(oos) * share))
        val += oos[:n_val]
        if cfg.oos_method in ("class", "both"):
            train += oos[n_val:][: max(cfg.limit // 8, 1) if cfg.limit else None]
    held_out = held_out_texts()
    return decontaminate(train, held_out), decontaminate(val, held_out)
