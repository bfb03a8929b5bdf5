"""Sentences for the synthetic training corpus, written the way they are spoken.

The model transcribes what it hears, so every number, time, amount and ID is spelled out in words
("three fifteen", "twenty dollars and fifty cents", "seven two eight one five"). Half of the
sentences come from voice-agent templates (questions, commands, numbers, names, addresses), half
are narrative example sentences from WordNet (Debian package ``wordnet-base``; license in
``trainer/TEXT_SOURCES.md``). Every sentence of the fixed dev set, and anything sharing a
6-word run with one, is filtered out so dev WER never measures memorised text.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path

import numpy as np
from loguru import logger
from num2words import num2words

DEV_SENTENCES_PATH = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev_sentences.txt"
WORDNET_DIR = Path("/usr/share/wordnet")
MIN_WORDS = 3
MAX_WORDS = 25
NGRAM = 6

# --- text normalisation -------------------------------------------------------------------------

_ASCII_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "`": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"',
        "\u2013": "-", "\u2014": " - ", "\u2212": "-", "\u2026": "...", "\u00a0": " ",
    }
)  # fmt: skip
_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,.'?!-]*$")


def normalize_text(text: str) -> str:
    """Plain ASCII with ASCII punctuation and single spaces: what the TTS engines read reliably."""
    if not text.isascii() or "`" in text:
        text = unicodedata.normalize("NFKD", text.translate(_ASCII_MAP))
        text = text.encode("ascii", "ignore").decode("ascii")
    return " ".join(text.split())


def comparison_words(text: str) -> list[str]:
    """Lower-case words without punctuation, the form in which sentences are compared to the dev set."""
    return re.sub(r"[^a-z0-9 ]+", " ", normalize_text(text).lower().replace("'", "")).split()


class DevSetFilter:
    """Rejects sentences equal to a dev sentence or sharing a 6-word run with one.

    Dev sentences shorter than six words count as one run of their own length, so a generated
    sentence that contains a short dev sentence whole is rejected too.
    """

    def __init__(self, dev_sentences: Iterable[str], ngram: int = NGRAM) -> None:
        self.ngram = ngram
        self.sentences: set[tuple[str, ...]] = set()
        self.runs: set[tuple[str, ...]] = set()
        for sentence in dev_sentences:
            words = tuple(comparison_words(sentence))
            if not words:
                continue
            self.sentences.add(words)
            self.runs.update(_runs(words, min(ngram, len(words))))
        self.run_lengths = sorted({len(run) for run in self.runs})

    @classmethod
    def from_file(cls, path: Path | None = None) -> DevSetFilter:
        """Loads the shared dev sentences; a missing file is logged loudly and filters nothing."""
        path = Path(path) if path is not None else DEV_SENTENCES_PATH
        if not path.is_file():
            logger.warning(f"dev sentences not found at {path}: generated text is NOT filtered against them")
            return cls([])
        return cls(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())

    def rejects(self, sentence: str) -> bool:
        words = tuple(comparison_words(sentence))
        if words in self.sentences:
            return True
        return any(run in self.runs for n in self.run_lengths for run in _runs(words, n))


def _runs(words: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(words[i : i + n]) for i in range(len(words) - n + 1))


# --- numbers as spoken words --------------------------------------------------------------------

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def spoken_number(n: int) -> str:
    """Cardinal in words without hyphens or commas: 1234 -> 'one thousand two hundred and thirty four'."""
    return num2words(n).replace(",", "").replace("-", " ")


def spoken_ordinal(n: int) -> str:
    return num2words(n, to="ordinal").replace(",", "").replace("-", " ")


def spoken_year(year: int) -> str:
    return num2words(year, to="year").replace(",", "").replace("-", " ")


def spoken_digits(digits: str, oh_for_zero: bool = False) -> str:
    """Digit by digit, as account numbers are read out: '72815' -> 'seven two eight one five'."""
    return " ".join("oh" if d == "0" and oh_for_zero else _DIGITS[int(d)] for d in digits)


def spoken_pair_number(n: int) -> str:
    """Flight, house and room numbers said in pairs: 432 -> 'four thirty two', 1205 -> 'twelve oh five'."""
    if n < 100 or n % 1000 == 0:
        return spoken_number(n)
    head, tail = divmod(n, 100)
    if tail == 0:
        return f"{spoken_number(head)} hundred"
    return f"{spoken_number(head)} {'oh ' + _DIGITS[tail] if tail < 10 else spoken_number(tail)}"


def spoken_time(hour: int, minute: int, style: int) -> str:
    """A clock time in one of several spoken styles (0..4): 'three fifteen', 'quarter past three'..."""
    h12 = hour % 12 or 12
    if style == 0:
        return f"{spoken_number(h12)} o'clock" if minute == 0 else f"{spoken_number(h12)} {_minutes(minute)}"
    if style == 1:
        period = "in the morning" if hour < 12 else "in the afternoon" if hour < 18 else "in the evening"
        return f"{spoken_time(hour, minute, 0)} {period}"
    if style == 2:
        clock = spoken_time(hour, minute, 0).removesuffix(" o'clock")
        return f"{clock} {'a.m.' if hour < 12 else 'p.m.'}"
    if style == 3 and minute in (15, 30, 45):
        if minute == 45:
            return f"quarter to {spoken_number(h12 % 12 + 1)}"
        return f"{'quarter' if minute == 15 else 'half'} past {spoken_number(h12)}"
    return spoken_time(hour, minute, 0)


def _minutes(minute: int) -> str:
    return f"oh {_DIGITS[minute]}" if minute < 10 else spoken_number(minute)


def spoken_money(cents: int, style: int, currency: str = "dollar") -> str:
    """An amount as said aloud: 'twenty dollars and fifty cents', 'four ninety nine', 'ninety cents'."""
    units, rest = divmod(cents, 100)
    plural = "" if units == 1 else "s"
    if units == 0:
        return f"{spoken_number(rest)} cent{'' if rest == 1 else 's'}"
    if rest == 0:
        return f"{spoken_number(units)} {currency}{plural}"
    if style == 0 and units < 100:
        return f"{spoken_number(units)} {_minutes(rest)}"
    return f"{spoken_number(units)} {currency}{plural} and {spoken_number(rest)} cent{'' if rest == 1 else 's'}"


def spelled_letters(letters: str) -> str:
    """Letters with commas between them: without them every engine reads a lone 'A' as 'uh'."""
    return ", ".join(letters)


# --- templates ----------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words("""James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard
Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra Mark
Margaret Donald Ashley Steven Kimberly Andrew Emily Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian
Melissa George Deborah Timothy Stephanie Ronald Rebecca Jason Laura Edward Helen Jeffrey Sharon Ryan Cynthia Jacob
Kathleen Gary Amy Nicholas Angela Eric Anna Jonathan Brenda Stephen Emma Larry Olivia Justin Pamela Scott Nicole
Brandon Samantha Benjamin Katherine Samuel Christine Gregory Rachel Alexander Carolyn Frank Janet Raymond Maria
Patrick Heather Jack Diane Dennis Julie Jerry Joyce Tyler Victoria Aaron Kelly Jose Christina Henry Lauren Adam
Joan Douglas Evelyn Nathan Judith Peter Megan Zachary Andrea Kyle Cheryl Noah Hannah Ethan Jacqueline Jeremy
Martha Walter Gloria Christian Teresa Keith Ann Roger Sara Terry Madison Austin Frances Sean Kathryn Gerald Janice
Carl Jean Harold Abigail Dylan Alice Arthur Judy Lawrence Sophia Jordan Grace Jesse Denise Bryan Amber Billy
Doris Bruce Marilyn Gabriel Danielle Joe Beverly Logan Isabella Albert Theresa Willie Diana Alan Natalie Juan
Brittany Wayne Charlotte Elijah Marie Randy Kayla Roy Alexis Vincent Lori Priya Wei Mohammed Fatima Carlos Sofia
Hiroshi Yuki Ahmed Aisha Dmitri Elena Raj Mei Omar Leila Kwame Amara Diego Lucia Liam Chloe Mateo Zoe""")

LAST_NAMES = _words("""Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez
Clark Ramirez Lewis
Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera
Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris
Murphy Cook Rogers Morgan Peterson Cooper Reed Bailey Bell Kim Patel Chen Singh Kowalski Schmidt Okafor""")

CITIES = _words("""Boston Chicago Denver Seattle Portland Austin Dallas Houston Atlanta Miami Phoenix Nashville Detroit
Baltimore Pittsburgh Cleveland Minneapolis Sacramento Richmond Toronto Vancouver Montreal London Dublin Paris
Berlin Madrid Rome Lisbon Amsterdam Sydney Melbourne Tokyo Singapore Chicago Memphis Orlando Tampa Charlotte
Raleigh Columbus Cincinnati Milwaukee Omaha Tucson Albuquerque Honolulu Anchorage Oakland Buffalo Hartford""")
CITIES += ["San Diego", "San Francisco", "Los Angeles", "New York", "Las Vegas", "Salt Lake City", "New Orleans",
           "Kansas City", "Saint Louis", "Mexico City", "Cape Town", "Hong Kong"]  # fmt: skip

STREETS = _words("""Main Oak Maple Pine Cedar Elm Washington Lake Hill Park Church Spring Center River Mill Walnut
Sunset Highland Lincoln Jefferson Franklin Chestnut Willow Meadow Ridge Forest Madison Jackson Cherry Valley Prospect
Harbor Broad Market Union Grove Orchard Bridge""")
STREET_TYPES = _words("Street Avenue Road Lane Drive Boulevard Court Way Place Terrace")
ROOMS = ["kitchen", "living room", "bedroom", "office", "garage", "bathroom", "hallway", "basement",
         "dining room", "nursery", "guest room", "back porch"]  # fmt: skip
DEVICES = ["lights", "heater", "fan", "air conditioner", "TV", "radio", "dishwasher", "oven", "porch light",
           "coffee maker", "washing machine", "lamp", "speaker", "thermostat", "ceiling fan"]  # fmt: skip
ITEMS = _words("""apples bananas oranges grapes strawberries lemons carrots potatoes onions garlic tomatoes spinach
lettuce cucumbers broccoli butter cheese yogurt cereal coffee tea rice pasta flour sugar salt honey jam bread
bagels tortillas chicken salmon beef tuna beans soup crackers cookies chips juice water soap toothpaste shampoo
batteries napkins""")
ITEMS += ["peanut butter", "olive oil", "paper towels", "dish soap", "orange juice", "ice cream", "frozen peas",
          "dog food", "cat litter", "trash bags", "light bulbs", "sparkling water"]  # fmt: skip
GENRES = ["jazz", "classical music", "country music", "rock", "hip hop", "the blues", "reggae", "folk music",
          "something relaxing", "eighties pop", "lo-fi beats", "bluegrass", "opera", "soul music",
          "the news", "a podcast about history", "rain sounds"]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "today", "tomorrow",
        "tonight", "this weekend", "next week", "next Monday", "this Friday", "the day after tomorrow"]  # fmt: skip
WEEKDAYS = DAYS[:7]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip
THINGS = ["account", "order", "subscription", "package", "reservation", "card", "password", "appointment",
          "booking", "ticket", "refund", "delivery", "invoice", "membership", "insurance claim", "prescription",
          "internet service", "phone plan", "flight", "hotel room"]  # fmt: skip
ROLES = ["a manager", "a real person", "the billing department", "customer service", "a pharmacist",
         "a technician", "your supervisor", "the front desk", "someone in sales", "a nurse", "the doctor"]  # fmt: skip
AIRLINES = ["United", "Delta", "American", "Southwest", "Alaska", "JetBlue", "Air Canada", "Lufthansa"]
EMAIL_DOMAINS = ["gmail dot com", "yahoo dot com", "outlook dot com", "example dot com", "hotmail dot com"]
TASKS = ["call the dentist", "pick up the kids", "take my medicine", "water the plants", "pay the rent",
         "buy a birthday present", "check the oven", "send the report", "walk the dog", "renew my passport",
         "book the car service", "feed the cat", "back up my laptop", "pick up the dry cleaning"]  # fmt: skip
PROBLEMS = ["isn't working", "keeps disconnecting", "won't turn on", "is really slow", "was charged twice",
            "never arrived", "arrived damaged", "stopped working yesterday", "keeps freezing",
            "shows an error message"]  # fmt: skip
ACTIONS = [
    "cancel",
    "change",
    "update",
    "upgrade",
    "pause",
    "renew",
    "transfer",
    "check on",
    "return",
    "reschedule",
]
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"

Slot = Callable[[np.random.Generator], str]


def _pick(options: Sequence[str]) -> Slot:
    return lambda rng: options[int(rng.integers(len(options)))]


def _number(lo: int, hi: int) -> Slot:
    return lambda rng: spoken_number(int(rng.integers(lo, hi + 1)))


def _digit_string(lo: int, hi: int) -> Slot:
    def make(rng: np.random.Generator) -> str:
        digits = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(lo, hi + 1))))
        return spoken_digits(digits, oh_for_zero=rng.random() < 0.3)

    return make


def _code(rng: np.random.Generator) -> str:
    letters = "".join(LETTERS[i] for i in rng.integers(0, len(LETTERS), size=int(rng.integers(1, 4))))
    digits = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(2, 6))))
    return f"{spelled_letters(letters)}, {spoken_digits(digits)}"


def _phone(rng: np.random.Generator) -> str:
    groups = ["".join(str(d) for d in rng.integers(0, 10, size=size)) for size in (3, 3, 4)]
    return ", ".join(spoken_digits(g, oh_for_zero=rng.random() < 0.4) for g in groups)


def _time(rng: np.random.Generator) -> str:
    minute = int(rng.choice([0, 0, 5, 10, 15, 20, 30, 30, 40, 45, 50, int(rng.integers(0, 60))]))
    return spoken_time(int(rng.integers(6, 23)), minute, int(rng.integers(0, 5)))


def _date(rng: np.random.Generator) -> str:
    month, day = MONTHS[int(rng.integers(12))], int(rng.integers(1, 29))
    style = int(rng.integers(4))
    if style == 0:
        return f"{month} {spoken_ordinal(day)}"
    if style == 1:
        return f"the {spoken_ordinal(day)} of {month}"
    if style == 2:
        return f"{WEEKDAYS[int(rng.integers(7))]} the {spoken_ordinal(day)}"
    return f"{month} {spoken_ordinal(day)} {spoken_year(int(rng.integers(1990, 2031)))}"


def _money(rng: np.random.Generator) -> str:
    scale = int(rng.integers(3))
    if scale == 0:  # small change
        cents = int(rng.integers(1, 100))
    elif scale == 1:  # everyday prices
        cents = int(rng.integers(1, 200)) * 100 + int(rng.choice([0, 0, 25, 50, 99, int(rng.integers(100))]))
    else:  # round hundreds and thousands
        cents = int(rng.integers(1, 60)) * 10_000
    currency = "dollar" if rng.random() < 0.8 else str(rng.choice(["euro", "pound"]))
    return spoken_money(cents, int(rng.integers(2)), currency)


def _address(rng: np.random.Generator) -> str:
    number = int(rng.integers(1, 9999))
    street = f"{_pick(STREETS)(rng)} {_pick(STREET_TYPES)(rng)}"
    return f"{spoken_pair_number(number)} {street}"


def _email(rng: np.random.Generator) -> str:
    first, last = _pick(FIRST_NAMES)(rng).lower(), _pick(LAST_NAMES)(rng).lower()
    number = spoken_number(int(rng.integers(1, 99)))
    user = str(rng.choice([first, f"{first} dot {last}", f"{first[0]} {last}", f"{first} {number}"]))
    return f"{user} at {_pick(EMAIL_DOMAINS)(rng)}"


SLOTS: dict[str, Slot] = {
    "name": _pick(FIRST_NAMES),
    "last": _pick(LAST_NAMES),
    "city": _pick(CITIES),
    "room": _pick(ROOMS),
    "device": _pick(DEVICES),
    "item": _pick(ITEMS),
    "genre": _pick(GENRES),
    "day": _pick(DAYS),
    "weekday": _pick(WEEKDAYS),
    "thing": _pick(THINGS),
    "role": _pick(ROLES),
    "task": _pick(TASKS),
    "problem": _pick(PROBLEMS),
    "action": _pick(ACTIONS),
    "airline": _pick(AIRLINES),
    "minutes": _number(2, 90),
    "hours": _number(2, 12),
    "seconds": _number(10, 90),
    "count": _number(2, 12),
    "percent": _number(1, 100),
    "degrees": _number(55, 85),
    "miles": _number(2, 500),
    "big": _number(100, 100_000),
    "flight": lambda rng: spoken_pair_number(int(rng.integers(10, 2999))),
    "room_no": lambda rng: spoken_pair_number(int(rng.integers(100, 1299))),
    "year": lambda rng: spoken_year(int(rng.integers(1950, 2031))),
    "digits": _digit_string(4, 10),
    "pin": _digit_string(4, 6),
    "zip": _digit_string(5, 5),
    "code": _code,
    "phone": _phone,
    "time": _time,
    "date": _date,
    "money": _money,
    "address": _address,
    "email": _email,
}

TEMPLATES = [
    # timers, alarms, reminders
    "Set a timer for {minutes} minutes.", "Set a timer for {hours} hours.", "Start a {seconds} second countdown.",
    "Wake me up at {time}.", "Set an alarm for {time} {day}.", "Cancel the alarm for {time}.",
    "Remind me to {task} at {time}.", "Remind me to {task} {day}.", "How much time is left on the timer?",
    "Snooze for {minutes} minutes.", "Add {minutes} minutes to the timer.",
    # calls and messages
    "Please call {name}.", "Call {name} {last} on speaker.", "Call {name} on their mobile.",
    "Send a message to {name} saying I'm running {minutes} minutes late.", "Text {name} that I'll be there at {time}.",
    "Read my last message from {name}.", "Did {name} call me back?", "Reply to {name} and say thanks.",
    "Call the number {phone}.", "My phone number is {phone}.", "You can reach me at {phone}.",
    "Send an email to {email}.", "My email address is {email}.",
    # IDs, codes, numbers
    "My order number is {digits}.", "The confirmation code is {code}.", "My account number is {digits}.",
    "My member ID is {code}.", "The tracking number is {code}, {digits}.", "My zip code is {zip}.",
    "My pin is {pin}.", "The reference number is {digits}.", "Booking reference {code}.",
    "The serial number is {code}.", "My policy number is {digits}.", "The gate code is {pin}.",
    "My last name is {last}, spelled {last_spelled}.", "My initials are {letters}.", "The code is {letters}, {pin}.",
    "The total came to {money}.", "It costs {money}.", "I'd like to pay {money} today.",
    "Transfer {money} to {name}.", "Why was I charged {money}?", "My balance should be {money}.",
    "Can you split {money} between {count} people?", "Is {money} the final price?",
    "I was charged {money} instead of {money2}.", "The refund of {money} hasn't arrived yet.",
    "What's {big} divided by {count}?", "Add {big} and {big2}.", "What is {percent} percent of {big}?",
    "We need {count} copies of the contract.", "There were about {big} people at the game.",
    # dates and times
    "The meeting is at {time} on {weekday}.", "Move my appointment to {date}.", "Book a table for {count} at {time}.",
    "Is the store open at {time} {day}?", "My flight leaves on {date} at {time}.", "I was born on {date}.",
    "The deadline is {date}.", "Schedule a call with {name} for {time} {day}.", "What day is {date}?",
    "Can I come in {day} at {time}?", "Our anniversary is on {date}.", "The lease ends on {date}.",
    "Our flight is {airline} {flight}.", "Is {airline} flight {flight} on time?", "We're in room {room_no}.",
    "That happened back in {year}.", "The house was built in {year}.",
    # addresses and places
    "The address is {address}.", "Ship it to {address}, {city}.", "I live at {address}.",
    "Navigate to {address}.", "How long will it take to drive to {city}?", "How far is {city} from {city2}?",
    "Find a gas station near {address}.", "Is there a pharmacy open near me?", "Take me home.",
    "What's the weather like in {city} {day}?", "Will it rain in {city} {day}?", "It's {degrees} degrees outside.",
    "Set the thermostat to {degrees} degrees.", "It's about {miles} miles from here.",
    "Find me a hotel in {city} for {date}.", "Book a flight from {city} to {city2} on {date}.",
    # home and media
    "Turn on the {device} in the {room}.", "Turn off the {device}.", "Dim the lights in the {room}.",
    "Is the {device} in the {room} still on?", "Play {genre} in the {room}.", "Play some {genre}.",
    "Turn the volume down a little.", "Skip this song.", "Pause the music.", "Lock the front door.",
    "Turn the volume up to {percent} percent.", "Resume the podcast where I left off.",
    "Add {item} to my shopping list.", "Add {item} and {item2} to the list.", "Remove {item} from my list.",
    "Do I need to buy {item}?", "Order more {item}.", "What's on my shopping list?",
    # customer service
    "I'd like to {action} my {thing}.", "I need to {action} my {thing} please.", "Can you help me {action} my {thing}?",
    "My {thing} {problem}.", "I think my {thing} {problem}.", "Hi, I think my {thing} {problem}.",
    "Can I speak to {role}?", "I'd like to talk to {role}, please.", "Can you transfer me to {role}?",
    "What's the status of my {thing}?", "When will my {thing} arrive?", "How do I reset my password?",
    "I never received a confirmation email.", "Can you send me a receipt?", "Is there a cancellation fee?",
    "Can you repeat that, please?", "Sorry, I didn't catch that.", "Could you say that one more time?",
    "Hold on a second, let me find it.", "Let me check, one moment.", "Yes, that's correct.", "No, that's not right.",
    "Yes, please go ahead.", "No thanks, that's all for today.", "That's all I needed, thank you.",
    "Actually, make that {count} instead.", "Sorry, I meant {time}, not {time2}.",
    "I'm calling about my {thing}.", "My name is {name} {last}.", "This is {name} calling from {city}.",
    "Hi, this is {name}, I have a question about my {thing}.", "Is this the right number for {role}?",
    # questions
    "What time is it in {city}?", "What's the date {day}?", "How many days until {date}?",
    "Who won the game last night?", "What's a good place for dinner near {address}?",
    "How do you spell {last}?", "What's the exchange rate for {money}?", "Convert {miles} miles to kilometers.",
    "How long should I boil an egg?", "What's on my calendar {day}?", "Do I have any meetings {day}?",
    "When does the next bus to {city} leave?", "How much is a ticket to {city}?",
]  # fmt: skip

_DERIVED: dict[str, Callable[[dict[str, str], np.random.Generator], str]] = {
    "last_spelled": lambda slots, rng: spelled_letters(slots.setdefault("last", SLOTS["last"](rng)).upper()),
    "letters": lambda slots, rng: spelled_letters(
        "".join(LETTERS[i] for i in rng.integers(0, len(LETTERS), size=int(rng.integers(2, 5))))
    ),
}


class _SlotFiller(dict):
    """Fills template slots on first use, so a slot used twice in one template has one value."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        # {time2} and the like: a second, independent value of the same slot
        derived = _DERIVED.get(key)
        value = derived(self, self.rng) if derived else SLOTS[key.rstrip("0123456789")](self.rng)
        self[key] = value
        return value


