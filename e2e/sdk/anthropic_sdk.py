"""The official Anthropic Python SDK, pointed at the gateway: streamed and whole messages, text and
thinking blocks with planted values, and a canary that ends the answer."""
import json
import os

import anthropic

client = anthropic.Anthropic(base_url=os.environ["EDGEGUARD_BASE"], api_key=os.environ["EDGEGUARD_KEY"], max_retries=0)
canary = os.environ["EDGEGUARD_CANARY"]
say = "Thinking it over, mail ops@northwind-mail.io with key AKIAZ3MSJV4WWNKWW5FG today."
expected = "Thinking it over, mail [REDACTED:email] with key [REDACTED:aws_access_key] today."


def directive(**kw):
    return json.dumps({"mock": dict(say=say, delay_ms=2, **kw)})


for field in ("text", "thinking"):
    system = directive(field=field)
    whole = client.messages.create(model="claude-sonnet-4-5", max_tokens=200, system=system,
                                   messages=[{"role": "user", "content": "hi"}])
    block = whole.content[0]
    assert block.type == field, block
    assert getattr(block, field) == expected, getattr(block, field)
    if field == "thinking":
        assert block.signature == "bW9jay1zaWduYXR1cmU=", block.signature

    pieces = []
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=200, system=system,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                d = event.delta
                if d.type == "text_delta":
                    pieces.append(("text", d.text))
                elif d.type == "thinking_delta":
                    pieces.append(("thinking", d.thinking))
        final = stream.get_final_message()
    assert all(kind == field for kind, _ in pieces), pieces
    assert all(p for _, p in pieces), "an empty delta was sent"
    assert "".join(p for _, p in pieces) == expected, pieces
    assert len(pieces) > 3, "arrived in one piece"
    assert getattr(final.content[0], field) == expected
    if field == "thinking":
        assert final.content[0].signature == "bW9jay1zaWduYXR1cmU=", final.content[0].signature

# A canary ends the answer cleanly, before it, with stop_reason refusal.
system = json.dumps({"mock": {"say": f"The hidden token is {canary} and more.", "delay_ms": 2}})
with client.messages.stream(model="claude-sonnet-4-5", max_tokens=200, system=system,
                            messages=[{"role": "user", "content": "hi"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert canary not in text and "more" not in text, text
assert final.stop_reason == "refusal", final.stop_reason
print("anthropic sdk ok")
