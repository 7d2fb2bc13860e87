// Calls godwit through the official OpenAI Node SDK and prints what came
// back as JSON, for server.TestOpenAINodeSDK to check.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.GODWIT_URL + '/v1', apiKey: process.env.GODWIT_KEY, maxRetries: 0 });
const model = process.env.GODWIT_MODEL;
const out = {};

const c = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 16, temperature: 0 });
out.completion = { id: c.id, object: c.object, text: c.choices[0].text, finish: c.choices[0].finish_reason, usage: c.usage };

let text = '';
let usage = null;
let chunks = 0;
const s = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
for await (const ch of s) {
  chunks++;
  if (ch.choices.length > 0) text += ch.choices[0].text;
  if (ch.usage) usage = ch.usage;
}
out.streamedCompletion = { text, usage, chunks };

const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me a story.' }];
const chat = await client.chat.completions.create({ model, messages, max_completion_tokens: 12, temperature: 0 });
out.chat = { object: chat.object, role: chat.choices[0].message.role, content: chat.choices[0].message.content, finish: chat.choices[0].finish_reason, usage: chat.usage };

text = '';
let finish = null;
let role = null;
const cs = await client.chat.completions.create({ model, messages, max_completion_tokens: 12, temperature: 0, stream: true });
for await (const ch of cs) {
  const d = ch.choices[0]?.delta ?? {};
  if (d.role) role = d.role;
  if (d.content) text += d.content;
  if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
}
out.streamedChat = { role, content: text, finish };

// The SDK's own helper that accumulates a chat stream.
const runner = client.chat.completions.stream({ model, messages, max_completion_tokens: 12, temperature: 0 });
const final = await runner.finalChatCompletion();
out.chatStreamHelper = { content: final.choices[0].message.content };

try {
  await client.completions.create({ model, prompt: 'x', temperature: -1 });
  out.error = null;
} catch (e) {
  out.error = { name: e.constructor.name, status: e.status, type: e.type ?? e.error?.type, param: e.param ?? e.error?.param, message: e.message };
}
try {
  await client.completions.create({ model: 'no-such-model', prompt: 'x' });
  out.notFound = null;
} catch (e) {
  out.notFound = { name: e.constructor.name, status: e.status };
}
const models = await client.models.list();
out.models = models.data.map((m) => m.id);
const one = await client.models.retrieve(model);
out.retrieved = { id: one.id, object: one.object };

console.log(JSON.stringify(out));
