"""Shared fixtures: real bundled weights, tiny random-weight models, and synthesized speech.

Everything is built locally: no fixture downloads anything.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipecat_tiny_audio import TinyAudioConfig, TinyAudioModel
from pipecat_tiny_audio.audio import to_model_audio
from pipecat_tiny_audio.sources import SMOLLM2_135M, WHISPER_BASE, llm_folder

DEV_SET = Path(__file__).resolve().parents[1].parent / "shared" / "eval" / "dev"


def speak(text: str, tmp_dir: Path, voice: str = "en-us", rate: int = 160) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` from espeak-ng."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = tmp_dir / f"speech-{abs(hash((text, voice, rate)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(wav), text], check=True)
    audio, rate_hz = sf.read(wav, dtype="float32")
    return to_model_audio(audio, rate_hz)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def say(speech_dir):
    """``say("hello world")`` → 16 kHz mono float32 array spoken by espeak-ng."""
    return lambda text, **kw: speak(text, speech_dir, **kw)


def tiny_sources(root: Path) -> tuple[str, str]:
    """Save a tiny random Whisper encoder and a tiny Llama (with SmolLM2's tokenizer) as local folders."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    torch.manual_seed(0)
    encoder_dir, llm_dir = root / "tiny-whisper", root / "tiny-llm"
    if not encoder_dir.exists():
        encoder = WhisperEncoder(
            WhisperConfig(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128)
        )
        encoder.save_pretrained(encoder_dir)
    if not llm_dir.exists():
        tokenizer = AutoTokenizer.from_pretrained(llm_folder(SMOLLM2_135M))
        llm = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(tokenizer),
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                tie_word_embeddings=True,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
        llm.save_pretrained(llm_dir)
        tokenizer.save_pretrained(llm_dir)
    return str(encoder_dir), str(llm_dir)


@pytest.fixture(scope="session")
def tiny_source_dirs(tmp_path_factory) -> tuple[str, str]:
    return tiny_sources(tmp_path_factory.mktemp("tiny-sources"))


@pytest.fixture(scope="session")
def tiny_config(tiny_source_dirs) -> TinyAudioConfig:
    encoder, llm = tiny_source_dirs
    return TinyAudioConfig(encoder_source=encoder, llm_source=llm, projector_hidden_dim=32, lora_rank=4)


@pytest.fixture
def tiny_model(tiny_config) -> TinyAudioModel:
    """A fresh random-weight model small enough to train and decode in milliseconds."""
    import torch

    torch.manual_seed(0)
    return TinyAudioModel(TinyAudioConfig.from_dict(tiny_config.to_dict())).eval()


@pytest.fixture
def adapted_tiny_model(tiny_model) -> TinyAudioModel:
    """``tiny_model`` with a non-zero LoRA adapter, as after training (fresh LoRA is a no-op)."""
    import torch

    with torch.no_grad():
        for name, param in tiny_model.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)
    return tiny_model


@pytest.fixture(scope="session")
def base_model() -> TinyAudioModel:
    """The default architecture on the real bundled weights (Whisper base + SmolLM2-135M), untrained projector."""
    import torch

    torch.manual_seed(0)
    return TinyAudioModel(TinyAudioConfig(encoder_source=WHISPER_BASE, llm_source=SMOLLM2_135M)).eval()


def pytest_collection_modifyitems(config, items):
    """Slow tests run only with RUN_SLOW=1 (``make test-all``), keeping ``make test`` quick."""
    import os

    if os.environ.get("RUN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: set RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
