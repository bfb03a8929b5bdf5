"""A local Pipecat TTS service around the ``espeak-ng`` command line synthesizer.

Robotic, but offline, tiny and instant: handy for demos and tests that must run with no
cloud keys and no downloaded voices (``apt-get install espeak-ng``).

Example::

    from pipecat_tiny_audio.espeak_tts import EspeakTTSService

    tts = EspeakTTSService(settings=EspeakTTSService.Settings(voice="en-us"), words_per_minute=170)
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from loguru import logger
from pipecat.frames.frames import ErrorFrame, Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

_WAV_HEADER_BYTES = 44  # espeak-ng writes a plain 44-byte PCM header before the samples
_READ_BYTES = 4096


@dataclass
class EspeakTTSSettings(TTSSettings):
    """Settings for :class:`EspeakTTSService`: ``voice`` is any ``espeak-ng --voices`` name."""


class EspeakTTSService(TTSService):
    """Text-to-speech with ``espeak-ng``, run as a subprocess per sentence.

    Audio is streamed from the subprocess as it is synthesized (16-bit mono PCM at
    espeak-ng's 22.05 kHz) and resampled to the pipeline's output rate. An interruption
    cancels the generator, which kills the subprocess.
    """

    Settings = EspeakTTSSettings
    _settings: Settings

    def __init__(
        self,
        *,
        words_per_minute: int = 165,
        pitch: int = 50,
        executable: str = "espeak-ng",
        settings: Settings | None = None,
        **kwargs,
    ):
        """Create the service.

        Args:
            words_per_minute: Speaking rate (espeak-ng ``-s``).
            pitch: Pitch, 0-99 (espeak-ng ``-p``).
            executable: Name or path of the ``espeak-ng`` binary.
            settings: Runtime-updatable settings; ``voice`` defaults to ``"en-us"``.
            **kwargs: Passed to :class:`~pipecat.services.tts_service.TTSService`
                (e.g. ``sample_rate``).
        """
        default_settings = self.Settings(model=None, voice="en-us", language=None)
        if settings is not None:
            default_settings.apply_update(settings)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=default_settings, **kwargs)
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError(f"{executable!r} not found: install it (Debian/Ubuntu: apt-get install espeak-ng)")
        self._executable = path
        self._words_per_minute = words_per_minute
        self._pitch = pitch

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Synthesize ``text`` and yield ``TTSAudioRawFrame``s as espeak-ng produces them."""
        command = [self._executable, "--stdout", "-v", str(self._settings.voice or "en-us")]
        command += ["-s", str(self._words_per_minute), "-p", str(self._pitch)]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await self.start_tts_usage_metrics(text)
            # Text goes through stdin so that nothing in it is read as an option.
            process.stdin.write(text.encode("utf-8"))
            await process.stdin.drain()
            process.stdin.close()

            header = await process.stdout.readexactly(_WAV_HEADER_BYTES)
            if header[:4] != b"RIFF":
                raise RuntimeError("espeak-ng did not write a WAV stream")
            rate = int.from_bytes(header[24:28], "little")

            async def pcm() -> AsyncIterator[bytes]:
                while chunk := await process.stdout.read(_READ_BYTES):
                    yield chunk

            async for frame in self._stream_audio_frames_from_iterator(
                pcm(), in_sample_rate=rate, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
            if await process.wait() != 0:
                stderr = (await process.stderr.read()).decode(errors="replace").strip()
                yield ErrorFrame(error=f"espeak-ng exited with {process.returncode}: {stderr}")
        except asyncio.IncompleteReadError:
            stderr = (await process.stderr.read()).decode(errors="replace").strip()
            yield ErrorFrame(error=f"espeak-ng produced no audio: {stderr}")
        except Exception as e:  # report, don't crash the pipeline
            logger.exception(f"{self}: espeak-ng failed")
            yield ErrorFrame(error=f"espeak-ng failed: {e}")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await self.stop_ttfb_metrics()
