"""TinyAudioModel: frozen Whisper encoder → trained projector → causal LLM with LoRA.

Plain tensors in, plain tensors out; nothing here knows about Pipecat. The checkpoint folder
holds only what training changes (projector, any fine-tuned top encoder layers, LoRA adapter,
tokenizer with the ``<audio>`` token) plus a config naming the encoder and LLM sources.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from pipecat_tiny_audio.audio import MIN_SAMPLES, SAMPLE_RATE, AudioInputError, to_model_audio
from pipecat_tiny_audio.configuration import TinyAudioConfig
from pipecat_tiny_audio.decoding import greedy_decode, run_steps
from pipecat_tiny_audio.features import FeatureMode, encode_audio
from pipecat_tiny_audio.projectors import build_projector
from pipecat_tiny_audio.prompt import IGNORE_INDEX, TranscriptionPrompt
from pipecat_tiny_audio.recogniser_stream import RecogniserStream
from pipecat_tiny_audio.sources import load_llm, load_whisper_encoder

PROJECTOR_FILE = "model.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
READINGS = ("generate", "rescore")
SILENCE_PEAK = 1e-4  # digital silence: below 1/3 of an int16 step


class CheckpointError(ValueError):
    """A checkpoint folder is missing a file or holds a corrupt one; the message names it."""


def check_device(device: str | torch.device) -> str:
    """``device`` as a string once it is known to exist here: ``cpu``, ``cuda`` or ``cuda:N`` with CUDA.

    Raises ``ValueError`` up front, instead of an ``AssertionError`` from torch after a full model load.
    """
    name = str(device)
    if name != "cpu" and name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but this torch ({torch.__version__}) sees no CUDA GPU; use device='cpu'")
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return name


def _atomic_write(path: Path, write) -> None:
    """Write ``path`` via a temporary file and a rename, so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make shipped/exported files private
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def feature_mode_of(config: TinyAudioConfig) -> FeatureMode:
    """The features a model of ``config`` reads: how its audio is cut, and which encoder layers."""
    cut = (config.chunk_seconds, config.left_context_seconds, config.right_context_seconds)
    return FeatureMode(*cut, tuple(config.extra_encoder_layers))


