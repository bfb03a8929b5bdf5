"""Serving many sessions on one model: batching their LLM passes changes nothing but the time it
takes, a final never waits behind partials, and a partial that waits too long is skipped.

"Nothing" is float32 rounding: a batched pass multiplies more rows at once, and some CPUs' BLAS round a
one-row product differently from the same row inside a larger one (seen on an AMD EPYC with MKL: ~1e-6),
so logits and caches are compared with ``assert_close``'s float32 tolerance and transcripts exactly."""

from __future__ import annotations

import asyncio
import copy
import threading

import numpy as np
import pytest
import torch
from streaming_helpers import make_chatty, one_torch_thread  # noqa: F401 (an autouse fixture)
from transformers import DynamicCache

from pipecat_tiny_audio import StreamingDecoder, TinyAudioModel
from pipecat_tiny_audio.batch_scheduler import PARTIAL_PATIENCE, BatchScheduler, Priority
from pipecat_tiny_audio.decoding import Compute, Forward
from pipecat_tiny_audio.ragged_forward import ragged_forward


@pytest.fixture
def served(tiny_model) -> TinyAudioModel:
    """A chunked-mode model that writes audio-dependent text, prepared the way TinyAudioSTT serves it."""
    tiny_model.config.chunk_seconds, tiny_model.config.left_context_seconds = 0.48, 1.0
    return make_chatty(tiny_model).optimize_for_inference()


@pytest.fixture(scope="module")
def speech(say) -> list[np.ndarray]:
    return [
        say("please book a table for two people tonight"),
        say("what is the weather like in paris"),
        say("turn off the lights in the kitchen"),
        say("could you tell me what time it is"),
    ]


def prefilled(model: TinyAudioModel, length: int, seed: int) -> DynamicCache:
    cache = DynamicCache()
    embeds = torch.randn(1, length, model.config.llm_dim, generator=torch.Generator().manual_seed(seed)) * 0.05
    with torch.no_grad():
        model.llm(inputs_embeds=embeds, past_key_values=cache, use_cache=True)
    return cache


def fed(model: TinyAudioModel, audio: np.ndarray) -> StreamingDecoder:
    decoder = StreamingDecoder(model)
    decoder.feed(audio)
    return decoder


def test_a_ragged_batch_gives_the_logits_and_caches_of_one_pass_at_a_time(served):
    """Caches of different lengths; a draft check, a single-token step and a short pass in one forward."""
    width = served.config.llm_dim
    shapes = [(5, 7, 7), (17, 1, 1), (30, 3, 2)]  # (cached positions, new positions, logits kept)
    caches = [prefilled(served, cached, seed) for seed, (cached, _, _) in enumerate(shapes)]
    new = [torch.randn(1, n, width, generator=torch.Generator().manual_seed(10 + n)) * 0.05 for _, n, _ in shapes]
    alone_caches = [copy.deepcopy(c) for c in caches]
    alone = [Forward(x, c, k).run(served.llm) for x, c, (_, _, k) in zip(new, alone_caches, shapes, strict=True)]
    together = ragged_forward(
        served.llm, [Forward(x, c, k) for x, c, (_, _, k) in zip(new, caches, shapes, strict=True)]
    )
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(alone_caches, caches, strict=True):
        for x, y in zip(a.layers, b.layers, strict=True):
            torch.testing.assert_close((x.keys, x.values), (y.keys, y.values))