def template_sentence(rng: np.random.Generator) -> str:
    """One voice-agent style sentence with its slots filled in spoken form."""
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    text = template.format_map(_SlotFiller(rng))
    return text[0].upper() + text[1:]


# --- narrative text from WordNet ----------------------------------------------------------------

_UNSUITABLE_GLOSS = ("offensive", "obscene", "vulgar", "slur", "derogatory", "disparaging", "ethnic", "slang")
_QUOTED = re.compile(r'"([^"]+)"')
_ORDINAL = re.compile(r"\b(\d{1,4})(st|nd|rd|th)\b")
_YEAR = re.compile(r"\b(in|of|since|by|until|from|during|before|after) (1[1-9]\d\d|20\d\d)\b")
_INTEGER = re.compile(r"\b\d{1,6}\b")
_DIGIT = re.compile(r"\d")
_ASIDE = re.compile(r"\s*\((?:or|e\.g\.|i\.e\.)[^)]*\)")
_PAUSE = re.compile(r"\.{3,}|[;:]")
_DOUBLE_PERIOD = re.compile(r"\.\.(?=\s|$)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.?!])")
_COMMAS = re.compile(r",+")
_STRAY_QUOTE = re.compile(r"(?<!s)'(?![a-z])|(?<![A-Za-z])'")


