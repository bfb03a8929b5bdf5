"""Issue 12: would a noise suppressor in front of the model carry it to noisy unseen voices?

Writes an RNNoise-denoised copy of a manifest's clips (RNNoise, the suppressor behind Pipecat's
``RNNoiseFilter``, from the ``pyrnnoise`` wheel's bundled library: 16 kHz → 48 kHz → RNNoise in 10 ms
frames → 16 kHz, its 20 ms delay removed so every clip keeps its timing), for ``trainer eval`` to score:

    pip install --no-deps pyrnnoise==0.4.5
    PYTHONPATH=. python docs/probes/rnnoise_input.py data/synth8k/heldout/manifest.jsonl /tmp/rnnoise/unseen
    PYTHONPATH=. python docs/probes/rnnoise_input.py ../shared/eval/dev/manifest.jsonl /tmp/rnnoise/dev
    python -m trainer eval --model checkpoints/recogniser --served --out runs/eval-rnnoise-probe \
        --data unseen=/tmp/rnnoise/unseen/manifest.jsonl dev=/tmp/rnnoise/dev/manifest.jsonl

(``--no-deps``: the package's Python side needs ``audiolab``; this probe only loads its library.)
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RNNOISE_RATE = 48000


def _library() -> ctypes.CDLL:
    spec = importlib.util.find_spec("pyrnnoise")  # without importing it (its __init__ needs audiolab)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps pyrnnoise==0.4.5")
    lib = ctypes.CDLL(str(Path(next(iter(spec.submodule_search_locations))) / "librnnoise.so"))
    lib.rnnoise_create.argtypes, lib.rnnoise_create.restype = [ctypes.c_void_p], ctypes.c_void_p
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    floats = ctypes.POINTER(ctypes.c_float)
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, floats, floats]
    lib.rnnoise_process_frame.restype = ctypes.c_float
    return lib


def denoise(lib: ctypes.CDLL, audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` (float, mono) through RNNoise, same rate, length and timing."""
    frame = lib.rnnoise_get_frame_size()  # 480 samples: 10 ms
    delay = 2 * frame  # measured by cross-correlation against the input
    x = soxr.resample(audio.astype(np.float32), rate, RNNOISE_RATE) * 32768  # RNNoise works on int16 levels
    x = np.pad(x, (0, -len(x) % frame + delay)).astype(np.float32)
    out = np.empty_like(x)
    state = lib.rnnoise_create(None)
    try:
        for start in range(0, len(x), frame):
            block = np.ascontiguousarray(x[start : start + frame])
            denoised = np.empty(frame, np.float32)
            lib.rnnoise_process_frame(
                state, denoised.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                block.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            )  # fmt: skip
            out[start : start + frame] = denoised
    finally:
        lib.rnnoise_destroy(state)
    return soxr.resample(out[delay:] / 32768, RNNOISE_RATE, rate)[: len(audio)].astype(np.float32)


def main(manifest: Path, out_dir: Path) -> None:
    lib = _library()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        audio, rate = sf.read(manifest.parent / row["audio"], dtype="float32")
        name = Path(row["audio"]).stem + ".wav"
        sf.write(out_dir / name, denoise(lib, audio.mean(axis=1) if audio.ndim > 1 else audio, rate), rate)
        rows.append({**row, "audio": name})
    (out_dir / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"{out_dir}: {len(rows)} denoised clips")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
