"""Everyday sentences sampled from the bundled SmolLM2, to widen the corpus beyond WordNet + templates.

The dev set is conversational ("Yes, that sounds good to me.") while WordNet's examples are
dictionary prose and the templates are commands, so words like "hello", "tell" or "hear" are rare
in the corpus. A 135M instruct model writes poor paragraphs but good short lines when it continues
a list: each prompt names a kind of speech and a topic, shows three example lines, and the model's
next lines (``- ...``) become sentences. Every line goes through the corpus's own cleaning
(``clean_sentence``: spoken numbers, plain ASCII, 3-25 words) and the dev-set filter.

Two styles of prompt: ``lines`` (everyday statements, questions and commands) and ``turns`` (how
people open and close a call, answer yes or no, correct and thank someone: greetings and goodbyes are
almost absent from WordNet and the templates — "hello" is 4 of 22,000 training sentences in the first
four corpora — yet a voice agent hears them in every conversation).

Sampling 6,000 takes about an hour on one CPU core, so it resumes: each batch of prompts is seeded
by its number, and after each one the sentences so far are saved beside the output
(``<out>.progress.json``); a stopped run continues from there and writes the same list.

    python -m trainer sentences --out data/llm-sentences.txt --n 6000 --seed 0
    python -m trainer synth --out data/synth-llm --text data/llm-sentences.txt --n 4000 --seed 2
    python -m trainer sentences --out data/turn-sentences.txt --style turns --n 3000 --seed 1
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger
from tqdm import tqdm

from pipecat_tiny_audio.sources import SMOLLM2_135M, load_llm
from trainer.text_corpus import DevSetFilter, clean_sentence, write_text_atomically

KINDS = (
    "Short sentences people say out loud about {topic}",
    "Questions people ask about {topic}",
    "Things people tell a voice assistant about {topic}",
    "What people say on the phone about {topic}",
    "Short sentences from a story about {topic}",
    "Things friends say to each other about {topic}",
    "Short replies people give when asked about {topic}",
)

TOPICS = (
    "the weather", "their weekend", "cooking dinner", "a doctor's appointment", "a train journey",
    "booking a hotel room", "a birthday party", "the news", "a football match", "their garden",
    "a job interview", "a broken phone", "a lost wallet", "the bank", "buying a car", "a school trip",
    "a rainy afternoon", "a new apartment", "their neighbours", "a wedding", "the dentist",
    "a flight delay", "a road trip", "a museum visit", "their pets", "a concert", "shopping for shoes",
    "a restaurant order", "a package delivery", "a computer problem", "the gym", "a camping trip",
    "a family dinner", "learning to swim", "a traffic jam", "the library", "a power cut",
    "a haircut", "a hospital visit", "the post office", "a snowstorm", "a coffee shop",
    "moving house", "a cooking class", "an online order", "a meeting at work", "a phone bill",
    "the morning news", "a summer holiday", "a science lesson", "an old photograph", "a bike ride",
    "a fishing trip", "the supermarket", "a noisy neighbour", "a music lesson", "a late bus",
    "a bakery", "their grandparents", "a city tour", "a storm at sea", "a farm", "a mountain hike",
    "a board game", "a movie night", "a car repair", "a parking ticket", "a hotel breakfast",
    "a lost dog", "paying rent", "a bank loan", "a flat tyre", "a job offer", "their first day at work",
    "a cold", "a kitchen fire", "a surprise visit", "a long queue", "a village market", "the airport",
    "a thunderstorm", "their favourite book", "a new phone", "a school play", "a river walk",
    "an insurance claim", "a hardware store", "a delayed refund", "an alarm clock", "a hot summer day",
    "the beach", "a taxi ride", "a lighthouse", "a bookshop", "a pharmacy", "the evening plans",
)  # fmt: skip

EXAMPLES = (
    "I think it might rain later today.",
    "Could you call me back in ten minutes?",
    "We walked home along the river.",
    "That was the best soup I have ever had.",
    "Where did you put the car keys?",
    "Remind me to buy milk on the way home.",
    "The bus was twenty minutes late again.",
    "Sorry, I didn't catch your name.",
    "She opened the window to let the cold air in.",
    "Can I pay with a card here?",
    "My brother is coming to visit next week.",
    "Turn off the lights in the kitchen.",
    "I'm not sure that's a good idea.",
    "The kids fell asleep before the movie ended.",
    "How long does it take to get there by car?",
    "He left his jacket at the office.",
    "Please let me know when you arrive.",
    "The shop on the corner closed last year.",
    "Do you want to come over for dinner on Friday?",
    "It's colder than it looks outside.",
    "I need to book an appointment for next Tuesday.",
    "The old man fed the pigeons every morning.",
    "What time does the game start?",
    "We ran out of coffee this morning.",
)


TURN_KINDS = (
    "How people greet someone when a phone call about {topic} begins",
    "How people start talking to a voice assistant about {topic}",
    "Short answers that begin with yes, no, okay or sure, about {topic}",
    "How people thank someone and say goodbye after a call about {topic}",
    "How people politely correct a misunderstanding about {topic}",
)

TURN_EXAMPLES = (
    "Hi, is this the front desk?",
    "Hello, I'm calling about my order.",
    "Good morning, how are you today?",
    "Hey there, do you have a minute?",
    "Good afternoon, I'd like to make a booking.",
    "Hi, it's me again, just checking in.",
    "Yes, please go ahead.",
    "No, that's not what I meant.",
    "Okay, I'll wait for your email.",
    "Sure, Tuesday works for me.",
    "No problem, take your time.",
    "Right, so what happens next?",
    "Sorry, could you say that again?",
    "Not that one, the one on the left.",
    "I meant next Friday, not this one.",
    "Actually, make it two tickets instead.",
    "Thanks a lot, you've been a great help.",
    "Bye for now, talk to you soon.",
    "Have a good night, see you tomorrow.",
    "Great, thanks for letting me know.",
    "Alright, goodbye then.",
    "That's perfect, thank you so much.",
    "Cheers, have a lovely weekend.",
    "Okay, thanks, bye.",
)


@dataclass(frozen=True)
class PromptStyle:
    """What the prompts ask for: list headers (each naming a ``{topic}``) and example lines to continue."""

    kinds: tuple[str, ...]
    examples: tuple[str, ...]


STYLES = {"lines": PromptStyle(KINDS, EXAMPLES), "turns": PromptStyle(TURN_KINDS, TURN_EXAMPLES)}


def make_prompt(rng: np.random.Generator, style: PromptStyle = STYLES["lines"]) -> str:
    """A list header (kind × topic) and three example lines; the model writes the next lines."""
    header = style.kinds[rng.integers(len(style.kinds))].format(topic=TOPICS[rng.integers(len(TOPICS))])
    examples = [style.examples[i] for i in rng.choice(len(style.examples), size=3, replace=False)]
    return header + ":\n" + "".join(f"- {e}\n" for e in examples) + "-"


def continued_lines(continuation: str) -> list[str]:
    """The list items a continuation wrote: its first line, then each ``- ...`` line until the list ends.

    A list still open at the end of the continuation was cut by the token limit: its last item is dropped.
    """
    first, *rest = continuation.split("\n")
    lines = [first]
    for line in rest:
        if not line.startswith("- "):
            break
        lines.append(line[2:])
    else:
        lines.pop()
    return [line.strip() for line in lines if line.strip()]


def sample_sentences(
    n: int,
    seed: int,
    *,
    style: str = "lines",
    llm_source: str = SMOLLM2_135M,
    batch_size: int = 16,
    max_new_tokens: int = 80,
    dev_filter: DevSetFilter | None = None,
    progress_file: Path | None = None,
) -> list[str]:
    """``n`` distinct cleaned sentences, none from the dev set and none of the prompts' examples.

    Same ``n``, ``seed``, weights and torch thread count give the same list. With ``progress_file``
    the sentences so far are saved there after every batch, and a call with the same settings
    continues from them (a larger ``n`` extends the list).
    """
    import torch

    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; expected one of {sorted(STYLES)}")
    prompt_style = STYLES[style]
    dev_filter = dev_filter if dev_filter is not None else DevSetFilter.from_file()
    settings = {
        "seed": seed,
        "style": style,
        "llm": llm_source,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
    }
    state = _load_progress(progress_file, settings)
    sentences, lines_read = state["sentences"], state["lines_read"]
    llm, tokenizer = load_llm(llm_source)
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    seen = set(prompt_style.examples) | set(sentences)
    with tqdm(total=n, initial=min(len(sentences), n), desc="sentences", unit="sentence") as progress:
        while len(sentences) < n:
            rng = np.random.default_rng([seed, state["batches"]])
            torch.manual_seed(int(rng.integers(2**62)))
            prompts = [make_prompt(rng, prompt_style) for _ in range(batch_size)]
            batch = tokenizer(prompts, return_tensors="pt", padding=True)
            with torch.no_grad():
                out = llm.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=True,
                    temperature=0.9,
                    top_p=0.95,
                    pad_token_id=pad_id,
                )
            continuations = tokenizer.batch_decode(out[:, batch.input_ids.shape[1] :], skip_special_tokens=True)
            for line in (line for text in continuations for line in continued_lines(text)):
                lines_read += 1
                sentence = clean_sentence(line)
                if sentence and sentence not in seen and not dev_filter.rejects(sentence):
                    seen.add(sentence)
                    sentences.append(sentence)
                    progress.update(1)
            state.update(batches=state["batches"] + 1, lines_read=lines_read)
            if progress_file is not None:
                write_text_atomically(progress_file, json.dumps({"settings": settings, **state}))
    logger.info(f"kept {len(sentences)} of {lines_read} sampled lines")
    return sentences[:n]


def _load_progress(path: Path | None, settings: dict) -> dict:
    """The state a stopped run saved with these ``settings``, or a fresh one."""
    fresh = {"batches": 0, "lines_read": 0, "sentences": []}
    if path is None or not path.exists():
        return fresh
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        state = {key: saved[key] for key in fresh}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a sentences progress file ({error}): delete it to start over") from None
    if saved.get("settings") != settings:
        raise ValueError(f"{path} was saved with {saved.get('settings')}, not {settings}: delete it to start over")
    logger.info(f"resuming from {path}: {len(state['sentences'])} sentences after {state['batches']} batches")
    return state


def write_sentences(path: Path, sentences: Sequence[str]) -> None:
    """One sentence per line, written atomically (the file ``synth --text`` reads)."""
    write_text_atomically(path, "".join(f"{s}\n" for s in sentences))


def progress_path(out: Path) -> Path:
    """Where ``sentences --out OUT`` keeps its progress until OUT is written."""
    return out.with_name(out.name + ".progress.json")


def add_sentences_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sentences`` subcommand's options (for ``trainer/__main__.py``)."""
    parser.add_argument("--out", type=Path, required=True, help="text file to write, one sentence per line")
    parser.add_argument("--n", type=int, default=6000, help="number of distinct sentences (default 6000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for prompts and sampling")
    parser.add_argument(
        "--style",
        choices=sorted(STYLES),
        default="lines",
        help="lines: everyday statements, questions and commands; turns: greetings, yes/no answers, corrections, "
        "thanks and goodbyes (default lines)",
    )
    parser.add_argument("--llm", default=SMOLLM2_135M, help=f"causal LM to sample from (default {SMOLLM2_135M})")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate() call (default 16)")


def run_sentences(args: argparse.Namespace) -> int:
    """Runs ``sentences`` from parsed arguments; returns the process exit code."""
    progress = progress_path(args.out)
    sentences = sample_sentences(
        args.n, args.seed, style=args.style, llm_source=args.llm, batch_size=args.batch_size, progress_file=progress
    )
    write_sentences(args.out, sentences)
    progress.unlink(missing_ok=True)
    logger.info(f"wrote {len(sentences)} sentences to {args.out}")
    return 0
