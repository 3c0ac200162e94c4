"""How a chat becomes prompt tokens: the one place apiary formats prompts for any core.

A chat model brings its own chat template. A base model (many GGUF files) has none, and
transformers refuses to format a chat for it ("Cannot use chat template functions"), so such a core
gets the plain format below: "User: ...\\nAssistant: ..." lines, each reply closed by EOS. A user can
name the format instead (`--template chat|plain|FILE.jinja`). The chosen format is installed as the
tokenizer's chat template when the core loads, so every caller that formats through this module
(learners, evals, the server, multi-turn framing) uses it, and its name is recorded with the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CHAT, PLAIN = "chat", "plain"

PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\n"
    "{% else %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)

_REPLY, _MESSAGE = "\x00REPLY\x00", "\x00MESSAGE\x00"  # markers for finding the framing between turns


class PromptFormatError(ValueError):
    """A named prompt format that does not exist, or 'chat' for a core without a chat template."""


@dataclass(frozen=True)
class PromptFormat:
    """A chat template (Jinja, as transformers reads it) and the name it is recorded under:
    'chat' (the core's own), 'plain', or the path of a template file."""

    name: str
    template: str


def choose(tokenizer, template: str | None = None) -> PromptFormat:
    """The prompt format for a core: `template` if given ('chat', 'plain' or a Jinja file), else the
    core's own chat template, else the plain format."""
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    if template is None:
        return PromptFormat(CHAT, own) if own else PromptFormat(PLAIN, PLAIN_TEMPLATE)
    if template == CHAT:
        if not own:
            raise PromptFormatError("this core has no chat template; use --template plain or a Jinja file")
        return PromptFormat(CHAT, own)
    if template == PLAIN:
        return PromptFormat(PLAIN, PLAIN_TEMPLATE)
    path = Path(template).expanduser()
    if not path.is_file():
        raise PromptFormatError(f"unknown prompt format {template!r}: use chat, plain or the path of a Jinja template file")
    return PromptFormat(str(path), path.read_text())


def install(tokenizer, prompt_format: PromptFormat) -> None:
    """Make `prompt_format` the tokenizer's chat template, so every chat it formats uses it."""
    tokenizer.chat_template = prompt_format.template
    _framing.cache_clear()


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a chat in the core's prompt format, ready for the reply."""
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False))


def end_of_turn_id(tokenizer) -> int:
    """The token that ends an assistant reply: <|im_end|> in ChatML templates, else EOS."""
    if "<|im_end|>" not in (tokenizer.chat_template or ""):
        return tokenizer.eos_token_id
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return im_end if isinstance(im_end, int) and im_end != tokenizer.unk_token_id else tokenizer.eos_token_id


def reply_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as a complete assistant reply (ending the turn), for teacher forcing."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [end_of_turn_id(tokenizer)]


def environment_turn_ids(tokenizer, message: str, reply_ids: list[int], stop_ids: list[int]) -> list[int]:
    """Tokens that close the worker's reply, carry the environment's `message` (the next user turn of a
    multi-turn episode), and open the next reply. A reply that ended on its stop token is not closed twice."""
    between, after = _framing(tokenizer)
    if reply_ids and reply_ids[-1] in stop_ids:
        stop_text = tokenizer.decode([reply_ids[-1]])
        between = between[len(stop_text):] if between.startswith(stop_text) else between
    return list(tokenizer(between + message + after, add_special_tokens=False)["input_ids"])


@lru_cache(maxsize=8)
def _framing(tokenizer) -> tuple[str, str]:
    """The format's text between a reply and the next user message, and after that message up to where
    the next reply starts (e.g. "<|im_end|>\\n<|im_start|>user\\n" and "<|im_end|>\\n<|im_start|>assistant\\n")."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "question"}, {"role": "assistant", "content": _REPLY},
         {"role": "user", "content": _MESSAGE}], tokenize=False, add_generation_prompt=True)
    between, _, after = text.split(_REPLY, 1)[1].partition(_MESSAGE)
    return between, after
