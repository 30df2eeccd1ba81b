"""The SDK comparison's harness is honest: it counts what a client lost, duplicated or changed,
times the speaker from its own record, and refuses a conversation that was not complete."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from benchmarks.versus_sdk import (
    Incomplete,
    check_conversation,
    follow_microphone,
    follow_speaker,
)

from agentpi.agent.sim_records import AgentTurnRecord, ConversationRecord
from agentpi.audio.convert import Int16Array
from agentpi.protocol.messages import Audio, ConversationInitiationClientData, encode

RATE = 16000
CHUNK = 640


def noise(samples: int, seed: int = 1) -> Int16Array:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0, 4, samples)).astype(np.int16)


def record_with_chunks(chunks: list[tuple[float, Int16Array]]) -> ConversationRecord:
    record = ConversationRecord("c", "a", "/v1/convai/conversation", opened_at=0.0)
    for arrived, chunk in chunks:
        record.user_audio += chunk.astype("<i2").tobytes()
        record.user_audio_arrivals.append((arrived, len(record.user_audio)))
    return record


def test_every_received_sample_is_found_in_the_room_and_timed_from_its_capture() -> None:
    room = noise(RATE * 2)
    origin = 100.0
    starts = [1600 + i * CHUNK for i in range(10)]
    # each chunk arrives 5 ms after its last sample was captured
    chunks = [(origin + (s + CHUNK) / RATE + 0.005, room[s : s + CHUNK]) for s in starts]
    path = follow_microphone(record_with_chunks(chunks), room, origin)
    assert (path.first, path.last) == (1600, 1600 + 10 * CHUNK)
    assert (path.lost, path.duplicated, path.altered) == (0, 0, 0)
    assert len(path.latencies_s) == 10 * CHUNK
    # the last sample of a chunk waited 5 ms, its first a whole chunk (40 ms) more
    assert path.latencies_s.min() == pytest.approx(0.005)
    assert path.latencies_s.max() == pytest.approx(0.005 + (CHUNK - 1) / RATE)


def test_a_skipped_a_repeated_and_a_changed_chunk_are_each_counted() -> None:
    room = noise(RATE * 2)
    at = [0, 1, 3, 3, 4, 5]  # chunk 2 never sent, chunk 3 sent twice
    chunks = [(1.0 + i, room[k * CHUNK : (k + 1) * CHUNK]) for i, k in enumerate(at)]
    chunks.append((9.0, noise(CHUNK, seed=7)))  # not from this room at all
    path = follow_microphone(record_with_chunks(chunks), room, 0.0)
    assert (path.lost, path.duplicated, path.altered) == (CHUNK, CHUNK, CHUNK)


def test_nothing_from_the_microphone_is_refused() -> None:
    room = noise(RATE)
    with pytest.raises(Incomplete, match="none of the audio"):
        follow_microphone(record_with_chunks([(1.0, noise(CHUNK, seed=9))]), room, 0.0)


def complete_record() -> ConversationRecord:
    record = ConversationRecord("c", "a", "/v1/convai/conversation", opened_at=0.0)
    record.init = ConversationInitiationClientData()
    greeting = AgentTurnRecord(1, "hello", 3200, 3200, interrupted_at=1.0)
    answer = AgentTurnRecord(2, "answer", 1600, 1600, completed_at=3.0, last_audio_at=2.9)
    record.turns = [greeting, answer]
    record.notes = [(0.9, "user speech started"), (2.0, "user speech ended")]
    record.pings_sent = record.pongs_received = 2
    record.closed_by, record.close_code = "client", 1000
    return record


def test_a_complete_conversation_passes_and_each_gap_is_named() -> None:
    check_conversation(complete_record())
    breakages: dict[str, Callable[[ConversationRecord], object]] = {
        "no conversation_initiation_client_data": lambda r: setattr(r, "init", None),
        "did not interrupt": lambda r: setattr(r.turns[0], "interrupted_at", None),
        "answer was not sent in full": lambda r: setattr(r.turns[1], "completed_at", None),
        "never heard the question end": lambda r: setattr(r, "notes", r.notes[:1]),
        "pongs": lambda r: setattr(r, "missing_pongs", 1),
        "closed by server with 1011": lambda r: r.__dict__.update(
            closed_by="server", close_code=1011
        ),
        "1 agent turns": lambda r: setattr(r, "turns", r.turns[:1]),
    }
    for reason, breakage in breakages.items():
        record = complete_record()
        breakage(record)
        with pytest.raises(Incomplete, match=reason):
            check_conversation(record)


def speaker_case(answer_played: int) -> tuple[ConversationRecord, list[list[float]], Int16Array]:
    """The agent sent a 3200-sample greeting and a 1600-sample answer; the speaker played 1920
    samples of the greeting (then was flushed), 160 of silence, then ``answer_played`` samples of
    the answer, in blocks of 160 from t = 10 s (a block plays what is queued, then silence)."""
    record = complete_record()
    greeting, answer = noise(3200, seed=2), noise(1600, seed=3)
    record.sent = [(0.0, encode(Audio(greeting.astype("<i2").tobytes(), 1)))]
    record.sent.append((2.0, encode(Audio(answer.astype("<i2").tobytes(), 2))))
    stream = np.concatenate([greeting[:1920], np.zeros(160, np.int16), answer[:answer_played]])
    real = np.concatenate([np.ones(1920, bool), np.zeros(160, bool), np.ones(answer_played, bool)])
    blocks, played = [], 0
    for start in range(0, len(stream), 160):
        played += int(real[start : start + 160].sum())
        blocks.append([10.0 + start / RATE, 160, played])
    return record, blocks, stream


def test_the_speaker_record_times_the_last_greeting_and_answer_samples() -> None:
    record, blocks, output = speaker_case(answer_played=1600)
    path = follow_speaker(record, blocks, output)
    assert path.greeting_ended_at == pytest.approx(10.0 + 1920 / RATE)
    assert path.answer_ended_at == pytest.approx(10.0 + (1920 + 160 + 1600) / RATE)


def test_an_answer_not_played_in_full_is_refused() -> None:
    record, blocks, output = speaker_case(answer_played=1440)
    with pytest.raises(Incomplete, match="did not play the whole answer"):
        follow_speaker(record, blocks, output)


def test_a_speaker_that_played_something_else_is_refused() -> None:
    record, blocks, output = speaker_case(answer_played=1600)
    output = output.copy()
    output[100] += 1  # one sample of the greeting changed on the way
    with pytest.raises(Incomplete, match="not what the agent sent"):
        follow_speaker(record, blocks, output)
