"""A voice bot you talk to in the browser, with TinyAudioSTT transcribing while you speak.

Run it from the repository root:

    pip install -e ".[webrtc]"           # Pipecat's runner and SmallWebRTC transport
    sudo apt-get install espeak-ng       # the bot's local voice
    python examples/bot.py               # then open http://localhost:7860 and click Connect

Everything runs on this machine and no API key is needed. The page shows your words as
interim transcripts (grey) while you speak, and the final transcript when you stop; the bot
then answers out loud. Offline it answers from a few rules (ask it the time or the date, say
hello, or say anything and it repeats what it heard).

Options (see ``--help`` for all of Pipecat's runner options):

    --model PATH        a TinyAudio checkpoint folder (default: the model shipped with the package)
    --voice NAME        the espeak-ng voice of the bot (default: en-us)
    --port / --host     where to serve the page (default: localhost:7860)
    -t daily            join a Daily room instead of serving WebRTC (pip install "pipecat-ai[daily]",
                        set DAILY_API_KEY, and optionally DAILY_ROOM_URL)

Environment:

    OPENAI_API_KEY      answer with an LLM through Pipecat's LLM context aggregators instead of
                        the offline rules (OPENAI_MODEL, default gpt-4o-mini)
    OPENAI_BASE_URL     any OpenAI-compatible server, for example a local Ollama:
                        OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_MODEL=llama3.2

Pipeline: transport in -> TinyAudioSTT -> user context aggregator (Silero VAD, Pipecat's turn
detection) -> LLM or offline responder -> espeak-ng TTS -> transport out -> assistant aggregator.
TinyAudioSTT sends a finalized transcript as soon as the VAD reports the end of speech, so the
turn ends, and the bot answers, without waiting for a transcription of the whole utterance.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from datetime import datetime
from pathlib import Path

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.processors.frameworks.rtvi import RTVIObserverParams
from pipecat.runner.types import RunnerArguments
from pipecat.runner.utils import create_transport
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner

from pipecat_tiny_audio import TinyAudioSTT
from pipecat_tiny_audio.espeak_tts import EspeakTTSService

PAGE = Path(__file__).with_name("bot.html")
GREETING = "Hello! I'm listening."
SYSTEM_PROMPT = (
    "You are a friendly voice assistant in a live conversation. Your replies are spoken aloud, "
    "so answer in one or two short sentences of plain text, without lists or formatting. "
    "The user's words come from a speech recognizer and may contain mistakes."
)


def reply_to(text: str, now: datetime | None = None) -> str:
    """The offline bot's answer to one user turn: a few useful rules, else an echo."""
    words = set(re.findall(r"[a-z']+", text.lower()))
    if not words:
        return ""
    now = now or datetime.now()
    if "time" in words:
        return f"It's {now.strftime('%I:%M %p').lstrip('0')}."
    if words & {"date", "day", "today"}:
        return f"Today is {now.strftime('%A, %B')} {now.day}."
    if words & {"hello", "hi", "hey"}:
        return "Hello! Ask me the time or the date, or say anything and I'll repeat it."
    if words & {"bye", "goodbye"}:
        return "Goodbye, and thanks for talking to me!"
    if "name" in words or {"who", "you"} <= words:
        return "I'm a Pipecat bot. Tiny Audio transcribes you while you talk, right here on this computer."
    if "help" in words or {"what", "can", "do"} <= words:
        return "You can ask me the time or the date, say hello, or say anything and I'll repeat what I heard."
    return f"I heard: {text.strip()}"


class LocalResponder(FrameProcessor):
    """Takes an LLM's place when there is no API key: answers each user turn with :func:`reply_to`.

    It consumes the ``LLMContextFrame`` the user aggregator sends at the end of a turn and
    produces the frames an LLM would (response start, text, response end), so the TTS, the
    assistant aggregator and the RTVI messages to the page work exactly as with an LLM.
    """

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        if frame.speculation:  # never answer a turn that is not confirmed yet
            return
        reply = reply_to(new_user_text(frame.context))
        if reply:
            await self.push_frame(LLMFullResponseStartFrame())
            await self.push_frame(LLMTextFrame(reply))
            await self.push_frame(LLMFullResponseEndFrame())