def spell_out_numbers(text: str) -> str:
    """Writes digits as words (years after 'in/since/...' as years); other digit forms stay and get filtered."""
    if not _DIGIT.search(text):
        return text
    text = _ORDINAL.sub(lambda m: spoken_ordinal(int(m[1])), text)
    text = _YEAR.sub(lambda m: f"{m[1]} {spoken_year(int(m[2]))}", text)
    return _INTEGER.sub(lambda m: spoken_number(int(m[0])), text)


def clean_sentence(text: str) -> str | None:
    """Speakable, plain-ASCII sentence of 3-25 words with final punctuation, or None if unusable.

    (Each rewrite runs only when its character is present: this cleans ~48,000 WordNet examples.)
    """
    text = spell_out_numbers(normalize_text(text).replace('"', "").strip(" '"))
    if "(" in text:
        text = _ASIDE.sub("", text)
    if "." in text or ";" in text or ":" in text:
        text = _PAUSE.sub(", ", text)  # ellipses and clause marks read as a pause
        text = _DOUBLE_PERIOD.sub(".", text)  # "... a.m.." from a template's final period
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split())).strip(" ,-")
    if ",," in text:
        text = _COMMAS.sub(",", text)
    if "'" in text:
        text = _STRAY_QUOTE.sub("", text)  # keep it's and dogs'
    if not text or not _ALLOWED.match(text) or "--" in text:
        return None
    if not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
        return None
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


