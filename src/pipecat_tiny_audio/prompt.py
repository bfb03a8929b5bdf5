"""The transcription prompt: chat template, ``<audio>`` placeholders and training labels.

The user turn holds ``<audio>`` × N where the user prompt has its placeholder. Rendering the template once
around a single placeholder splits it into a fixed prefix and suffix, so the streaming decoder
can keep the prefix and the audio in its KV cache and only append the suffix per partial.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TranscriptionPrompt:
    """Token ids around the audio placeholders, for one tokenizer and user prompt."""

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    audio_token_id: int
    end_of_turn_id: int

    @classmethod
    def from_tokenizer(
        cls, tokenizer, user_prompt: str, system_prompt: str | None = None, audio_token: str = "<audio>"
    ) -> TranscriptionPrompt:
        if user_prompt.count(audio_token) != 1:
            raise ValueError(f"user_prompt must contain {audio_token!r} exactly once, got {user_prompt!r}")
        if audio_token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [audio_token]})
        messages = [{"role": "user", "content": user_prompt}]
        if system_prompt is not None:
            messages.insert(0, {"role": "system", "content": system_prompt})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prefix, suffix = text.split(audio_token)
        end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if end_of_turn is None or end_of_turn == tokenizer.unk_token_id:
            end_of_turn = tokenizer.eos_token_id
        return cls(
            prefix_ids=tuple(tokenizer(prefix, add_special_tokens=False).input_ids),
            suffix_ids=tuple(tokenizer(suffix, add_special_tokens=False).input_ids),
            audio_token_id=tokenizer.convert_tokens_to_ids(audio_token),
            end_of_turn_id=end_of_turn,
        )

    def input_ids(self, num_audio_tokens: int) -> list[int]:
        """The generation prompt for ``num_audio_tokens`` audio embeddings."""
        return [*self.prefix_ids, *[self.audio_token_id] * num_audio_tokens, *self.suffix_ids]

    def training_example(self, num_audio_tokens: int, transcript_ids: list[int]) -> tuple[list[int], list[int]]:
        """(input_ids, labels) with loss only on the transcript and the end-of-turn token."""
        prompt = self.input_ids(num_audio_tokens)
        target = [*transcript_ids, self.end_of_turn_id]
        return prompt + target, [IGNORE_INDEX] * len(prompt) + target
