"""Drives `lfm-edge serve` with the official `openai` Python client (PyPI), as an
editor or agent would. runtime/tests/serve.rs starts the server on the demo model and
runs one scenario of this script against it; a failed check raises and exits non-zero.

    python openai_driver.py BASE_URL API_KEY SCENARIO [ROUNDS]

Scenarios:
  api    plain and streamed chat, completions, a seed, a stop string, a json_schema
         answer, a tool call and its result, errors the client raises, the API key
  cache  a conversation that goes on reuses its cached prefix; time to first token
         with and without that reuse, the median of ROUNDS (default 3; printed as JSON)
  load   8 clients x 4 streamed requests at once, one client leaving mid-stream;
         requests/s and time to first token (printed as JSON)
"""

import json
import statistics
import sys
import threading
import time
import urllib.request

import openai

BASE, KEY, SCENARIO = sys.argv[1], sys.argv[2], sys.argv[3]
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 3


def client(key=KEY, **kw):
    # No retries: a refusal is the answer under test, not something to hide.
    return openai.OpenAI(base_url=BASE, api_key=key, max_retries=0, timeout=120, **kw)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def say(name, **values):
    print(json.dumps({"check": name, **values}), flush=True)


def user(text):
    return [{"role": "user", "content": text}]


def scenario_api():
    c = client()
    model = c.models.list().data[0].id
    check(model == "lfm2-demo-Q8_0", f"model id {model}")

    # A plain chat answer, with its usage.
    r = c.chat.completions.create(model=model, messages=user("Enter the King."),
                                  max_tokens=24, temperature=0)
    u = r.usage
    check(r.choices[0].message.role == "assistant", "role")
    check(r.choices[0].message.content, "an answer")
    check(r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    check(u.prompt_tokens > 0 and 0 < u.completion_tokens <= 24, f"usage {u}")
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, "total")
    say("chat", content=r.choices[0].message.content, usage=u.model_dump())

    # The same, streamed: more than 3 chunks, the usage on its own chunk at the end.
    chunks = list(c.chat.completions.create(
        model=model, messages=user("Enter the King."), max_tokens=24, temperature=0,
        stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1]
    check(len(chunks) > 3, f"{len(chunks)} chunks")
    check(chunks[0].choices[0].delta.role == "assistant", "first chunk's role")
    check(chunks[-1].usage is not None and not chunks[-1].choices, "usage chunk")
    check(text == r.choices[0].message.content, f"streamed {text!r}")
    check(finish == r.choices[0].finish_reason, finish)
    say("stream", chunks=len(chunks))

    # A completion of plain text.
    r = c.completions.create(model=model, prompt="Enter Hamlet.", max_tokens=8,
                             temperature=0)
    check(r.choices[0].text and r.choices[0].finish_reason == "length", r.choices[0])
    check(r.usage.completion_tokens == 8, f"usage {r.usage}")
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model=model, prompt="Enter Hamlet.", max_tokens=8, temperature=0, stream=True)
        if ch.choices)
    check(streamed == r.choices[0].text, f"streamed {streamed!r}")
    say("completion", text=r.choices[0].text)

    # The same seed, the same text.
    def sampled(seed):
        return c.chat.completions.create(
            model=model, messages=user("Speak, Horatio."), max_tokens=24,
            temperature=1.0, top_p=0.95, seed=seed).choices[0].message.content
    first, again = sampled(7), sampled(7)
    check(first == again, f"seed 7 gave {first!r}, then {again!r}")
    say("seed", text=first)

    # A stop string: the text ends before it, finish_reason "stop".
    greedy = c.completions.create(model=model, prompt="Enter Hamlet.", max_tokens=24,
                                  temperature=0).choices[0].text
    words = greedy.split()
    stop = next((w for w in words[2:] if greedy.index(w) > 0), None)
    check(stop, f"no word to stop at in {greedy!r}")
    r = c.completions.create(model=model, prompt="Enter Hamlet.", max_tokens=24,
                             temperature=0, stop=[stop])
    check(r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)
    check(r.choices[0].text == greedy[:greedy.index(stop)], f"{r.choices[0].text!r}")
    say("stop", stop=stop, text=r.choices[0].text)

    # An answer in a JSON schema parses and has its fields.
    schema = {"type": "object",
              "properties": {"name": {"type": "string", "maxLength": 12},
                             "age": {"type": "integer", "minimum": 0, "maximum": 120}},
              "required": ["name", "age"], "additionalProperties": False}
    r = c.chat.completions.create(
        model=model, messages=user("Who art thou? Answer in JSON."), max_tokens=64,
        temperature=0,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "person", "schema": schema}})
    answer = json.loads(r.choices[0].message.content)
    check(set(answer) == {"name", "age"} and isinstance(answer["age"], int), answer)
    say("json_schema", answer=answer)

    # A tool call in OpenAI's shape, and its result sent back.
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object",
                       "properties": {"city": {"type": "string", "maxLength": 16}},
                       "required": ["city"]}}}]
    messages = user("What is the weather in Elsinore?")
    r = c.chat.completions.create(model=model, messages=messages, tools=tools,
                                  tool_choice="required", max_tokens=160, temperature=0)
    choice = r.choices[0]
    check(choice.finish_reason == "tool_calls", choice.finish_reason)
    call = choice.message.tool_calls[0]
    check(call.type == "function" and call.function.name == "get_weather", call)
    arguments = json.loads(call.function.arguments)
    check(isinstance(arguments.get("city"), str), arguments)
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Cold, and a ghost."}]
    r = c.chat.completions.create(model=model, messages=messages, tools=tools,
                                  tool_choice="none", max_tokens=16, temperature=0)
    check(r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    say("tool_call", arguments=arguments, then=r.choices[0].message.content)
    streamed = list(c.chat.completions.create(
        model=model, messages=user("What is the weather in Elsinore?"), tools=tools,
        tool_choice="required", max_tokens=160, temperature=0, stream=True))
    deltas = [d for ch in streamed if ch.choices for d in ch.choices[0].delta.tool_calls or []]
    check(deltas and deltas[0].function.name == "get_weather", deltas)
    check(streamed[-1].choices[0].finish_reason == "tool_calls", streamed[-1])

    # Refusals the client raises as its typed errors.
    try:
        c.chat.completions.create(model=model, messages=[], max_tokens=4)
        check(False, "empty messages accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body["param"] == "messages", e.body)
    try:
        c.chat.completions.create(model=model, messages=user("Ay, " * 600), max_tokens=4)
        check(False, "a prompt larger than the context accepted")
    except openai.BadRequestError as e:
        check(e.body["code"] == "context_length_exceeded", e.body)
    try:
        c.chat.completions.create(model=model, messages=user("Hi"), temperature=5)
        check(False, "temperature 5 accepted")
    except openai.BadRequestError as e:
        check(e.body["param"] == "temperature", e.body)
    say("errors")

    # The API key: accepted above, refused here.
    for key in ("wrong-key", ""):
        try:
            client(key=key or "none").models.list()
            check(False, f"key {key!r} accepted")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, e)
    say("api_key")


def ttft(c, messages, max_tokens=8):
    """Seconds to the first text of a streamed answer, and its usage."""
    start = time.perf_counter()
    first, usage = None, None
    for ch in c.chat.completions.create(model="m", messages=messages, max_tokens=max_tokens,
                                        temperature=0, stream=True,
                                        stream_options={"include_usage": True}):
        if first is None and ch.choices and ch.choices[0].delta.content:
            first = time.perf_counter() - start
        if ch.usage:
            usage = ch.usage
    return first, usage


# About 300 tokens of the demo model's Shakespeare, so that the cache matters.
SCENE = (
    "You are the Chorus. The scene: the platform before the castle of Elsinore, at "
    "night. Francisco at his post; enter to him Bernardo. They speak of the cold, of "
    "the watch, of the ghost that walked the night before in the same figure as the "
    "King that is dead. Marcellus and Horatio come, and Horatio will not believe it. "
) * 4


def scenario_cache():
    c = client()
    warm, cold, uncached = [], [], []
    for i in range(ROUNDS):
        system = {"role": "system", "content": f"Night {i}. {SCENE}"}
        first = [system] + user("Who's there?")
        r = c.chat.completions.create(model="m", messages=first, max_tokens=24,
                                      temperature=0)
        answer = r.choices[0].message.content
        held = r.usage.prompt_tokens + r.usage.completion_tokens
        check(r.usage.prompt_tokens > 200, f"a first turn of {r.usage.prompt_tokens} tokens")
        second = first + [{"role": "assistant", "content": answer}] + user("Long live the King!")
        seconds, usage = ttft(c, second)
        cached = usage.prompt_tokens_details.cached_tokens
        # The whole first exchange is reused (its last token too when the answer ended
        # at max_tokens, unfed), and only the new turn is fed.
        check(cached >= held - 1, f"{cached} cached tokens after {held}")
        check(usage.prompt_tokens - cached < 20,
              f"{usage.prompt_tokens - cached} of {usage.prompt_tokens} tokens fed again")
        warm.append(seconds)
        uncached.append(usage.prompt_tokens - cached)
        # The same conversation nobody has cached (another night): fed whole.
        other = [{"role": "system", "content": f"Night {i + 10}. {SCENE}"}] + second[1:]
        seconds, usage = ttft(c, other)
        check(usage.prompt_tokens_details.cached_tokens == 0, usage)
        cold.append(seconds)
    say("cache", prompt_tokens=usage.prompt_tokens, fed_with_reuse=uncached,
        ttft_reused_ms=round(1000 * statistics.median(warm), 1),
        ttft_full_prefill_ms=round(1000 * statistics.median(cold), 1))


def scenario_load():
    c = client()
    clients, requests = 8, 4
    ttfts, failures, done = [], [], []
    lock = threading.Lock()

    def work(k):
        for j in range(requests):
            try:
                start = time.perf_counter()
                stream = c.chat.completions.create(
                    model="m", messages=user(f"Speak, messenger {k}, of battle {j}."),
                    max_tokens=32, temperature=0.7, seed=k * 10 + j, stream=True)
                first, finish, pieces = None, None, 0
                for ch in stream:
                    if ch.choices and ch.choices[0].delta.content:
                        pieces += 1
                        if first is None:
                            first = time.perf_counter() - start
                    if ch.choices and ch.choices[0].finish_reason:
                        finish = ch.choices[0].finish_reason
                    if k == 0 and j == 0 and pieces == 2:
                        # This client goes away mid-answer.
                        stream.close()
                        break
                with lock:
                    if k == 0 and j == 0:
                        continue
                    if finish not in ("stop", "length") or first is None:
                        failures.append(f"client {k} request {j}: finish {finish}")
                    ttfts.append(first)
                    done.append(time.perf_counter())
            except Exception as e:  # noqa: BLE001 - reported below
                with lock:
                    failures.append(f"client {k} request {j}: {e!r}")

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.perf_counter() - start
    check(not failures, "; ".join(failures))
    check(len(done) == clients * requests - 1, f"{len(done)} answers")
    with urllib.request.urlopen(BASE.rsplit("/v1", 1)[0] + "/health", timeout=10) as r:
        health = json.load(r)
    check(health["status"] == "ok", health)
    if "vram_budget_bytes" in health:
        check(health["vram_used_bytes"] <= health["vram_budget_bytes"], health)
    ttfts.sort()
    say("load", answers=len(done), seconds=round(elapsed, 2),
        requests_per_second=round(len(done) / elapsed, 2),
        ttft_p50_ms=round(1000 * ttfts[len(ttfts) // 2], 1),
        ttft_p95_ms=round(1000 * ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], 1),
        health=health)


{"api": scenario_api, "cache": scenario_cache, "load": scenario_load}[SCENARIO]()
