"""An offline word-level tokenizer for tiny models: built in memory from the words a job will see."""

from __future__ import annotations

from collections.abc import Iterable


PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE)


def build_word_tokenizer(vocabulary: Iterable[str], model_max_length: int = 512):
    """A `PreTrainedTokenizerFast` whose vocabulary is the special tokens plus `vocabulary`, sorted.

    Lower-cases, splits like `text.words`, prepends `<s>`; unknown words map to `<unk>`.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in sorted(set(vocabulary) - set(SPECIAL_TOKENS)):
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()  # the split of text.WORD_PATTERN
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    # Without this, "<image>" would be lower-cased and split into "<", "image", ">".
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE},
        model_max_length=model_max_length,
        padding_side="left",
        clean_up_tokenization_spaces=True,  # decode "warm palette, dim lighting", not "warm palette , dim lighting"
    )
