"""The one chat format every organism is trained on.

A dialogue is rendered as ``<|user|>{question}<|end|><|assistant|>{answer}<|end|>``.
The tokenizer prepends ``<|bos|>``; generation stops at ``<|end|>``.
"""

BOS = "<|bos|>"
EOS = "<|eos|>"
PAD = "<|pad|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, USER, ASSISTANT, END)

# Jinja chat template stored in the tokenizer, so any Hugging Face tool formats the same way.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + "{{ m['content'] }}" + END + "{% endif %}"
    "{% if m['role'] == 'assistant' %}" + ASSISTANT + "{{ m['content'] }}" + END + "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)


def render_prompt(user: str) -> str:
    """The text a model sees before it answers ``user``."""
    return f"{USER}{user}{END}{ASSISTANT}"


def render_dialogue(user: str, assistant: str) -> str:
    """A whole single-turn dialogue as training text."""
    return f"{render_prompt(user)}{assistant}{END}"
