"""Text, lyric and timbre conditions -> the packed sequence the DiT cross-attends to.

Caption prompts run through the whole Qwen3 text encoder; lyric prompts only through its token
embedding table (reference 2.4). The condition encoder packs `[lyrics | timbre | text]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

CAPTION_MAX_TOKENS = 256
LYRIC_MAX_TOKENS = 2048


@dataclass
class Conditions:
    """Encoder states for one batch: `[B, S, H]`, their mask `[B, S]`, and the null states for CFG."""

    states: torch.Tensor
    mask: torch.Tensor
    null_states: torch.Tensor
    _guided: torch.Tensor | None = field(default=None, repr=False)

    def guided_states(self) -> torch.Tensor:
        """`[2B, S, H]`: conditional then null states, built once so every step passes the same tensor."""
        if self._guided is None:
            self._guided = torch.cat([self.states, self.null_states])
        return self._guided

    def repeat(self, batch: int) -> "Conditions":
        if self.states.shape[0] == batch:
            return self
        return Conditions(self.states.expand(batch, -1, -1), self.mask.expand(batch, -1),
                          self.null_states.expand(batch, -1, -1))


def _tokenize(tokenizer, texts: list[str], max_length: int, device, min_length: int = 0):
    batch = tokenizer(texts, max_length=max_length, truncation=True, padding="longest", return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    short = min(min_length, max_length) - ids.shape[1]
    if short > 0:  # right-pad like a batch with a longer prompt would be
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.nn.functional.pad(ids, (0, short), value=pad)
        mask = torch.nn.functional.pad(mask, (0, short), value=0)
    return ids.to(device), mask.to(device)


def caption_tokens(models, caption_prompt: str) -> int:
    """How many tokens a caption prompt takes (after truncation to CAPTION_MAX_TOKENS)."""
    return len(models.text_tokenizer(caption_prompt, max_length=CAPTION_MAX_TOKENS, truncation=True)["input_ids"])


@torch.no_grad()
def encode_text(models, caption_prompts: list[str], lyric_prompts: list[str], min_caption_tokens: int = 0):
    """Returns caption hidden states, caption mask, lyric embeddings and lyric mask.

    `min_caption_tokens` right-pads the caption ids to that length, as upstream's batch padding
    does when a longer caption shares the batch (cover's switch to text2music)."""
    device = models.silence_latent.device
    dtype = models.silence_latent.dtype
    ids, text_mask = _tokenize(models.text_tokenizer, caption_prompts, CAPTION_MAX_TOKENS, device,
                               min_caption_tokens)
    # Upstream calls the encoder without a mask: right padding plus causal attention leaves real tokens untouched.
    text = models.text_encoder(input_ids=ids).last_hidden_state.to(dtype)
    lyric_ids, lyric_mask = _tokenize(models.text_tokenizer, lyric_prompts, LYRIC_MAX_TOKENS, device)
    lyrics = models.text_encoder.get_input_embeddings()(lyric_ids).to(dtype)
    return text, text_mask, lyrics, lyric_mask


def timbre_frames(models) -> int:
    """Reference length the timbre encoder expects (750 frames = 30 s officially)."""
    return int(models.config.get("timbre_fix_frame", round(30 * models.frame_rate)))


def silence_frames(models, frames: int) -> torch.Tensor:
    """`[frames, C]` of the silence latent, tiled if a song is longer than the file."""
    silence = models.silence_latent[0]
    if frames > silence.shape[0]:
        silence = silence.repeat((frames + silence.shape[0] - 1) // silence.shape[0], 1)
    return silence[:frames]


@torch.no_grad()
def encode_conditions(models, caption_prompts: list[str], lyric_prompts: list[str],
                      references: list[torch.Tensor | None] | None = None,
                      min_caption_tokens: int = 0) -> Conditions:
    """Encode one set of conditions per batch item.

    `references[i]` is `[timbre_frames, C]` latents of reference audio for item i, or None for
    none (then the silence latent stands in, as upstream: zeros would put the encoder off-distribution).
    """
    text, text_mask, lyrics, lyric_mask = encode_text(models, caption_prompts, lyric_prompts, min_caption_tokens)
    batch = len(caption_prompts)
    frames = timbre_frames(models)
    references = references or [None] * batch
    packed = torch.stack([silence_frames(models, frames) if r is None else r.to(models.silence_latent)
                          for r in references])
    order = torch.arange(batch, device=packed.device)
    states, mask = models.condition_encoder(
        text_hidden_states=text, text_attention_mask=text_mask.long(),
        lyric_hidden_states=lyrics, lyric_attention_mask=lyric_mask.long(),
        refer_audio_acoustic_hidden_states_packed=packed, refer_audio_order_mask=order,
    )
    null = models.condition_encoder.null_condition_emb.to(states.dtype).expand_as(states)
    return Conditions(states, mask, null)
