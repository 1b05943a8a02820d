"""The official OpenAI Python SDK's Responses API through the gateway: whole, streamed and with
the stream helper; a planted key and address are redacted in every event type, and a canary
ends the stream with response.incomplete."""
import json
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["EDGEGUARD_URL"], api_key=os.environ["EDGEGUARD_KEY"], max_retries=0)
canary = os.environ["EDGEGUARD_CANARY"]
say = "Here you go: key AKIAZ3MSJV4WWNKWW5FG and mail ops@northwind-mail.io, that is all."
expected = "Here you go: key [REDACTED:aws_access_key] and mail [REDACTED:email], that is all."


def directive(**kw):
    return json.dumps({"mock": dict(say=say, delay_ms=2, **kw)})


# Whole.
r = client.responses.create(model="gpt-5", instructions=directive(), input="Hi")
assert r.output_text == expected, r.output_text

# Streamed, raw events: every text-bearing event is clean; deltas spell the redacted text.
deltas, saw_completed = [], False
for event in client.responses.create(model="gpt-5", instructions=directive(), input="Hi", stream=True):
    dumped = event.model_dump_json()
    assert "AKIAZ3MSJV4WWNKWW5FG" not in dumped and "ops@northwind-mail.io" not in dumped, dumped
    if event.type == "response.output_text.delta":
        deltas.append(event.delta)
    if event.type == "response.completed":
        saw_completed = True
        assert event.response.output_text == expected, event.response.output_text
assert "".join(deltas) == expected, deltas
assert len(deltas) > 3, "arrived in one piece"
assert saw_completed

# The stream helper accumulates the same text.
with client.responses.stream(model="gpt-5", instructions=directive(), input="Hi") as stream:
    for _ in stream:
        pass
    final = stream.get_final_response()
assert final.output_text == expected, final.output_text

# Reasoning summaries and function-call arguments are channels too.
r = client.responses.create(model="gpt-5", instructions=directive(field="reasoning"), input="Hi", stream=True)
summary = "".join(e.delta for e in r if e.type == "response.reasoning_summary_text.delta")
assert summary == expected, summary
args_say = json.dumps({"mock": {"say": "ok", "delay_ms": 2,
                                "tool_call": {"name": "lookup", "arguments": '{"q": "AKIAZ3MSJV4WWNKWW5FG"}'}}})
args = "".join(e.delta for e in client.responses.create(model="gpt-5", instructions=args_say, input="Hi", stream=True)
               if e.type == "response.function_call_arguments.delta")
assert "AKIAZ3MSJV4WWNKWW5FG" not in args and "[REDACTED:aws_access_key]" in args, args

# A canary ends the stream before it, with a well-formed ending.
stop = json.dumps({"mock": {"say": f"The token is {canary} and more.", "delay_ms": 2}})
events = list(client.responses.create(model="gpt-5", instructions=stop, input="Hi", stream=True))
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
assert canary not in text and "more" not in text, text
assert events[-1].type == "response.incomplete", events[-1].type
assert events[-1].response.incomplete_details.reason == "content_filter"
print("responses python sdk ok")
