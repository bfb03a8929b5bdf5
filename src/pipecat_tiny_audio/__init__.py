"""Local, streaming speech-to-text for Pipecat on the Tiny Audio model family."""

from pipecat_tiny_audio.audio import SAMPLE_RATE, AudioInputError, to_model_audio
from pipecat_tiny_audio.configuration import TinyAudioConfig
from pipecat_tiny_audio.features import FeatureMode, encode_audio
from pipecat_tiny_audio.modeling import CheckpointError, TinyAudioModel
from pipecat_tiny_audio.projectors import AudioProjector, register_projector
from pipecat_tiny_audio.sources import WeightsNotFoundError
from pipecat_tiny_audio.streaming import Hypothesis, StreamingDecoder

__all__ = [
    "SAMPLE_RATE",
    "AudioInputError",
    "AudioProjector",
    "CheckpointError",
    "FeatureMode",
    "Hypothesis",
    "StreamingDecoder",
    "TinyAudioConfig",
    "TinyAudioModel",
    "TinyAudioSTT",
    "WeightsNotFoundError",
    "encode_audio",
    "register_projector",
    "to_model_audio",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use: the model package works without Pipecat's service machinery loaded.
    if name == "TinyAudioSTT":
        from pipecat_tiny_audio.stt import TinyAudioSTT

        return TinyAudioSTT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
