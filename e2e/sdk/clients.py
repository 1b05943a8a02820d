"""Popular Python client libraries at their default settings, pointed at the gateway: each
streams an answer with a planted key and address, which arrive redacted, the rest unchanged,
in several pieces."""
import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

key = os.environ["EDGEGUARD_KEY"]
url = os.environ["EDGEGUARD_URL"]  # http://127.0.0.1:<port>/v1
say = "Sure: the key is AKIAZ3MSJV4WWNKWW5FG and the owner is ops@northwind-mail.io, done."
expected = "Sure: the key is [REDACTED:aws_access_key] and the owner is [REDACTED:email], done."
system = json.dumps({"mock": {"say": say, "delay_ms": 2}})


def check(name, pieces):
    text = "".join(pieces)
    assert text == expected, (name, text)
    assert len(pieces) > 3, (name, f"arrived in {len(pieces)} piece(s)")
    print(f"{name}: ok ({len(pieces)} pieces)")


# LangChain's ChatOpenAI.
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

llm = ChatOpenAI(model="gpt-4o-mini", api_key=key, base_url=url, max_retries=0)
check("langchain ChatOpenAI", [c.content for c in llm.stream([SystemMessage(system), HumanMessage("Hi")]) if c.content])

# The LiteLLM client (OpenAI-compatible provider).
import litellm

pieces = []
for chunk in litellm.completion(
    model="openai/gpt-4o-mini",
    api_base=url,
    api_key=key,
    messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}],
    stream=True,
):
    t = chunk.choices[0].delta.content
    if t:
        pieces.append(t)
check("litellm", pieces)
print("python clients ok")