@cache
def load_wordnet_examples(wordnet_dir: Path = WORDNET_DIR) -> tuple[str, ...]:
    """Example sentences from WordNet's glosses, cleaned; sorted so the pool is the same on every machine.

    Raises FileNotFoundError with the install hint when Debian's ``wordnet-base`` is absent.
    """
    files = [wordnet_dir / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    if not all(f.is_file() for f in files):
        raise FileNotFoundError(
            f"WordNet data not found in {wordnet_dir}: install it with `apt-get install wordnet-base`"
        )
    examples: set[str] = set()
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            # license header lines start with two spaces; most glosses have no quoted example
            if line.startswith("  ") or '"' not in line or " | " not in line:
                continue
            gloss = line.split(" | ", 1)[1]
            lowered = gloss.lower()
            if any(word in lowered for word in _UNSUITABLE_GLOSS):
                continue
            examples.update(s for s in map(clean_sentence, _QUOTED.findall(gloss)) if s)
    return tuple(sorted(examples))


# --- the mix ------------------------------------------------------------------------------------


def build_sentences(
    n: int,
    seed: int,
    *,
    narrative_share: float = 0.5,
    dev_filter: DevSetFilter | None = None,
    wordnet_dir: Path = WORDNET_DIR,
) -> list[str]:
    """``n`` distinct spoken-form sentences, half templated and half narrative, none from the dev set.

    Same ``n``, ``seed`` and source data give the same list. Narrative sentences repeat only once the
    WordNet pool (about 30,000 sentences) is used up; ``narrative_share=0`` needs no WordNet at all.
    """
    rng = np.random.default_rng(seed)
    dev_filter = dev_filter if dev_filter is not None else DevSetFilter.from_file()
    n_narrative = round(n * narrative_share)
    narrative: list[str] = []
    if n_narrative:
        pool = load_wordnet_examples(wordnet_dir)
        # filter lazily, in shuffled order: checking all ~42,000 against the dev set costs seconds
        for i in rng.permutation(len(pool)):
            if len(narrative) == n_narrative:
                break
            if not dev_filter.rejects(pool[i]):
                narrative.append(pool[i])
        if not narrative:
            raise ValueError(f"no usable narrative sentence in {wordnet_dir}")
        narrative = [narrative[i % len(narrative)] for i in range(n_narrative)]  # repeats if n > pool
    seen = set(narrative)
    templated: list[str] = []
    attempts = 0
    while len(templated) < n - n_narrative:
        attempts += 1
        sentence = clean_sentence(template_sentence(rng))
        # Templates can only make so many distinct short commands: allow repeats once they run dry.
        fresh = sentence not in seen or attempts > 50 * n
        if sentence and fresh and not dev_filter.rejects(sentence):
            seen.add(sentence)
            templated.append(sentence)
    mixed = narrative + templated
    return [mixed[i] for i in rng.permutation(len(mixed))]


def read_sentences(path: Path, dev_filter: DevSetFilter | None = None) -> list[str]:
    """A user's text file, one sentence per line, cleaned and with dev sentences removed."""
    dev_filter = dev_filter if dev_filter is not None else DevSetFilter.from_file()
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    sentences = [s for s in map(clean_sentence, lines) if s and not dev_filter.rejects(s)]
    logger.info(f"{path}: kept {len(sentences)} of {len(lines)} lines as sentences")
    return sentences


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: an interrupted write leaves the old file (or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
