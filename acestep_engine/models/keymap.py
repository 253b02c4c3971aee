"""Official ACE-Step 1.5 DiT checkpoint keys <-> diffusers' ACE-Step module keys.

The official `model.safetensors` holds one state dict for `AceStepConditionGenerationModel`.
It splits onto four diffusers modules by prefix, with a pure rename inside attention blocks and
the patch convolutions (reference 3.3b): no tensor is reshaped.
"""

from __future__ import annotations

COMPONENTS = ("transformer", "condition_encoder", "audio_tokenizer", "detokenizer")

_PREFIXES = {  # official prefix -> component
    "decoder.": "transformer",
    "encoder.": "condition_encoder",
    "tokenizer.": "audio_tokenizer",
    "detokenizer.": "detokenizer",
}
_RENAMES = (  # official fragment -> diffusers fragment
    (".q_proj.", ".to_q."),
    (".k_proj.", ".to_k."),
    (".v_proj.", ".to_v."),
    (".o_proj.", ".to_out.0."),
    (".q_norm.", ".norm_q."),
    (".k_norm.", ".norm_k."),
)
_TRANSFORMER_RENAMES = (("proj_in.1.", "proj_in_conv."), ("proj_out.1.", "proj_out_conv."))

# Buffers of diffusers' modules that are not weights of the official checkpoint; the loader
# fills them from other files (silence_latent.pt).
DERIVED_KEYS = {"condition_encoder": ("silence_latent",)}


def official_to_diffusers(key: str) -> tuple[str, str]:
    """Map one official key to (component, diffusers key). Raises KeyError for foreign keys."""
    if key == "null_condition_emb":
        return "condition_encoder", "null_condition_emb"
    for prefix, component in _PREFIXES.items():
        if key.startswith(prefix):
            local = "." + key[len(prefix):]
            for old, new in _RENAMES:
                local = local.replace(old, new)
            local = local[1:]
            if component == "transformer":
                for old, new in _TRANSFORMER_RENAMES:
                    if local.startswith(old):
                        local = new + local[len(old):]
            return component, local
    raise KeyError(key)


def diffusers_to_official(component: str, key: str) -> str:
    """Inverse of `official_to_diffusers`."""
    if component == "condition_encoder" and key == "null_condition_emb":
        return "null_condition_emb"
    prefix = next(p for p, c in _PREFIXES.items() if c == component)
    local = key
    if component == "transformer":
        for old, new in _TRANSFORMER_RENAMES:
            if local.startswith(new):
                local = old + local[len(new):]
    local = "." + local
    for old, new in _RENAMES:
        local = local.replace(new, old)
    return prefix + local[1:]


def split_state_dict(state_dict: dict) -> tuple[dict[str, dict], list[str]]:
    """Split an official state dict into per-component diffusers state dicts.

    Returns the split dicts and the list of keys that belong to no component.
    """
    parts: dict[str, dict] = {c: {} for c in COMPONENTS}
    unknown = []
    for key, tensor in state_dict.items():
        try:
            component, local = official_to_diffusers(key)
        except KeyError:
            unknown.append(key)
            continue
        parts[component][local] = tensor
    return parts, unknown
