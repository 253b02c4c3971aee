"""The chat template of the 5 Hz LM's tokenizer: Qwen3's ChatML, as the official checkpoint renders
the planner's conversations, and the same text without Jinja for a tokenizer that ships none.

Our tiny LM checkpoints ship this template; `acestep_engine.lm.prompts` renders every prompt
through the tokenizer's own template and falls back to `render_chatml`. No torch here.
"""

from __future__ import annotations

THINK, END_THINK = "<think>", "</think>"

# Qwen3's ChatML as it renders these conversations: an assistant turn that carries a chain of
# thought is written `<think>\n{reasoning}\n</think>\n\n{answer}`, with the reasoning stripped of
# surrounding newlines. Used for tokenizers without a template (our tiny planner ships it too).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message['content'] %}"
    "{%- if message['role'] == 'assistant' and '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\n') %}"
    "{%- set answer = content.split('</think>')[-1].lstrip('\n') %}"
    "{{- '<|im_start|>assistant\n<think>\n' + reasoning + '\n</think>\n\n' + answer + '<|im_end|>\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + content + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


def render_chatml(messages: list[dict], add_generation_prompt: bool) -> str:
    """CHAT_TEMPLATE's output, without Jinja (for tokenizers that ship no template)."""
    out = []
    for message in messages:
        content = message["content"]
        if message["role"] == "assistant" and END_THINK in content:
            reasoning = content.split(END_THINK)[0].split(THINK)[-1].strip("\n")
            answer = content.split(END_THINK)[-1].lstrip("\n")
            out.append(f"<|im_start|>assistant\n{THINK}\n{reasoning}\n{END_THINK}\n\n{answer}<|im_end|>\n")
        else:
            out.append(f"<|im_start|>{message['role']}\n{content}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)
