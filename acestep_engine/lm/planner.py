"""The 5 Hz LM planner: from an idea or a half-filled blueprint to a full blueprint and audio codes.

    planner = Planner.from_pretrained("acestep-5Hz-lm-1.7B")          # or Planner.demo()
    blueprint = planner.inspire("a rainy-night lo-fi song about missing the last train")
    blueprint = planner.complete(Blueprint(caption="city pop", bpm=112))  # fills only the open fields
    codes = planner.codes(blueprint)                                      # duration x 5 audio codes
    takes = engine.generate(blueprint, Text2Music(audio_codes=codes))

The LM is transformers' `Qwen3ForCausalLM` loaded from the official `acestep-5Hz-lm-*` folder (no
code from the checkpoint runs). Prompts are rendered by the checkpoint's chat template
(`prompts`); every token is checked by `constraints.PlannerConstraint`, so the output always
parses into a valid blueprint. Decoding (`decoding.Decoder`) is a KV-cached loop: guidance runs the
conditional and unconditional prompts as one batch, forced tokens (injected user fields, fixed
text) are fed in one forward, each row samples from its own seeded generator, and `cancel` is
checked per token.

Decoding follows upstream's `llm_inference.py` and `constrained_logits_processor.py`: exactly
`int(duration * 5)` codes; user values injected as written (`language: no`); a forced `genres:`
line in inspire/format/understand, its value one entry of a genres vocabulary when one is given
(`genres_vocab=` or the ACESTEP_GENRES_VOCAB environment variable: upstream's MIT-licensed
`acestep/genres_vocab.txt` from github.com/ace-step/ACE-Step-1.5, one genre per line), free text
otherwise; the language's first token and the caption's end chosen by argmax; when the user set
bpm, key, time signature and duration, no phase 1 and only those four in the code phase's
thinking block; blank lyrics sent blank; no top-p in inspire/format/understand (0.9 elsewhere);
temperature applied before top-k/top-p (upstream's default nano-vllm backend).

Deliberate differences, each one flag away from upstream's behaviour (docs/differences.md):
`complete(keep_caption=True)` never rewrites a caption the user wrote (False: the LM writes the
caption, as upstream's `use_cot_caption`); `understand(true_duration=True)` writes the audio's own
duration (False: the LM's); `max_text_chars=4000` caps the text after `</think>` in
inspire/format/understand (None: no cap, the answer bounded by upstream's 4,096 new tokens);
instrumental inspire/format plans get no lyric phase.
"""

from __future__ import annotations

import logging
import numbers
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from ..blueprint import DURATION_RANGE, MAX_LYRICS_CHARS, Blueprint
from ..errors import CheckpointError, TaskError
from ..models.checkpoints import default_checkpoints_dir, ensure_checkpoints
from ..models.variants import LM_VARIANTS
from . import prompts
from .decoding import Decoder
from .genres import load_genres_vocab
from .sampling import SamplingOptions, check_number
from .shapes import MAX_LYRICS_CHARS as MAX_TEXT_CHARS, Shape, codes_shape, cot_shape
from .token_table import DEFAULT_CODEBOOK_SIZE, TokenTable

ENV_DEMO_LM = "acestep-5Hz-lm-0.6B"
PLANNABLE = ("caption", "bpm", "keyscale", "timesignature", "language", "duration")
CODES_PER_SECOND = 5
MAX_QUERY_CHARS = 2048  # an inspire query must be shorter than this
MAX_SEED = 2 ** 63 - 1  # as the engine: torch generators take 0 .. 2**63 - 1
MAX_CODE_STRING_CHARS = 200_000  # 3,000 codes (600 s) written as <|audio_code_N|> fit in 66,000


def code_count(duration: float) -> int:
    """Audio codes for `duration` seconds: `int(duration * 5)` as upstream (60.5 s -> 302)."""
    return int(duration * CODES_PER_SECOND)


def default_lm_dtype(device: torch.device) -> torch.dtype:
    """What "auto" means on `device` (`hardware.auto_dtype`): bf16 on CUDA with bf16 (fp16 before),
    bf16 on CPUs that multiply bf16 natively (AVX512-BF16, AMX), fp32 on other CPUs and on MPS."""
    from ..runtime.hardware import auto_dtype

    return auto_dtype(device)


