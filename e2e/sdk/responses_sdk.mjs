// The official OpenAI Node SDK's Responses API through the gateway, streamed and whole.
import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.EDGEGUARD_URL, apiKey: process.env.EDGEGUARD_KEY, maxRetries: 0 });
const say = "Here you go: key AKIAZ3MSJV4WWNKWW5FG and mail ops@northwind-mail.io, that is all.";
const expected = "Here you go: key [REDACTED:aws_access_key] and mail [REDACTED:email], that is all.";
const instructions = JSON.stringify({ mock: { say, delay_ms: 2 } });

const whole = await client.responses.create({ model: "gpt-5", instructions, input: "Hi" });
assert.equal(whole.output_text, expected);

const stream = await client.responses.create({ model: "gpt-5", instructions, input: "Hi", stream: true });
let text = "";
let pieces = 0;
for await (const event of stream) {
  const dumped = JSON.stringify(event);
  assert.ok(!dumped.includes("AKIAZ3MSJV4WWNKWW5FG") && !dumped.includes("ops@northwind-mail.io"), dumped);
  if (event.type === "response.output_text.delta") {
    text += event.delta;
    pieces += 1;
  }
}
assert.equal(text, expected);
assert.ok(pieces > 3);

const helper = client.responses.stream({ model: "gpt-5", instructions, input: "Hi" });
const final = await helper.finalResponse();
const finalText = final.output
  .flatMap((item) => item.content ?? [])
  .map((part) => part.text ?? "")
  .join("");
assert.equal(finalText, expected);
console.log("responses node sdk ok");
