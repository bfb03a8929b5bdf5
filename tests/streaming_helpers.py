"""Shared by the streaming decoder and STT service tests."""

from __future__ import annotations

import pytest
import torch

from pipecat_tiny_audio import TinyAudioModel


def make_chatty(model: TinyAudioModel) -> TinyAudioModel:
    """Random LLM weights large enough that the tiny model writes long, audio-dependent text.

    The stock tiny model stops at once, which would make every equality check vacuous.
    """
    model.config.max_new_tokens = 12  # long enough to be meaningful, short enough to be fast
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.llm.parameters():
            if param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread: on a shared 2-core machine, two threads spin-wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
