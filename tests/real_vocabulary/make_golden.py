"""Write golden_prompts.json: every planner and DiT prompt as upstream ACE-Step 1.5 builds it, and its
token ids under Qwen3's tokenizer. Run once, by hand, against an upstream checkout:

    .venv/bin/python tests/real_vocabulary/make_golden.py /path/to/ACE-Step-1.5 [commit]   # f30aee4 here

Upstream's own prompt builders are read from that checkout and run here (its functions are taken
out of `acestep/llm_inference.py` and `acestep/handler.py` by name, with `acestep/constants.py`), so
the strings and ids come from upstream's code, not ours. Nothing of upstream is stored but the
output. The tokenizers are the real-vocabulary test set's (Qwen3's files, the LM's with the audio
codes added): `test_real_vocab_prompts.py` renders the same cases with our code and compares.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LM_FUNCTIONS = ("_has_meaningful_negative_prompt", "_format_metadata_as_cot", "build_formatted_prompt",
                "build_formatted_prompt_with_cot", "build_formatted_prompt_for_understanding",
                "build_formatted_prompt_for_inspiration", "build_formatted_prompt_for_format")
DIT_FUNCTIONS = ("_dict_to_meta_string", "_build_metadata_dict", "_format_lyrics", "_format_instruction",
                 "generate_instruction")

# (case name, what the user gave). Lyrics and captions in English, Chinese, Japanese and with emoji.
SONGS = {
    "en": dict(caption="rainy-night lo-fi hip hop, dusty piano, soft vinyl crackle",
               lyrics="[verse]\nMissed the last train home\n[chorus]\nCity lights, I'm on my own", language="en"),
    "zh": dict(caption="温柔的中文流行情歌，钢琴与弦乐，女声", lyrics="[主歌]\n夜色温柔 你在身边\n[副歌]\n我们一起走过春夏秋冬",
               language="zh"),
    "ja": dict(caption="シティポップ、80年代のシンセとベース", lyrics="[verse]\n夜の街を走る\n君の声が聞こえる", language="ja"),
    "emoji": dict(caption="happy summer pop 🌞🎸 with handclaps", lyrics="[verse]\nSunshine 🌞 on my face\nDancing 💃 all day 🎶",
                  language="en"),
    "long": dict(caption="an emotional orchestral ballad that opens with a lonely solo piano, builds through warm "
                         "strings and soft brass into a soaring final chorus with a choir, cinematic and hopeful",
                 lyrics="", language="en"),
}
METAS = {"bpm": 92, "keyscale": "F minor", "timesignature": 4, "duration": 60}
CODES = "".join(f"<|audio_code_{c}|>" for c in (0, 12, 40211, 63999, 7))


def _functions(path: Path, names) -> dict:
    """Upstream's methods `names` from `path`, as plain functions (they only use `self` for the tokenizer)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in names and node.name not in found:
            found[node.name] = node
    missing = set(names) - set(found)
    if missing:
        raise SystemExit(f"{path} lacks {sorted(missing)}: is this an ACE-Step 1.5 checkout?")
    return found


def upstream_builders(root: Path, lm_tokenizer, text_tokenizer):
    constants: dict = {}
    exec(compile((root / "acestep/constants.py").read_text(encoding="utf-8"), "constants.py", "exec"), constants)
    import typing

    import yaml

    namespace = {**constants, **{name: getattr(typing, name) for name in typing.__all__}, "yaml": yaml}
    nodes = {**_functions(root / "acestep/llm_inference.py", LM_FUNCTIONS),
             **_functions(root / "acestep/handler.py", DIT_FUNCTIONS)}
    module = ast.Module(body=list(nodes.values()), type_ignores=[])
    exec(compile(module, "upstream", "exec"), namespace)
    Upstream = type("Upstream", (), {name: namespace[name] for name in nodes})
    builder = Upstream()
    builder.llm_tokenizer, builder.text_tokenizer = lm_tokenizer, text_tokenizer
    return builder, constants


