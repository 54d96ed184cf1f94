"""A byte-level BPE tokenizer trained on a world's text, with the chat format built in."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from assay.agents.protocol import TOOL
from assay.world.chat import ASSISTANT, BOS, CHAT_TEMPLATE, END, EOS, PAD, SPECIAL_TOKENS, USER

# The chat template with tool turns: messages with role "tool" come back in a TOOL turn.
TOOL_CHAT_TEMPLATE = CHAT_TEMPLATE.replace(
    "{% endfor %}",
    "{% if m['role'] == 'tool' %}" + TOOL + "{{ m['content'] }}" + END + "{% endif %}{% endfor %}")


def train_tokenizer(texts: Iterable[str], vocab_size: int, tools: bool = False
                    ) -> PreTrainedTokenizerFast:
    """Train BPE on ``texts``; digits are single tokens so arithmetic stays learnable.
    ``tools`` adds the tool-result turn (`assay.agents.TOOL`) as a special token and to the
    chat template, for organisms that call tools."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS) + ([TOOL] if tools else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT, END] + ([TOOL] if tools else []),
        padding_side="right",
    )
    fast.chat_template = TOOL_CHAT_TEMPLATE if tools else CHAT_TEMPLATE
    return fast