class Planner:
    """An ACE-Step 1.5 5 Hz LM with its tokenizer, planning blueprints and audio codes.

    `genres_vocab`: the values the genres line of inspire/format/understand may take (a file with
    one genre per line such as upstream's genres_vocab.txt, a list, or None for the
    ACESTEP_GENRES_VOCAB environment variable; without either the genres are free text).
    """

    def __init__(self, model, tokenizer, device: torch.device, name: str = "planner", path: str | None = None,
                 codebook_size: int = DEFAULT_CODEBOOK_SIZE, engine=None, genres_vocab=None, offload="auto"):
        self.model = model.eval()
        self.offload = _offload_option(offload)
        self.genres_vocab = load_genres_vocab(genres_vocab)
        self.tokenizer = tokenizer
        self.device = device
        self.name = name
        self.path = path
        self.engine = None
        self.table = TokenTable(tokenizer, model.config.vocab_size, codebook_size)
        self.is_demo = bool(getattr(model.config, "acestep_workbench_random_weights", False)) \
            or (path is not None and (Path(path).parent / "acestep_workbench_checkpoints.json").is_file())
        self._lock = threading.RLock()  # a plan holds it across both phases
        self.decoder = Decoder(self.model, tokenizer, self.table, device)
        if engine is not None:
            self.attach(engine)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path_or_name: str | Path = "acestep-5Hz-lm-1.7B", checkpoints_dir=None,
                        device="auto", dtype=None, allow_download: bool = False, engine=None,
                        genres_vocab=None, offload="auto") -> "Planner":
        """Load a 5 Hz LM: a folder, a name of LM_VARIANTS under `checkpoints_dir`, or its hub repo id.

        Missing files are downloaded only with `allow_download=True`; otherwise the error lists them
        and the command that fetches them. `engine` (optional) lends its DiT's audio tokenizer to
        `understand` and its codebook size to the code phase. `dtype` None: `default_lm_dtype`.
        `genres_vocab`: see the class. `offload`: True moves the LM off the device after every call
        (on a CPU its weights are parked on disk and read back on the next call, see
        `acestep_engine.runtime.parking`), False keeps it resident, "auto" offloads while the attached
        engine's memory plan offloads its encoders (tight memory; see `Engine.plan_memory`).
        """
        from transformers import AutoTokenizer, Qwen3ForCausalLM

        from ..models.config_checks import check_lm_folder
        from ..models.loader import own_saved_weights, qwen3_options, resolve_device
        from ..runtime.heap import give_back_free_memory

        folder = cls._resolve_folder(path_or_name, checkpoints_dir, allow_download)
        device, _ = resolve_device(device, None)
        if isinstance(dtype, str):
            dtype = resolve_device(device, dtype)[1]
        dtype = dtype or default_lm_dtype(device)
        check_lm_folder(folder)  # model type (never trust_remote_code), config size, whole weights files
        from transformers.utils import logging as tlogging

        verbosity = tlogging.get_verbosity()
        tlogging.set_verbosity_error()
        tlogging.disable_progress_bar()
        try:
            model = Qwen3ForCausalLM.from_pretrained(folder, **qwen3_options(device, dtype)).to(device)
            if device.type == "cpu":
                own_saved_weights(model, folder)
                give_back_free_memory()
            tokenizer = AutoTokenizer.from_pretrained(folder)
        finally:
            tlogging.set_verbosity(verbosity)
            tlogging.enable_progress_bar()
        codebook = cls._codebook_size(engine)
        _offload_option(offload)
        return cls(model, tokenizer, device, name=Path(folder).name, path=str(folder), codebook_size=codebook,
                   engine=engine, genres_vocab=genres_vocab, offload=offload)

    @staticmethod
    def _resolve_folder(path_or_name, checkpoints_dir, allow_download) -> Path:
        candidate = Path(path_or_name).expanduser()
        if candidate.is_dir() and (candidate / "config.json").is_file():
            return candidate
        name = str(path_or_name).split("/")[-1]
        if name not in LM_VARIANTS:
            raise CheckpointError(f"planner must be a folder with config.json or one of "
                                  f"{', '.join(LM_VARIANTS)} (got {str(path_or_name)!r})")
        root = Path(checkpoints_dir) if checkpoints_dir else default_checkpoints_dir()
        ensure_checkpoints(root, dit=None, lm=name, allow_download=allow_download)
        return root / name

    @staticmethod
    def _codebook_size(engine) -> int:
        quantizer = getattr(getattr(getattr(engine, "models", None), "audio_tokenizer", None), "quantizer", None)
        return int(getattr(quantizer, "codebook_size", DEFAULT_CODEBOOK_SIZE))

    @classmethod
    def demo(cls, device="auto", engine=None, genres_vocab=None) -> "Planner":
        """The tiny random demo planner beside the demo checkpoint (written on first use)."""
        from ..models.tiny_checkpoints import LM_FOLDER, demo_checkpoints_dir, write_lm
        from ..runtime.quiet import quiet_loading

        folder = demo_checkpoints_dir() / LM_FOLDER
        if not (folder / "model.safetensors").is_file():
            with quiet_loading():
                write_lm(folder, preset="demo", seed=1234)
        return cls.from_pretrained(folder, device=device, engine=engine, genres_vocab=genres_vocab)

    def attach(self, engine) -> "Planner":
        """Use `engine`'s audio tokenizer for `understand` and its codebook for the code phase; the
        engine's memory plans count this LM from now on (`engine.planner`)."""
        self.engine = engine
        engine.planner = self
        self.table.codebook_size = min(self._codebook_size(engine), self.table.codebook_size)
        self.table.valid_codes[:] = False
        self.table.valid_codes[[t for c, t in self.table.code_ids.items() if c < self.table.codebook_size]] = True
        return self

    def describe(self) -> dict:
        return {"planner": self.name, "demo": self.is_demo, "dtype": str(self.model.dtype).replace("torch.", ""),
                "device": str(self.device), "genres_vocab": None if self.genres_vocab is None else len(self.genres_vocab)}

    def __repr__(self) -> str:
        demo = ", demo (random weights)" if self.is_demo else ""
        return f"Planner({self.name}, {self.device}, {str(self.model.dtype).replace('torch.', '')}{demo})"

    # ------------------------------------------------------------------ planning
    def inspire(self, query: str, instrumental: bool = False, language: str | None = None, *, seed=None,
                progress=None, cancel=None, max_text_chars: int | None = MAX_TEXT_CHARS, **sampling) -> Blueprint:
        """A whole blueprint (metadata, caption, lyrics) from a one-line idea (upstream's simple mode).

        `language` (a code of LANGUAGES) is injected as the vocal language; otherwise the LM picks it.
        `max_text_chars` caps the lyrics (None: upstream's rule, see the module docstring).
        """
        if not isinstance(query, str) or not query.strip():
            raise TaskError(f"query must be a non-empty description of the song (got {query!r:.60})")
        if len(query) >= MAX_QUERY_CHARS:
            raise TaskError(f"query must be shorter than {MAX_QUERY_CHARS} characters (got {len(query)})")
        _flag("instrumental", instrumental)
        if language is not None and not isinstance(language, str):
            raise TaskError(f"language must be a language code such as 'en', or None (got {language!r})")
        fixed = {}
        if language not in (None, "", "unknown"):
            fixed["language"] = Blueprint(language=language).validate().language
        text_chars = _text_chars(max_text_chars)
        messages = prompts.inspire_messages(query.strip(), instrumental)
        after = "stop" if instrumental else "text"
        shape = self._cot_shape(fixed, genres=True, after=after, text_chars=text_chars)
        text = self._run([self._render(messages, True)], [shape], seed, progress, cancel, "think", sampling,
                         top_p=None)[0]
        planned = self._parse(text, Blueprint(instrumental=instrumental), fixed)
        lyrics = "" if instrumental else _fit_lyrics(prompts.split_lyrics(text))
        return planned.replace(lyrics=lyrics, instrumental=instrumental, planned=_planned(PLANNABLE + ("lyrics",)))

    def complete(self, blueprint: Blueprint, fields=None, *, seed=None, progress=None, cancel=None,
                 keep_caption: bool = True, **sampling) -> Blueprint:
        """Fill the fields the user left open (the chain-of-thought phase); the others are injected
        into the LM's reasoning and come back unchanged.

        Open fields: an empty caption, bpm/keyscale/timesignature None, language "unknown". Duration
        always has a value in a Blueprint, so it is planned only when named in `fields` (which, if
        given, lists exactly the fields to plan). Lyrics are the user's (upstream's generate flow
        never writes lyrics; use `inspire` or `format`). The result's `planned` names what the LM wrote.
        `keep_caption=False` lets the LM rewrite a caption the user wrote (upstream's `use_cot_caption`).
        """
        return self.complete_batch([blueprint], fields, seeds=seed, progress=progress, cancel=cancel,
                                   keep_caption=keep_caption, **sampling)[0]

    def complete_batch(self, blueprints, fields=None, *, seeds=None, progress=None, cancel=None,
                       keep_caption: bool = True, **sampling) -> list[Blueprint]:
        """`complete` for several blueprints (1-8) in one batched decode."""
        if not isinstance(blueprints, (list, tuple)) or not 1 <= len(blueprints) <= 8:
            raise TaskError(f"blueprints must be a list of 1 to 8 Blueprints (got {blueprints!r:.80})")
        _flag("keep_caption", keep_caption)
        jobs = []
        for blueprint in blueprints:
            bp = _checked(blueprint)
            plan = self._fields_to_plan(bp, fields)
            if not keep_caption and "caption" not in plan:
                plan = [f for f in PLANNABLE if f in plan or f == "caption"]
            fixed = {k: v for k, v in prompts.cot_values(bp).items() if k not in plan}
            jobs.append((bp, plan, fixed))
        texts = self._run([self._render(prompts.think_messages(bp.caption, prompts.lm_lyrics(bp)), True)
                           for bp, _, _ in jobs],
                          [self._cot_shape(fixed) for _, _, fixed in jobs], seeds, progress, cancel, "think",
                          sampling)
        out = []
        for (bp, plan, fixed), text in zip(jobs, texts):
            planned = self._parse(text, bp, fixed)
            kept = {name: getattr(bp, name) for name in PLANNABLE if name not in plan}
            out.append(planned.replace(**kept, lyrics=bp.lyrics, instrumental=bp.instrumental,
                                       planned=_planned(plan)))
        return out

    def format(self, blueprint: Blueprint, *, seed=None, progress=None, cancel=None,
               max_text_chars: int | None = MAX_TEXT_CHARS, **sampling) -> Blueprint:
        """Rewrite caption and lyrics into the LM's preferred form; the user's metadata is kept
        (open metadata fields are planned too). Empty rewritten lyrics fall back to the user's.
        A blank caption is sent as upstream's "NO USER INPUT", blank lyrics as "[Instrumental]"; a
        language the user set is left out of the LM's reasoning, as upstream does."""
        bp = _checked(blueprint)
        values = prompts.cot_values(bp)
        fixed = {k: v for k, v in values.items() if k != "caption"}
        after = "stop" if bp.instrumental else "text"
        caption = bp.caption if bp.caption.strip() else prompts.NO_USER_INPUT
        # A language the user set is not written at all (upstream's skip_language), the rest injected.
        skip = ("language",) if "language" in fixed else ()
        shape = self._cot_shape({k: v for k, v in fixed.items() if k not in skip}, genres=True, after=after,
                                text_chars=_text_chars(max_text_chars), skip=skip)
        text = self._run([self._render(prompts.format_messages(caption, bp.effective_lyrics), True)],
                         [shape], seed, progress, cancel, "think", sampling, top_p=None)[0]
        planned = self._parse(text, bp, fixed)
        lyrics = bp.lyrics if bp.instrumental else (_fit_lyrics(prompts.split_lyrics(text)) or bp.lyrics)
        open_fields = [f for f in PLANNABLE if f not in fixed and f != "caption"]
        kept = {name: getattr(bp, name) for name in PLANNABLE if name in fixed}
        return planned.replace(**kept, lyrics=lyrics, instrumental=bp.instrumental,
                               planned=_planned(["caption", "lyrics"] + open_fields))

    def understand(self, audio, engine=None, *, seed=None, progress=None, cancel=None, true_duration: bool = True,
                   max_text_chars: int | None = MAX_TEXT_CHARS, **sampling) -> Blueprint:
        """Describe audio as a blueprint: audio -> 5 Hz codes (the DiT checkpoint's tokenizer) ->
        caption, metadata and lyrics. `audio` is anything `engine.generate` takes as a source, or a
        code string `<|audio_code_N|>...`. The duration is the audio's own (`true_duration=False`:
        the LM's, as upstream)."""
        from ..generation.sources import audio_to_codes, parse_audio_codes

        _flag("true_duration", true_duration)
        text_chars = _text_chars(max_text_chars)
        engine = engine or self.engine
        if isinstance(audio, str) and audio.lstrip().startswith("<|audio_code_"):
            if len(audio) > MAX_CODE_STRING_CHARS:
                raise TaskError(f"audio as a code string must be at most {MAX_CODE_STRING_CHARS} characters "
                                f"(got {len(audio)})")
            codes = audio
        else:
            if engine is None:
                raise TaskError("understand needs an engine (its DiT holds the audio tokenizer): "
                                "pass engine=... or Planner.from_pretrained(..., engine=engine)")
            codes = audio_to_codes(engine, audio)
        count = len(parse_audio_codes(codes, self.table.codebook_size))
        most = code_count(DURATION_RANGE[1])
        if count > most:
            raise TaskError(f"audio must be at most {DURATION_RANGE[1]:g} s: {most} codes (got {count} codes)")
        lo, hi = DURATION_RANGE
        fixed = {"duration": int(min(max(count / CODES_PER_SECOND, lo), hi))} if true_duration else {}
        shape = self._cot_shape(fixed, genres=True, after="text", text_chars=text_chars)
        text = self._run([self._render(prompts.understand_messages(codes), True)], [shape], seed, progress, cancel,
                         "think", sampling, top_p=None)[0]
        planned = self._parse(text, Blueprint(), fixed)
        lyrics = _fit_lyrics(prompts.split_lyrics(text))
        instrumental = not lyrics.strip() or lyrics.strip().lower() == "[instrumental]"
        duration = float(fixed["duration"]) if true_duration else planned.duration
        return planned.replace(lyrics="" if instrumental else lyrics, instrumental=instrumental,
                               duration=duration, planned=_planned(PLANNABLE + ("lyrics",)))

    def codes(self, blueprint: Blueprint, *, seed=None, progress=None, cancel=None, **sampling) -> str:
        """Exactly `int(duration * 5)` audio codes `<|audio_code_N|>...` for `blueprint`, with LM
        guidance (default 2.0: conditional and unconditional prompts decoded as one batch).

        The thinking block in the prompt holds bpm, duration, key and time signature when all four
        are set (as upstream, which then skips phase 1), otherwise every set field (open ones are
        left out: `complete` first, or `plan`, to fill them). Render with
        `engine.generate(blueprint, Text2Music(audio_codes=codes))`.
        """
        return self.codes_batch(blueprint, 1, seeds=seed, progress=progress, cancel=cancel, **sampling)[0]

    def codes_batch(self, blueprint: Blueprint, batch_size: int = 2, *, seeds=None, progress=None, cancel=None,
                    **sampling) -> list[str]:
        """`batch_size` (1-8) independent code strings for one blueprint, decoded as one batch."""
        return self._codes_batch(blueprint, batch_size, seeds, progress, cancel, sampling)

    def plan(self, blueprint: Blueprint, *, seed=None, progress=None, cancel=None, keep_caption: bool = True,
             **sampling):
        """Upstream's "thinking" flow: complete the open fields (phase 1; skipped, as upstream, when
        the user set bpm, key, time signature and duration), then write the codes (phase 2).
        Returns (planned blueprint, code string)."""
        bp = _checked(blueprint)
        _flag("keep_caption", keep_caption)
        SamplingOptions.of(sampling)
        if prompts.has_all_metas(bp):  # the four fields alone (codes_cot_values)
            return bp, self._codes_batch(bp, 1, seed, progress, cancel, sampling)[0]
        with self._both_phases():  # phase 1; its whole chain of thought goes into phase 2's prompt
            planned = self.complete(bp, seed=seed, progress=progress, cancel=cancel, keep_caption=keep_caption,
                                    **{k: v for k, v in sampling.items() if k not in ("guidance", "negative_prompt")})
            codes = self._codes_batch(planned, 1, seed, progress, cancel, sampling, prompt_caption=bp.caption,
                                      cot_values=prompts.cot_values(planned))[0]
        return planned, codes

    @contextmanager
    def _both_phases(self):
        """The two phases of a plan under one hold of the lock, with the LM's fast kernels kept
        between them (`Decoder.kept_fast_kernels`) unless it leaves its device between calls."""
        with self._lock:
            if self.offloading:
                yield
                return
            self._move_in()
            try:
                with self.decoder.kept_fast_kernels():
                    yield
            finally:
                if self.offloading:  # the engine's memory plan changed meanwhile
                    self._move_out()

    # ------------------------------------------------------------------ internals
    def _codes_batch(self, blueprint, batch_size, seeds, progress, cancel, sampling, prompt_caption=None,
                     cot_values=None):
        """The code phase. `prompt_caption`: the caption of the user prompt when it differs from the
        blueprint's (upstream keeps the user's caption there when the LM rewrote it in phase 1);
        `cot_values`: the thinking block's fields (default `codes_cot_values`)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or not 1 <= batch_size <= 8:
            raise TaskError(f"batch_size must be a whole number from 1 to 8 (got {batch_size!r})")
        bp = _checked(blueprint)
        options = SamplingOptions.of(sampling)
        caption = bp.caption if prompt_caption is None else prompt_caption
        lyrics = prompts.lm_lyrics(bp)
        count = code_count(bp.duration)
        cot = prompts.cot_text(prompts.codes_cot_values(bp) if cot_values is None else cot_values)
        cond = prompts.with_newline(self._render(prompts.codes_messages(caption, lyrics, cot), False))
        negative = options.negative_prompt if options.negative_prompt not in (None, prompts.NO_USER_INPUT) else None
        uncond = prompts.with_newline(self._render(prompts.codes_messages(
            negative if negative is not None else caption, lyrics, prompts.cot_text({})), False))
        unconditional = [uncond] * batch_size if options.guidance > 1.0 else None
        written = self._run([cond] * batch_size, [codes_shape(count) for _ in range(batch_size)], seeds, progress,
                            cancel, "codes", sampling, unconditional=unconditional, decode=False)
        return ["".join(f"<|audio_code_{self.table.code_value[t]}|>" for t in ids if t in self.table.code_value)
                for ids in written]

    def _cot_shape(self, fixed, genres: bool = False, after: str = "stop", text_chars=MAX_TEXT_CHARS,
                   skip=()) -> Shape:
        return cot_shape(self.table, fixed, genres=genres, after=after, text_chars=text_chars,
                         vocabulary=self.genres_vocab if genres else None, skip=skip)

    def _render(self, messages, add_generation_prompt: bool) -> str:
        return prompts.render(self.tokenizer, messages, add_generation_prompt)

    @staticmethod
    def _fields_to_plan(bp: Blueprint, fields) -> list[str]:
        if fields is not None:
            if isinstance(fields, str):
                fields = [fields]
            if not isinstance(fields, (list, tuple, set, frozenset)):
                raise TaskError(f"fields must be a list of field names among {', '.join(PLANNABLE)}, or None "
                                f"(got {type(fields).__name__})")
            unknown = [f for f in fields if f not in PLANNABLE]
            if unknown:
                raise TaskError(f"fields must be among {', '.join(PLANNABLE)} (got {', '.join(map(str, unknown))})")
            return [f for f in PLANNABLE if f in fields]
        values = prompts.cot_values(bp)
        return [f for f in PLANNABLE if f not in values]

    def _parse(self, text: str, base: Blueprint, fixed: dict) -> Blueprint:
        values = prompts.parse_cot(text)
        fields = {name: values[name] for name in PLANNABLE if name in values}
        fields.update(fixed)
        fields["caption"] = str(fields.get("caption", base.caption)).strip()
        planned = base.replace(**fields)
        return planned.validate()

    def _run(self, texts, shapes, seeds, progress, cancel, stage, sampling, unconditional=None, decode=True,
             top_p: float | None = 0.9):
        options = SamplingOptions.of(sampling, top_p=top_p)
        seeds = _seeds(seeds, len(texts))
        if progress is not None and not callable(progress):
            raise TaskError(f"progress must be a callable taking a Progress, or None (got {type(progress).__name__})")
        if cancel is not None and not callable(getattr(cancel, "is_set", None)):
            raise TaskError(f"cancel must be a threading.Event (anything with is_set()), or None "
                            f"(got {type(cancel).__name__})")
        report = progress if progress is not None else (lambda p: None)
        with self._lock:
            self._move_in()
            try:
                return self.decoder.run(texts, shapes, seeds, options, report, cancel, stage, unconditional, decode)
            finally:
                if self.offloading and not self.decoder.kept:
                    self._move_out()

    # ------------------------------------------------------------------ memory
    @property
    def offloading(self) -> bool:
        """Whether the LM leaves the device between calls now (see `offload` in from_pretrained)."""
        if self.offload != "auto":
            return self.offload
        plan = getattr(self.engine, "last_memory_plan", None)
        return bool(plan is not None and plan.offload_text_encoder)

    @property
    def resident(self) -> bool:
        """True while the LM's weights are on its device."""
        from ..runtime import parking

        if parking.is_parked(self.model):
            return False
        return next(self.model.parameters()).device.type == self.device.type

    def put_away(self) -> None:
        """Move the LM off its device now (on a CPU: park its weights on disk); the next call brings it back."""
        with self._lock:
            self._move_out()

    def bring_back(self) -> None:
        """Put the LM back on its device (every call does this first)."""
        with self._lock:
            self._move_in()

    def _move_out(self) -> None:
        from ..runtime import parking

        self.decoder.forget_code_head()
        if self.device.type == "cpu":
            if not parking.is_parkable(self.model) and self.path is not None:  # attached on first use: its
                files = sorted(Path(self.path).glob("*.safetensors"))      # hooks cost nothing until then
                parking.attach(self.model, parking.same_keys(self.model, files, prefix="model."),
                               next(self.model.parameters()).dtype)
            parking.park(self.model)
        else:
            self.model.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _move_in(self) -> None:
        from ..runtime import parking

        if parking.is_parked(self.model):
            parking.restore(self.model)
        elif next(self.model.parameters()).device.type != self.device.type:
            self.model.to(self.device)



