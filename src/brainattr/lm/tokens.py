"""Words and tokens: which tokens make each word, the start of every window (BOS or a fixed start token), context limits."""
from __future__ import annotations

import numpy as np


def word_token_spans(words, tokenizer):
    """Tokenize the text once and find the tokens of every word from character offsets.

    The text is the words joined by single spaces. A token belongs to the word that holds the
    token's last character (its first character may be the space before the word, as in
    byte-level BPE ``Ġword`` tokens); a whitespace-only token belongs to the next word. Tokens
    are never decoded, so this works for byte-level (``Ġ``) and SentencePiece (``▁``) tokenizers.

    Parameters
    ----------
    words : sequence of str, length n_words
    tokenizer : transformers.PreTrainedTokenizerFast

    Returns
    -------
    token_ids : array of int64, shape (n_tokens,)
        Token ids of the whole text, without special tokens.
    spans : array of int, shape (n_words, 2)
        ``[start, end)`` token indices of each word.
    """
    words = [str(w) for w in words]
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("word alignment needs a fast tokenizer (offset mapping); load the model's "
                        "tokenizer with use_fast=True.")
    text = " ".join(words)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    token_word = np.empty(len(enc["input_ids"]), dtype=int)
    for k, (a, b) in enumerate(enc["offset_mapping"]):
        pos = max(b - 1, a)
        while pos < len(text) - 1 and text[pos].isspace():
            pos += 1  # a bare-space token starts the next word
        token_word[k] = np.searchsorted(starts, pos, side="right") - 1
    if np.any(np.diff(token_word) < 0):
        raise ValueError("tokens are not in word order; the tokenizer's offsets look wrong.")
    spans = np.zeros((len(words), 2), dtype=int)
    spans[:, 0] = np.searchsorted(token_word, np.arange(len(words)), side="left")
    spans[:, 1] = np.searchsorted(token_word, np.arange(len(words)), side="right")
    empty = np.flatnonzero(spans[:, 1] <= spans[:, 0])
    if empty.size:
        raise ValueError(f"{empty.size} word(s) got no token, first {words[empty[0]]!r}; words must be non-empty.")
    return np.asarray(enc["input_ids"], dtype=np.int64), spans


#: Tokens tried, in order, as the fixed start token of a model whose tokenizer adds no BOS: the
#: document separator such models were pre-trained with (SmolLM2, GPT-NeoX/Mamba, Qwen2, GPT-2).
START_TOKEN_CANDIDATES = ("<|endoftext|>",)


def tokenizer_prefix(tokenizer):
    """Token ids the tokenizer itself puts before a text (e.g. a BOS token), list of int; empty if none.

    Found by encoding a short text with and without special tokens: whatever the tokenizer puts
    before the plain tokens is the prefix (Gemma's ``<bos>``, Llama-3's ``<|begin_of_text|>``,
    Mistral/Zamba2's ``<s>``; nothing for GPT-2, GPT-NeoX/Mamba, Qwen2 or SmolLM2). Special tokens a
    tokenizer appends (an EOS) are not part of it.
    """
    for text in ("a", "the"):
        plain = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        full = list(tokenizer(text)["input_ids"])
        for start in range(len(full) - len(plain) + 1):
            if plain and full[start:start + len(plain)] == plain:
                return full[:start]
    # the plain tokens changed with special tokens on (e.g. a SentencePiece prefix space): keep the BOS
    bos = getattr(tokenizer, "bos_token_id", None)
    full = list(tokenizer("a")["input_ids"])
    return [bos] if bos is not None and full and full[0] == bos else []


def start_token_id(tokenizer):
    """The fixed start token given to a model whose tokenizer adds no BOS, int.

    The first of :data:`START_TOKEN_CANDIDATES` in the vocabulary, else the tokenizer's BOS token,
    else its EOS token. Without it, the first word of every window would be the sequence's first
    token, which causal LMs use as an attention sink: it would absorb attribution because of where
    it sits, not what it says, and which word that is changes from window to window.
    """
    vocab = tokenizer.get_vocab()
    for token in START_TOKEN_CANDIDATES:
        if token in vocab:
            return int(vocab[token])
    for token_id in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if token_id is not None:
            return int(token_id)
    raise ValueError("the tokenizer has neither a BOS nor an EOS token, nor '<|endoftext|>': brainattr cannot "
                     "give its windows a fixed start token; set tokenizer.bos_token before loading.")


def special_prefix(tokenizer):
    """Token ids every window starts with, list of int: the tokenizer's own prefix, or a fixed start token.

    Models whose tokenizer adds a BOS get it (:func:`tokenizer_prefix`); the others get
    :func:`start_token_id`, so no model reads a window whose first word is also its first token.
    Feature extraction, attribution, masking and Integrated Gradients all read windows through this
    prefix; it is never attributed (IG keeps it at its real embedding) and never scored as a word.
    """
    return tokenizer_prefix(tokenizer) or [start_token_id(tokenizer)]


def check_context_fits(lm, n_tokens, context):
    """Raise ValueError when windows of ``n_tokens`` tokens exceed the model's positions."""
    if lm.max_positions is not None and n_tokens > lm.max_positions:
        raise ValueError(f"a context of {context} words needs windows of up to {n_tokens} tokens, but {lm.name} "
                         f"accepts at most {lm.max_positions} positions; lower `context` (or `stride`).")
