"""The official OpenAI Python SDK, pointed at the gateway, gets streamed and whole completions."""
import json
import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ["EDGEGUARD_URL"], api_key=os.environ["EDGEGUARD_KEY"], max_retries=0)
say = "Hello from the SDK test, write to ops@example.com please."
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

try:
    OpenAI(base_url=os.environ["EDGEGUARD_URL"], api_key="eg_not_a_real_key_at_all_000", max_retries=0).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    sys.exit("an unknown key was accepted")
except Exception as e:  # openai.AuthenticationError
    assert getattr(e, "status_code", None) == 401, e
print("python sdk ok")
