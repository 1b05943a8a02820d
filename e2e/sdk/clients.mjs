// Popular Node client libraries at their default settings, pointed at the gateway: each streams
// an answer with a planted key and address, which arrive redacted, the rest unchanged, in
// several pieces.
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";

const key = process.env.EDGEGUARD_KEY;
const base = process.env.EDGEGUARD_BASE; // http://127.0.0.1:<port>
const say = "Sure: the key is AKIAZ3MSJV4WWNKWW5FG and the owner is ops@northwind-mail.io, done.";
const expected = "Sure: the key is [REDACTED:aws_access_key] and the owner is [REDACTED:email], done.";
const system = JSON.stringify({ mock: { say, delay_ms: 2 } });

function check(name, pieces) {
  const text = pieces.join("");
  assert.equal(text, expected, `${name}: ${text}`);
  assert.ok(pieces.length > 3, `${name}: arrived in ${pieces.length} piece(s)`);
  console.log(`${name}: ok (${pieces.length} pieces)`);
}

// Anthropic TypeScript SDK, with the max_tokens coding tools use.
{
  const client = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0 });
  const pieces = [];
  const stream = client.messages.stream({
    model: "claude-sonnet-4-5",
    max_tokens: 16000,
    system,
    messages: [{ role: "user", content: "Hi" }],
  });
  stream.on("text", (t) => pieces.push(t));
  await stream.finalMessage();
  check("anthropic typescript sdk", pieces);
}

async function collect(name, model) {
  const result = streamText({ model, system, prompt: "Hi", maxRetries: 0 });
  const pieces = [];
  for await (const t of result.textStream) pieces.push(t);
  check(name, pieces);
}

const openai = createOpenAI({ apiKey: key, baseURL: `${base}/v1` });
await collect("vercel ai sdk openai.chat", openai.chat("gpt-4o-mini"));
// The provider's default: the Responses API.
await collect("vercel ai sdk openai (responses)", openai("gpt-5"));
// The Anthropic provider sends the model's largest output as max_tokens by default.
const anthropic = createAnthropic({ apiKey: key, baseURL: `${base}/v1` });
await collect("vercel ai sdk anthropic", anthropic("claude-sonnet-4-5"));
console.log("node clients ok");
