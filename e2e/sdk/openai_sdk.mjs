// The official OpenAI Node SDK, pointed at the gateway, gets streamed and whole completions.
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.EDGEGUARD_URL, apiKey: process.env.EDGEGUARD_KEY, maxRetries: 0 });
const say = "Hello from the SDK test, write to ops@northwind-mail.io please.";
const expected = "Hello from the SDK test, write to [REDACTED:email] please.";
const content = JSON.stringify({ mock: { say, delay_ms: 5 } });

const whole = await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content }] });
assert.equal(whole.choices[0].message.content, expected);
assert.equal(whole.choices[0].finish_reason, "stop");

const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content }],
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let finish = null;
let usage = null;
for await (const chunk of stream) {
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta?.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
}
assert.equal(text, expected);
assert.equal(finish, "stop");
assert.ok(usage && usage.completion_tokens > 0);

// Log-probabilities cannot rebuild a redacted value.
const secretContent = JSON.stringify({ mock: { say: "My key is AKIAZ3MSJV4WWNKWW5FG and that is all.", delay_ms: 2 } });
const secretExpected = "My key is [REDACTED:aws_access_key] and that is all.";
const lp = await client.chat.completions.create({
  model: "gpt-4o-mini", messages: [{ role: "user", content: secretContent }], logprobs: true, top_logprobs: 1, stream: true,
});
let lpText = "";
let lpTokens = "";
for await (const chunk of lp) {
  for (const c of chunk.choices) {
    if (c.delta?.content) lpText += c.delta.content;
    for (const e of c.logprobs?.content ?? []) {
      lpTokens += e.token + (e.top_logprobs ?? []).map((t) => t.token).join("");
    }
  }
}
assert.equal(lpText, secretExpected);
assert.ok(lpTokens.length > 0);
for (const piece of ["IAZ3", "MSJV", "4WWN", "KWW5"]) assert.ok(!lpTokens.includes(piece), lpTokens);

await assert.rejects(
  new OpenAI({ baseURL: process.env.EDGEGUARD_URL, apiKey: "eg_not_a_real_key_at_all_000", maxRetries: 0 })
    .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
  (e) => e.status === 401,
);
console.log("node sdk ok");
