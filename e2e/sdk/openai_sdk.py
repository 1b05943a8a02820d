"""The official OpenAI Python SDK, pointed at the gateway, gets streamed and whole completions."""
import json
import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ["EDGEGUARD_URL"], api_key=os.environ["EDGEGUARD_KEY"], max_retries=0)
say = "Hello from the SDK test, write to ops@northwind-mail.io please."
expected = "Hello from the SDK test, write to [REDACTED:email] please."
content = json.dumps({"mock": {"say": say, "delay_ms": 5}})

whole = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}])
assert whole.choices[0].message.content == expected, whole.choices[0].message.content
assert whole.choices[0].finish_reason == "stop"

parts = []
finish = None
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": content}],
    stream=True,
    stream_options={"include_usage": True},
)
usage = None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            parts.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
assert "".join(parts) == expected, "".join(parts)
assert finish == "stop", finish
assert usage is not None and usage.completion_tokens > 0, usage

# Log-probabilities cannot rebuild a redacted value: streamed and whole.
secret_say = "My key is AKIAZ3MSJV4WWNKWW5FG and that is all."
secret_expected = "My key is [REDACTED:aws_access_key] and that is all."
secret_content = json.dumps({"mock": {"say": secret_say, "delay_ms": 2}})


def tokens_of(logprobs):
    out = []
    for e in (logprobs.content or []) if logprobs else []:
        out.append(e.token)
        out.extend(t.token for t in (e.top_logprobs or []))
    return "".join(out)


whole = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": secret_content}], logprobs=True, top_logprobs=1
)
assert whole.choices[0].message.content == secret_expected, whole.choices[0].message.content
toks = tokens_of(whole.choices[0].logprobs)
assert toks, "no logprobs at all"
for piece in ("IAZ3", "MSJV", "4WWN", "KWW5"):
    assert piece not in toks, toks
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": secret_content}],
    logprobs=True,
    top_logprobs=1,
    stream=True,
)
text, toks = [], []
for chunk in stream:
    for c in chunk.choices:
        if c.delta.content:
            text.append(c.delta.content)
        toks.append(tokens_of(c.logprobs))
assert "".join(text) == secret_expected, "".join(text)
joined = "".join(toks)
assert joined, "no streamed logprobs"
for piece in ("IAZ3", "MSJV", "4WWN", "KWW5"):
    assert piece not in joined, joined

# Refusal and reasoning channels (the latter an extension field of OpenAI-compatible origins).
for field in ("refusal", "reasoning_content"):
    c = json.dumps({"mock": {"say": say, "delay_ms": 2, "field": field}})
    # The directive is operator text: it goes in the system message.
    msgs = [{"role": "system", "content": c}, {"role": "user", "content": "Please answer."}]
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    got = whole.choices[0].message.model_dump()[field]
    assert got == expected, (field, got)
    parts = []
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=msgs, stream=True):
        for ch in chunk.choices:
            v = ch.delta.model_dump().get(field)
            if v:
                parts.append(v)
    assert "".join(parts) == expected, (field, parts)
    assert len(parts) > 3, (field, "arrived in one piece")

try:
    OpenAI(base_url=os.environ["EDGEGUARD_URL"], api_key="eg_not_a_real_key_at_all_000", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    sys.exit("an unknown key was accepted")
except Exception as e:  # openai.AuthenticationError
    assert getattr(e, "status_code", None) == 401, e
print("python sdk ok")