def test_a_tree_pass_batched_with_decodes_gives_its_logits_alone(served):
    """A scoring pass (a token tree that sees only some of its cache: the texts scored before) shares its
    forward with other sessions' decoding steps."""
    width = served.config.llm_dim
    # Two branches off the cache's first five tokens (a text scored before), one of them forking again.
    branches = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 0, 1, 0, 0],
            [1, 0, 0, 0, 1, 0],
            [1, 0, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    visible = torch.cat([torch.ones(6, 5, dtype=torch.bool), torch.zeros(6, 4, dtype=torch.bool), branches], dim=1)
    tree = torch.randn(1, 6, width, generator=torch.Generator().manual_seed(3)) * 0.05
    step = torch.randn(1, 1, width, generator=torch.Generator().manual_seed(4)) * 0.05
    scored, cache = prefilled(served, 9, seed=6), prefilled(served, 9, seed=5)
    alone = [
        Forward(tree, copy.deepcopy(scored), 6, visible).run(served.llm),
        Forward(step, copy.deepcopy(cache), 1).run(served.llm),
    ]
    together = ragged_forward(served.llm, [Forward(tree, scored, 6, visible), Forward(step, cache, 1)])
    for a, b in zip(alone, together, strict=True):
        torch.testing.assert_close(a, b)

    # A one-token pass that sees only part of its cache (a new one-token word) batches too.
    sees = torch.zeros(1, scored.get_seq_length() + 1, dtype=torch.bool)
    sees[0, [0, 1, 2, 3, 4, -1]] = True
    alone = Forward(step, copy.deepcopy(scored), 1, sees).run(served.llm)
    torch.testing.assert_close(
        ragged_forward(served.llm, [Forward(step, scored, 1, sees), Forward(step, cache, 1)])[0], alone
    )


async def test_partials_are_batched_and_a_final_goes_first(served, speech):
    scheduler = BatchScheduler(served, num_threads=1)
    decoders = [fed(served, audio) for audio in speech]
    twins = [fed(served, audio) for audio in speech]  # the same decoders, run alone
    finished: list[str] = []

    async def run(name: str, steps, priority: Priority):
        result = await scheduler.run(steps, priority)
        finished.append(name)
        return result

    gate = threading.Event()
    busy = asyncio.ensure_future(scheduler.call(gate.wait, priority=Priority.FINAL))  # everything queues behind it
    partials = [
        asyncio.ensure_future(run(f"partial {i}", d.partial_steps(), Priority.PARTIAL))
        for i, d in enumerate(decoders[:3])
    ]
    final = asyncio.ensure_future(run("final", decoders[3].finalize_steps(), Priority.FINAL))
    await asyncio.sleep(0.01)  # every job is queued
    gate.set()
    await busy
    hypotheses = await asyncio.gather(*partials)

    assert finished[0] == "final"
    assert await final == twins[3].finalize()
    assert [h.text for h in hypotheses] == [t.partial().text for t in twins[:3]]
    assert all(h.text for h in hypotheses), "empty partials would make the comparison vacuous"
    assert scheduler.stats.passes > scheduler.stats.batches, "the three partials' passes were never batched"


async def test_audio_is_encoded_on_one_thread_while_the_other_runs_another_sessions_llm_pass(served, speech):
    scheduler = BatchScheduler(served, num_threads=1)
    decoder = fed(served, speech[0])
    passed = threading.Event()

    def encode_after_the_pass():  # a compute that can only end once the other job's LLM pass has run
        assert passed.wait(10), "the LLM pass never ran while this compute waited"
        return "encoded"

    def encoding():
        return (yield Compute(encode_after_the_pass))

    def partial_then_signal():
        hypothesis = yield from decoder.partial_steps()
        passed.set()
        return hypothesis

    encoded, hypothesis = await asyncio.gather(
        scheduler.run(encoding(), Priority.AUDIO), scheduler.run(partial_then_signal(), Priority.AUDIO)
    )

    assert encoded == "encoded" and hypothesis.text
    assert scheduler.stats.lane_computes + scheduler.stats.lane_batches > 0, "the encoder lane did none of it"


async def test_a_partial_kept_waiting_too_long_is_skipped(served, speech):
    scheduler = BatchScheduler(served, num_threads=1)
    decoder = fed(served, speech[0])
    gate = threading.Event()
    busy = asyncio.ensure_future(scheduler.call(gate.wait, priority=Priority.FINAL))
    skipped = asyncio.ensure_future(scheduler.run(decoder.partial_steps(), Priority.PARTIAL))
    await asyncio.sleep(PARTIAL_PATIENCE + 0.2)
    gate.set()
    await busy
    assert await skipped is None
    hypothesis = await scheduler.run(decoder.partial_steps(), Priority.PARTIAL)  # nothing else waits now
    assert hypothesis.text == fed(served, speech[0]).partial().text