def new_user_text(context: LLMContext) -> str:
    """The user's words this turn: the last message, if it is the user's (a turn can end with none)."""
    messages = context.get_messages()
    message = messages[-1] if messages else None
    if not isinstance(message, dict) or message.get("role") != "user":
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def make_responder() -> FrameProcessor:
    """An OpenAI-compatible LLM when one is configured, else the offline :class:`LocalResponder`."""
    if not (os.getenv("OPENAI_API_KEY") or os.getenv("OPENAI_BASE_URL")):
        return LocalResponder()
    from pipecat.services.openai.llm import OpenAILLMService

    model = os.getenv("OPENAI_MODEL", "gpt-4o-mini")
    logger.info(f"Answering with {model} at {os.getenv('OPENAI_BASE_URL') or 'OpenAI'}")
    return OpenAILLMService(
        api_key=os.getenv("OPENAI_API_KEY") or "none",  # local servers such as Ollama ignore the key
        base_url=os.getenv("OPENAI_BASE_URL") or None,
        settings=OpenAILLMService.Settings(model=model, system_instruction=SYSTEM_PROMPT),
    )


def webrtc_params() -> TransportParams:
    return TransportParams(audio_in_enabled=True, audio_out_enabled=True)


def daily_params():
    from pipecat.transports.daily.transport import DailyParams  # needs pipecat-ai[daily]

    return DailyParams(audio_in_enabled=True, audio_out_enabled=True)


async def bot(runner_args: RunnerArguments):
    """Pipecat's runner calls this once per browser connection (or Daily room)."""
    cli = getattr(runner_args, "cli_args", None)
    transport = await create_transport(runner_args, {"webrtc": webrtc_params, "daily": daily_params})

    stt = TinyAudioSTT(model=getattr(cli, "model", None))
    tts = EspeakTTSService(settings=EspeakTTSService.Settings(voice=getattr(cli, "voice", None) or "en-us"))
    context = LLMContext()
    user_aggregator, assistant_aggregator = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    pipeline = Pipeline(
        [
            transport.input(),
            stt,
            user_aggregator,
            make_responder(),
            tts,
            transport.output(),
            assistant_aggregator,
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(enable_metrics=True),
        # Raw VAD events let the page show how soon after you stop the final transcript lands.
        rtvi_observer_params=RTVIObserverParams(vad_user_speaking_enabled=True),
        idle_timeout_secs=runner_args.pipeline_idle_timeout_secs,
    )

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        logger.info("Client connected")
        await worker.queue_frames([TTSSpeakFrame(GREETING)])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        logger.info("Client disconnected")
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default=None, help="TinyAudio checkpoint folder (default: the bundled model)")
    parser.add_argument("--voice", default="en-us", help="espeak-ng voice for the bot (default: en-us)")
    return parser


def serve_page_at_root() -> None:
    """Serve bot.html at / (Pipecat's prebuilt client stays at /client/) for the WebRTC transport."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("-t", "--transport", default=None)
    peek.add_argument("-d", "--direct", action="store_true")
    known, _ = peek.parse_known_args()
    if known.direct or known.transport not in (None, "webrtc"):
        return  # other transports keep the runner's own page

    from fastapi.responses import FileResponse
    from pipecat.runner.run import app

    @app.get("/", include_in_schema=False)
    async def index():  # registered before the runner's redirect to /client/, so it wins
        return FileResponse(PAGE, headers={"Cache-Control": "no-store"})


def preload_model() -> None:
    """Load the STT model before serving, so the first connection does not wait for it.

    TinyAudioSTT loads a model once per process and shares it between sessions: creating one
    here loads it; the services of later sessions reuse it.
    """
    ours, _ = add_arguments(argparse.ArgumentParser(add_help=False)).parse_known_args()
    TinyAudioSTT(model=ours.model)


if __name__ == "__main__":
    from pipecat.runner.run import main

    if "-h" not in sys.argv and "--help" not in sys.argv:
        preload_model()
        serve_page_at_root()
    main(add_arguments(argparse.ArgumentParser(description="TinyAudioSTT voice bot (Pipecat runner)")))
