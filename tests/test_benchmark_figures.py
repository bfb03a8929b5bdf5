"""How the streaming benchmarks read a turn's events: latency from the last stop, and what a turn without a
final after its last stop looked like."""

from benchmarks.streaming import turn_figures


def test_a_turn_whose_last_segment_says_nothing_is_reported_with_what_it_did_say():
    events = [
        # turn 1: one segment, its final 0.12 s after the stop
        (1.0, "start", None),
        (1.5, "interim", "book a"),
        (2.0, "stop", None),
        (2.12, "final", "Book a table."),
        # turn 2: the VAD splits it; the second part's final never comes (nothing heard in it)
        (11.0, "start", None),
        (12.0, "stop", None),
        (12.1, "final", "Ship a package"),
        (12.3, "start", None),
        (12.5, "interim", "to"),
        (12.8, "stop", None),
    ]
    raw = {"clips": ["Book a table.", "Ship a package to Canada."], "windows": [(0.0, 10.0), (10.0, 20.0)]}
    figures = turn_figures({**raw, "events": events})

    assert [round(s, 2) for s in figures["final_latency"]] == [0.12]
    assert figures["segments"] == 3 and figures["interims"] == [1, 1]
    assert figures["hyps"] == ["book a table", "ship a package"]
    assert figures["unanswered"] == [
        {
            "ref": "Ship a package to Canada.",
            "segments": 2,
            "finals": ["Ship a package"],
            "last_interim": "to",
            "after_last_final_s": 0.7,
        }
    ]