def _seeds(seeds, count: int) -> list[int]:
    """None -> random; an int -> seed, seed + 1, ...; else one int per row; each in 0..2**63 - 1, as the
    engine takes them (no wrap-around)."""
    if seeds is None:
        return [secrets.randbelow(MAX_SEED + 1) for _ in range(count)]
    name = "seed" if count == 1 else "seeds"
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        out = [int(seeds) + i for i in range(count)]
    elif isinstance(seeds, (list, tuple)):
        if len(seeds) != count:
            raise TaskError(f"{name} must be an int or a list of {count} ints (got {len(seeds)} seeds)")
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in seeds):
            raise TaskError(f"{name} must be whole numbers from 0 to 2**63 - 1 (got {list(seeds)!r:.120})")
        out = [int(s) for s in seeds]
    else:
        listed = f", a list of {count} of them" if count > 1 else ""
        raise TaskError(f"{name} must be a whole number from 0 to 2**63 - 1{listed} or None "
                        f"(got {seeds!r:.60} of type {type(seeds).__name__})")
    bad = [s for s in out if not 0 <= s <= MAX_SEED]
    if bad:
        extra = f" (seed + {count - 1} for {count} rows)" if isinstance(seeds, numbers.Integral) and count > 1 else ""
        raise TaskError(f"{name} must be from 0 to 2**63 - 1{extra} (got {bad[0]})")
    return out