def cases(up, constants) -> dict:
    out = {}

    def lm(name, text, **inputs):
        out[name] = {"kind": "lm", "inputs": inputs, "text": text}

    for key, song in SONGS.items():
        lyrics = song["lyrics"]
        lm(f"think/{key}", up.build_formatted_prompt(song["caption"], lyrics), caption=song["caption"], lyrics=lyrics)
        meta = {"bpm": str(METAS["bpm"]), "caption": song["caption"], "duration": str(METAS["duration"]),
                "keyscale": METAS["keyscale"], "language": song["language"], "timesignature": f"{METAS['timesignature']}/4"}
        cot = up._format_metadata_as_cot(meta)
        values = {"bpm": METAS["bpm"], "caption": song["caption"], "duration": METAS["duration"],
                  "keyscale": METAS["keyscale"], "language": song["language"], "timesignature": METAS["timesignature"]}
        lm(f"codes/{key}", up.build_formatted_prompt_with_cot(song["caption"], lyrics, cot),
           caption=song["caption"], lyrics=lyrics, cot=values)
        lm(f"codes_unconditional/{key}", up.build_formatted_prompt_with_cot(song["caption"], lyrics, cot, True),
           caption=song["caption"], lyrics=lyrics, cot={})
        lm(f"format/{key}", up.build_formatted_prompt_for_format(song["caption"], lyrics or "[Instrumental]"),
           caption=song["caption"], lyrics=lyrics or "[Instrumental]")
        for instrumental in (False, True):
            lm(f"inspire/{key}/{'instrumental' if instrumental else 'vocal'}",
               up.build_formatted_prompt_for_inspiration(song["caption"], instrumental), query=song["caption"],
               instrumental=instrumental)
    lm("think/instrumental", up.build_formatted_prompt("city pop", "[Instrumental]"), caption="city pop",
       lyrics="[Instrumental]")
    lm("codes_unconditional/negative_prompt",
       up.build_formatted_prompt_with_cot("city pop", "la", "<think>\nbpm: 1\n</think>", True, "harsh noise"),
       caption="harsh noise", lyrics="la", cot={})
    lm("understand", up.build_formatted_prompt_for_understanding(CODES), codes=CODES)

    tasks = {"text2music": {}, "repaint": {}, "cover": {}, "extract": {"track_name": "drums"},
             "extract_default": {}, "lego": {"track_name": "backing_vocals"}, "lego_default": {},
             "complete": {"complete_track_classes": ["bass", "drums"]}, "complete_default": {}}
    for key, song in SONGS.items():
        for task, arguments in tasks.items():
            instruction = up._format_instruction(up.generate_instruction(task.replace("_default", ""), **arguments))
            for metas in ("set", "open"):
                given = METAS if metas == "set" else {"bpm": None, "keyscale": "", "timesignature": "",
                                                      "duration": METAS["duration"]}
                meta = up._dict_to_meta_string(up._build_metadata_dict(given["bpm"], given["keyscale"],
                                                                       str(given["timesignature"] or ""),
                                                                       given["duration"]))
                text = constants["SFT_GEN_PROMPT"].format(instruction, song["caption"], meta)
                out[f"dit_caption/{key}/{task}/{metas}"] = {
                    "kind": "dit_caption", "text": text,
                    "inputs": {"caption": song["caption"], "task": task, **arguments,
                               **{k: (v or None) for k, v in given.items()}}}
        out[f"dit_lyrics/{key}"] = {"kind": "dit_lyrics", "text": up._format_lyrics(lyrics_or_tag(song), song["language"]),
                                    "inputs": {"lyrics": song["lyrics"], "language": song["language"]}}
    return out


def lyrics_or_tag(song):
    return song["lyrics"] or "[Instrumental]"


def main(argv):
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    root = Path(argv[1])
    sys.path.insert(0, str(HERE.parents[1]))
    from transformers import AutoTokenizer

    from acestep_engine.models.tiny_checkpoints import write_lm_tokenizer

    sys.path.insert(0, str(HERE))
    from conftest import qwen3_tokenizer_folder

    folder = qwen3_tokenizer_folder()
    with tempfile.TemporaryDirectory() as tmp:
        write_lm_tokenizer(folder, Path(tmp))
        lm_tokenizer = AutoTokenizer.from_pretrained(tmp)
    text_tokenizer = AutoTokenizer.from_pretrained(folder)
    up, constants = upstream_builders(root, lm_tokenizer, text_tokenizer)
    out = cases(up, constants)
    for case in out.values():
        if case["kind"] == "lm":
            case["ids"] = lm_tokenizer(case["text"])["input_ids"]
        else:
            limit = 256 if case["kind"] == "dit_caption" else 2048
            case["ids"] = text_tokenizer(case["text"], padding="longest", truncation=True, max_length=limit)["input_ids"]
    commit = argv[2] if len(argv) == 3 else \
        subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {"upstream": f"ace-step/ACE-Step-1.5@{commit[:7] or 'unknown'}",
              "tokenizer_json_sha256": hashlib.sha256((folder / "tokenizer.json").read_bytes()).hexdigest(),
              "cases": out}
    (HERE / "golden_prompts.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(out)} cases to {HERE / 'golden_prompts.json'}")


if __name__ == "__main__":
    main(sys.argv)
