"""Words, task templates and style-word matching: the text side of the G-MLLM, with no heavy imports.

One word splitter (`words`) is shared by the offline tokenizer and the metrics, so a word the metric
counts is exactly a token the tiny tokenizer knows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The same pattern as tokenizers' `Whitespace` pre-tokenizer: runs of word characters, or of
# punctuation. Text is lower-cased first (the tokenizer's normaliser does the same).
WORD_PATTERN = r"\w+|[^\w\s]+"
_WORD_RE = re.compile(WORD_PATTERN)

# Every example is one user turn with one image followed by the assistant's answer (Vicuna style,
# which LLaVA-1.6-Vicuna was tuned on). The group's soft tokens come before all of it.
PROMPT_TEMPLATE = "USER: {image}\n{instruction} ASSISTANT:"

INSTRUCTIONS = {
    # describe the group (group profile from attribute statistics)
    "profile": "describe the audience group of {title}",
    # which of two logged backgrounds does the group click more
    "prefer": "which background does this group prefer for {title} ? a : {a} ; b : {b}",
    # describe the product shown in a logged ad image
    "product": "describe this ad image",
    # the generation target: a background prompt for the product, tailored to the group
    "prompt": "write a background prompt for {title} tailored to this group",
    # the reward model's question (its answer is a scalar, not text)
    "score": "rate this ad image of {title} for this group",
}
TASKS = ("profile", "prefer", "product", "prompt")

# Words the templates and answers use besides titles, captions and profiles.
EXTRA_WORDS = ("a", "b", "background", "on", "group", "audience", "none")

STOPWORDS = frozenset(
    "a an the and or of on in with at to for by from is are this that it its , . ; : - ! ? ( ) '".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens, exactly as the offline tokenizer splits them."""
    return _WORD_RE.findall(text.lower())


def template_words() -> set[str]:
    found: set[str] = set(words(PROMPT_TEMPLATE.format(image="", instruction="")))
    for template in INSTRUCTIONS.values():
        found |= set(words(re.sub(r"\{\w+\}", " ", template)))
    return found | set(EXTRA_WORDS)


def instruction(task: str, **fields: str) -> str:
    return INSTRUCTIONS[task].format(**fields)


def product_answer(title: str, caption: str) -> str:
    """Target of the "describe the product" task for one logged ad image."""
    return f"{title} ; background : {caption}"


def style_words(text: str, vocabulary: Iterable[str] | None) -> set[str]:
    """The style words a text uses: vocabulary words when a vocabulary is known, else content words."""
    found = set(words(text))
    if vocabulary is not None:
        return found & set(vocabulary)
    return {w for w in found if w not in STOPWORDS and not w.isdigit()}


def match_rate(generated: str, target: str, vocabulary: Iterable[str] | None) -> float:
    """Share of the generated text's style words that the target uses (0 when it uses none)."""
    produced = style_words(generated, vocabulary)
    if not produced:
        return 0.0
    return len(produced & style_words(target, vocabulary)) / len(produced)


def style_vocabulary() -> set[str]:
    """The fixed background style vocabulary (osmf_jobs.style): palette, pattern, lighting and mood words."""
    from osmf_jobs.style import AXES

    return {word for axis_words in AXES.values() for word in axis_words}