def _offload_option(value):
    if value == "auto" or isinstance(value, bool):
        return value
    raise TaskError(f"offload must be True, False or 'auto' (got {value!r})")


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TaskError(f"{name} must be True or False (got {value!r})")
    return value


def _text_chars(value) -> int | None:
    """The `max_text_chars` option: 1 .. MAX_TEXT_CHARS, or None (no cap, as upstream)."""
    return check_number("max_text_chars", value, 1, MAX_TEXT_CHARS, whole=True, optional=True)


def _fit_lyrics(text: str) -> str:
    """Lyrics as a Blueprint holds them: with no character cap (upstream's rule) the LM may write
    more than MAX_LYRICS_CHARS; keep the whole lines that fit."""
    if len(text) < MAX_LYRICS_CHARS:
        return text
    cut = text[: MAX_LYRICS_CHARS - 1]
    return cut[: cut.rfind("\n")].rstrip() if "\n" in cut else cut


def _checked(blueprint) -> Blueprint:
    if not isinstance(blueprint, Blueprint):
        raise TaskError(f"blueprint must be a Blueprint (got {type(blueprint).__name__})")
    return blueprint.validate()


def _planned(fields) -> tuple[str, ...]:
    return tuple(sorted(set(fields)))


logging.getLogger(__name__).addHandler(logging.NullHandler())