class TinyAudioModel(PreTrainedModel):
    """Speech-to-text with an LLM decoder.

    Build a fresh model from a config (encoder and LLM are loaded from their sources; pass
    ``encoder``/``llm``/``tokenizer`` to reuse already-loaded ones), or load a trained one with
    :meth:`from_pretrained`. :meth:`transcribe` turns audio into text; :meth:`forward` is the
    training step (LM loss on transcript tokens only).
    """

    config_class = TinyAudioConfig
    base_model_prefix = "tiny_audio"
    main_input_name = "input_ids"

    def __init__(self, config: TinyAudioConfig, encoder=None, llm=None, tokenizer=None):
        super().__init__(config)
        encoder = encoder if encoder is not None else load_whisper_encoder(config.encoder_source)
        if config.encoder_trained_layers:
            encoder = _with_own_top_layers(encoder, config.encoder_trained_layers)
        self.encoder = encoder.requires_grad_(False).eval()
        if llm is None:
            llm, loaded_tokenizer = load_llm(config.llm_source)
            tokenizer = tokenizer or loaded_tokenizer
        if tokenizer is None:
            raise ValueError("pass the LLM's tokenizer together with llm=")
        llm.requires_grad_(False)
        config.encoder_dim = self.feature_mode.feature_dim(self.encoder)
        config.llm_dim = llm.config.hidden_size
        self.projector = build_projector(
            config.projector_type,
            config.encoder_dim,
            config.llm_dim,
            config.stack_factor,
            config.projector_hidden_dim or config.llm_dim,
            **(config.projector_options or {}),
        )
        if config.reading not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, got {config.reading!r}")
        if config.reading == "rescore" and self.projector.vocabulary is None:
            raise ValueError(f"reading='rescore' needs a projector with a CTC head, not {config.projector_type!r}")
        embeddings = llm.get_input_embeddings().weight
        self.projector.init_output_scale(float(embeddings.float().pow(2).mean().sqrt()))
        if config.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_target_modules),
                bias="none",
                task_type="CAUSAL_LM",
            )
            llm = get_peft_model(llm, lora)
        self.llm = llm
        self.inference_only = False  # set by optimize_for_inference()
        self.tokenizer = tokenizer
        self.prompt = TranscriptionPrompt.from_tokenizer(
            tokenizer, config.user_prompt, config.system_prompt, config.audio_token
        )

    # -- pieces shared by training, offline and streaming inference -------------------------

    @property
    def feature_mode(self) -> FeatureMode:
        return feature_mode_of(self.config)

    def encode(self, audio: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Encoder features (frames, d) of 16 kHz mono float audio, in the model's feature mode."""
        return encode_audio(self.encoder, audio, self.feature_mode)

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """LLM input embeddings; ``<audio>`` placeholders (outside the LLM vocab) map to row 0."""
        table = self.llm.get_input_embeddings()
        ids = torch.where(input_ids < table.num_embeddings, input_ids, torch.zeros_like(input_ids))
        return table(ids.to(table.weight.device))

    def max_tokens_for(self, audio_seconds: float) -> int:
        return min(self.config.max_new_tokens, math.ceil(4 + audio_seconds * self.config.max_tokens_per_second))

    # -- training ---------------------------------------------------------------------------

    def prepare_batch(
        self, features: list[torch.Tensor], transcripts: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Right-padded tensors for :meth:`forward` from per-utterance features (and targets)."""
        k = self.config.stack_factor
        rows, labels = [], []
        for i, feats in enumerate(features):
            n_audio = -(-feats.shape[0] // k)
            if transcripts is None:
                ids = self.prompt.input_ids(n_audio)
                rows.append(ids)
                labels.append([IGNORE_INDEX] * len(ids))
            else:
                text_ids = self.tokenizer(transcripts[i], add_special_tokens=False).input_ids
                ids, lab = self.prompt.training_example(n_audio, text_ids)
                rows.append(ids)
                labels.append(lab)
        length = max(map(len, rows))
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        max_frames = max(f.shape[0] for f in features)
        audio = torch.zeros(len(features), max_frames, features[0].shape[-1])
        for i, feats in enumerate(features):
            audio[i, : feats.shape[0]] = feats
        batch = {
            "input_ids": torch.tensor([r + [pad_id] * (length - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows]),
            "audio_features": audio,
            "audio_lengths": torch.tensor([f.shape[0] for f in features]),
        }
        if transcripts is not None:
            batch["labels"] = torch.tensor([r + [IGNORE_INDEX] * (length - len(r)) for r in labels])
        return batch

    def merge_audio(
        self, input_ids: torch.Tensor, audio_features: torch.Tensor, audio_lengths: torch.Tensor
    ) -> torch.Tensor:
        """Token embeddings with projected audio written over the ``<audio>`` placeholders."""
        embeds = self.embed_tokens(input_ids)
        audio = self.projector(audio_features.to(embeds.device), audio_lengths.to(embeds.device))
        n_tokens = -(-audio_lengths.to(embeds.device) // self.config.stack_factor)
        valid = torch.arange(audio.shape[1], device=embeds.device)[None, :] < n_tokens[:, None]
        mask = (input_ids == self.prompt.audio_token_id).to(embeds.device)
        if int(mask.sum()) != int(n_tokens.sum()):
            raise ValueError(f"{int(mask.sum())} <audio> placeholders for {int(n_tokens.sum())} audio tokens")
        return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), audio[valid].to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        audio_features: torch.Tensor,
        audio_lengths: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> CausalLMOutputWithPast:
        """LLM output (logits, and loss when ``labels`` are given) for a prepared batch."""
        embeds = self.merge_audio(input_ids, audio_features, audio_lengths)
        return self.llm(
            inputs_embeds=embeds,
            attention_mask=attention_mask.to(embeds.device),
            labels=None if labels is None else labels.to(embeds.device),
        )

    # -- inference --------------------------------------------------------------------------

    @torch.no_grad()
    def recogniser_log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """CPU float [positions, classes] log-posteriors of the projector's own CTC head for features (frames, d)."""
        projector = self.projector
        frames = torch.tensor([features.shape[0]], device=features.device)
        hidden = projector.encode(features.unsqueeze(0).to(next(projector.parameters()).dtype), frames)
        return projector.ctc_logits(hidden)[0].float().log_softmax(-1).cpu()

    @torch.no_grad()
    def transcribe_features(self, features: torch.Tensor) -> str:
        """Greedy transcript of encoder features (frames, d), as the model's ``reading`` gives it."""
        if features.shape[0] == 0:
            return ""
        if self.config.reading == "rescore":
            return run_steps(self.llm, RecogniserStream(self).final_steps(features))
        batch = self.prepare_batch([features])
        embeds = self.merge_audio(batch["input_ids"], batch["audio_features"], batch["audio_lengths"])
        from transformers import DynamicCache

        tokens = greedy_decode(
            self.llm,
            self.embed_tokens,
            DynamicCache(),
            embeds,
            stop_id=self.prompt.end_of_turn_id,
            max_new_tokens=self.max_tokens_for(features.shape[0] * 0.02),
        )
        return self.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    @torch.no_grad()
    def transcribe(
        self, audio: bytes | np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE, num_channels: int | None = None
    ) -> str:
        """Transcript of one utterance. Empty or digitally silent audio gives ``""``.

        Accepts int16 PCM bytes or int16/float arrays (``(samples,)`` or ``(samples, channels)``) at
        any rate and channel count. Input that is not audio raises
        :class:`~pipecat_tiny_audio.audio.AudioInputError` (see :func:`to_model_audio`), and so does
        audio shorter than one 20 ms encoder frame.
        """
        samples = to_model_audio(audio, sample_rate, num_channels)
        if samples.size == 0:
            return ""
        if samples.size < MIN_SAMPLES:
            raise AudioInputError(
                f"{samples.size} samples at 16 kHz is shorter than one 20 ms frame: nothing to transcribe"
            )
        if float(np.abs(samples).max()) < SILENCE_PEAK:
            return ""
        if self.whole_utterance_final:
            return self._whole_utterance_transcript(samples)
        return self.transcribe_features(self.encode(samples))

    @property
    def whole_utterance_final(self) -> bool:
        """Whether a final is computed on whole-utterance features (a chunked recogniser's option)."""
        config = self.config
        return config.reading == "rescore" and config.whole_utterance_final and config.chunk_seconds is not None

    def _whole_utterance_transcript(self, samples: np.ndarray) -> str:
        """What a stream gives: the decoder's own path (the chunks feed the recogniser's beam, each segment's
        final runs on the segment encoded whole, and speech longer than a segment is cut as a stream cuts
        it, within Whisper's 30 s window)."""
        from pipecat_tiny_audio.streaming import StreamingDecoder  # it imports this module

        decoder = StreamingDecoder(self)
        decoder.feed(samples)
        return decoder.finalize()

    def optimize_for_inference(self, fp16: bool = True) -> TinyAudioModel:
        """Merge the LoRA adapter into the LLM and, on CPU, store the LLM's and the encoder's linear
        weights in fp16.

        Decoding on a CPU is bound by reading the LLM's weights, and half-size weights read
        faster (``python -m benchmarks.llm_cost``); fbgemm's fp16 kernels also encode a 1.96 s
        chunk window in half the time of float32 ones. Activations and accumulation stay float32, so
        every token is computed as if alone and a streaming final still equals the offline
        transcript; the encoder's frames move by ~1e-4 (of ~0.6) from the float32 frames the
        projector was trained on (``benchmarks.llm_cost`` prints it). (Int8 dynamic quantization
        is faster still, but shares one activation scale across the tokens of a pass: audio tokens
        swamp the text tokens' precision, which raised dev WER from 66 % to 96 % for a trained model
        here.) The projector stays as it is. This is one-way: the model can transcribe afterwards
        but no longer train or be saved.
        """
        if self.inference_only:
            return self
        if self.config.lora_rank > 0:
            self.llm = self.llm.merge_and_unload()
        if fp16 and self.device.type == "cpu":
            import warnings

            with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao, but still ships
                warnings.simplefilter("ignore")
                self.llm = torch.ao.quantization.quantize_dynamic(self.llm, {torch.nn.Linear}, dtype=torch.float16)
                self.encoder = torch.ao.quantization.quantize_dynamic(
                    self.encoder, {torch.nn.Linear}, dtype=torch.float16
                )
        self.inference_only = True
        return self.eval()

    # -- checkpoints ------------------------------------------------------------------------

    def trained_encoder_modules(self) -> dict[str, torch.nn.Module]:
        """The encoder's fine-tuned modules (top layers, final norm) by state-dict prefix; none when frozen."""
        layers, n = self.encoder.layers, self.config.encoder_trained_layers
        if not n:
            return {}
        return {f"encoder.layers.{i}": layers[i] for i in range(len(layers) - n, len(layers))} | {
            "encoder.layer_norm": self.encoder.layer_norm
        }

    def _trained_parts(self) -> dict[str, torch.nn.Module]:
        return {"projector": self.projector, **self.trained_encoder_modules()}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Projector weights (prefixed ``projector.``) and fine-tuned encoder weights (``encoder.``),
        as written to ``model.safetensors``."""
        return {
            f"{prefix}.{k}": v.detach().cpu().contiguous()
            for prefix, module in self._trained_parts().items()
            for k, v in module.state_dict().items()
        }

    def load_trainable_state_dict(
        self, state: dict[str, torch.Tensor], source: str, partial_encoder: bool = False
    ) -> None:
        """Load :meth:`trainable_state_dict`'s weights. ``partial_encoder`` lets the encoder layers this
        model trains but ``state`` lacks keep their current weights (a run starting from a model
        that trained fewer layers)."""
        parts = self._trained_parts()
        unknown = [k for k in state if not any(k.startswith(prefix + ".") for prefix in parts)]
        if unknown:
            raise CheckpointError(
                f"{source} has weights this model does not train: {unknown[:3]} "
                f"(encoder_trained_layers={self.config.encoder_trained_layers})"
            )
        for prefix, module in parts.items():
            weights = {k.removeprefix(prefix + "."): v for k, v in state.items() if k.startswith(prefix + ".")}
            if not weights and partial_encoder and prefix != "projector":
                continue
            what = f"{self.config.projector_type!r} projector" if prefix == "projector" else prefix
            mismatch = f"{source} does not match the {what}"
            try:
                missing, unexpected = module.load_state_dict(weights, strict=False)
            except RuntimeError as e:  # shape mismatch
                raise CheckpointError(f"{mismatch}: {e}") from None
            if missing or unexpected:
                raise CheckpointError(f"{mismatch}: missing {missing}, unexpected {unexpected}")

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        if self.config.lora_rank <= 0:
            return {}
        from peft import get_peft_model_state_dict

        return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(self.llm).items()}

    def save_pretrained(self, save_directory: str | os.PathLike, **_: object) -> None:
        """Write config, projector, LoRA adapter and tokenizer (not the base weights)."""
        if self.inference_only:
            raise RuntimeError("this model was merged/quantized by optimize_for_inference(): save the original")
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        _atomic_write(out / "config.json", self.config.to_json_file)
        _atomic_write(out / PROJECTOR_FILE, lambda p: save_file(self.trainable_state_dict(), p))
        if self.config.lora_rank > 0:
            _atomic_write(out / ADAPTER_FILE, lambda p: save_file(self.adapter_state_dict(), p))
            adapter_config = self.llm.peft_config["default"].to_dict()
            adapter_config["base_model_name_or_path"] = self.config.llm_source
            adapter_config = {k: sorted(v) if isinstance(v, set) else v for k, v in adapter_config.items()}
            _atomic_write(out / ADAPTER_CONFIG_FILE, lambda p: Path(p).write_text(json.dumps(adapter_config, indent=2)))
        self.tokenizer.save_pretrained(out)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *_: object,
        encoder=None,
        llm=None,
        device: str | torch.device | None = None,
        **__: object,
    ) -> TinyAudioModel:
        """Load a checkpoint folder or hub repo (ours, or upstream Tiny Audio's ``asr_model``).

        The device and the folder's small files (config, tokenizer JSON) are checked before any
        weights load; a problem raises a one-line ``ValueError``/:class:`CheckpointError` naming it.
        """
        if device is not None:
            device = check_device(device)
        folder = _checkpoint_folder(str(pretrained_model_name_or_path))
        config = _read_config(folder)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            _read_json(folder / name, required=False)
        tokenizer = None
        if llm is None:
            llm, tokenizer = load_llm(config.llm_source)
        if (folder / "tokenizer_config.json").is_file():
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(folder)
        model = cls(config, encoder=encoder, llm=llm, tokenizer=tokenizer)
        model._load_trainables(folder)
        model.eval()
        return model.to(device) if device is not None else model

    def _load_trainables(self, folder: Path) -> None:
        state = load_safetensors(folder / PROJECTOR_FILE, required=True)
        self.load_trainable_state_dict(state, str(folder / PROJECTOR_FILE))
        if self.config.lora_rank <= 0:
            return
        adapter = load_safetensors(folder / ADAPTER_FILE, required=False)
        if adapter is None:
            logger.warning(f"{folder} has no {ADAPTER_FILE}: running the LLM without LoRA weights")
            return
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(self.llm, adapter)
        if getattr(result, "unexpected_keys", None):
            raise CheckpointError(f"{folder / ADAPTER_FILE} has unexpected keys {result.unexpected_keys[:5]}")


def _with_own_top_layers(encoder: torch.nn.Module, layers: int) -> torch.nn.Module:
    """``encoder`` with its own copies of its top ``layers`` layers and final norm (the rest shared),
    so fine-tuned weights never reach another model that shares the loaded encoder."""
    if not 0 < layers <= len(encoder.layers):
        raise ValueError(f"encoder_trained_layers must be in [0, {len(encoder.layers)}], got {layers}")
    own = copy.copy(encoder)
    own._modules, own._parameters, own._buffers = dict(own._modules), dict(own._parameters), dict(own._buffers)
    top = len(encoder.layers) - layers
    own.layers = torch.nn.ModuleList([*encoder.layers[:top], *(copy.deepcopy(x) for x in encoder.layers[top:])])
    own.layer_norm = copy.deepcopy(encoder.layer_norm)
    return own


def _checkpoint_folder(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")):
        raise CheckpointError(f"{source} is not a checkpoint folder")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source))
    except Exception as e:  # offline, unknown repo, auth: all mean "not available here"
        raise CheckpointError(
            f"{source!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(e).__name__}: {e})"
        ) from None


def _read_json(path: Path, required: bool) -> dict | None:
    """A checkpoint file holding one JSON object; :class:`CheckpointError` naming it otherwise."""
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path} is missing: not a Tiny Audio checkpoint folder")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got a JSON {type(data).__name__}")
    return data


# Config fields and the types a loaded config.json must give them (None allowed where listed).
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "encoder_source": (str,),
    "llm_source": (str,),
    "projector_type": (str,),
    "stack_factor": (int,),
    "projector_hidden_dim": (int, type(None)),
    "lora_rank": (int,),
    "lora_alpha": (int, float),
    "lora_dropout": (int, float),
    "lora_target_modules": (list,),
    "user_prompt": (str,),
    "system_prompt": (str, type(None)),
    "audio_token": (str,),
    "chunk_seconds": (int, float, type(None)),
    "left_context_seconds": (int, float),
    "right_context_seconds": (int, float),
    "projector_options": (dict, type(None)),
    "max_new_tokens": (int,),
    "max_tokens_per_second": (int, float),
    "encoder_trained_layers": (int,),
    "extra_encoder_layers": (list,),
}


def _check_config(config: TinyAudioConfig, path: Path) -> TinyAudioConfig:
    for key, types in _CONFIG_TYPES.items():
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise CheckpointError(f"{path}: {key} must be {expected}, got {value!r}")
    for key in ("stack_factor", "max_new_tokens"):
        if getattr(config, key) < 1:
            raise CheckpointError(f"{path}: {key} must be >= 1, got {getattr(config, key)!r}")
    return config


def _read_config(folder: Path) -> TinyAudioConfig:
    path = folder / "config.json"
    data = _read_json(path, required=True)
    model_type = data.get("model_type")
    if model_type == "asr_model":
        return _check_config(TinyAudioConfig.from_upstream(data), path)
    if model_type != TinyAudioConfig.model_type:
        raise CheckpointError(f"{path} describes a {model_type!r} model, not tiny_audio or asr_model")
    return _check_config(TinyAudioConfig.from_dict(data), path)


def load_safetensors(path: Path, required: bool) -> dict[str, torch.Tensor] | None:
    """A checkpoint's weight file, or None when an optional one is absent; a corrupt file is a CheckpointError,
    so every reader of checkpoint weights (loading, ``trainer average``) fails the same clear way."""
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path} is missing: the checkpoint has no trained projector")
        return None
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({e})") from None


AutoConfig.register(TinyAudioConfig.model_type, TinyAudioConfig)
AutoModel.register(TinyAudioConfig, TinyAudioModel)
