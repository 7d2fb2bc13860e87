// What agent code asks of godwit, through three clients we did not write:
// the Vercel AI SDK (tools, required and streamed), LangChain JS
// (withStructuredOutput) and the OpenAI SDK (chat.completions.parse with a
// zod response format). Prints what came back as JSON, for
// server.TestAgentSDKs to check. The model's own preference may be noise:
// the protocol and the constraint must hold all the same.
import { generateText, streamText, tool } from 'ai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';

const baseURL = process.env.GODWIT_URL + '/v1';
const apiKey = process.env.GODWIT_KEY;
const name = process.env.GODWIT_MODEL;
const out = {};

const weather = z.object({ city: z.string().max(16), unit: z.enum(['celsius', 'fahrenheit']) });
const person = z.object({
  name: z.string().max(12),
  age: z.number().int().min(0).max(120),
  pets: z.array(z.string().max(8)).max(2),
});
const settings = { temperature: 1, seed: 7, maxOutputTokens: 120 };
const errorOf = (e) => ({ name: e?.constructor?.name, message: String(e?.message ?? e) });

const provider = createOpenAICompatible({ name: 'godwit', baseURL, apiKey });
const model = provider(name);
const tools = {
  get_weather: tool({ description: 'The weather in a city now', inputSchema: weather }),
  add: tool({ description: 'Adds two integers', inputSchema: z.object({ a: z.number().int(), b: z.number().int() }) }),
};

try {
  const r = await generateText({ model, prompt: 'What is the weather in Paris?', tools, toolChoice: 'required', ...settings });
  out.generateText = {
    finish: r.finishReason,
    calls: r.toolCalls.map((c) => ({ name: c.toolName, input: c.input, id: c.toolCallId, invalid: c.invalid ?? false })),
    valid: r.toolCalls.length > 0 && r.toolCalls.every((c) => (c.toolName === 'get_weather' ? weather : tools.add.inputSchema).safeParse(c.input).success),
  };
} catch (e) {
  out.generateText = { error: errorOf(e) };
}

try {
  const r = await generateText({ model, prompt: 'Add 2 and 3.', tools, toolChoice: { type: 'tool', toolName: 'add' }, ...settings });
  out.namedTool = { calls: r.toolCalls.map((c) => ({ name: c.toolName, input: c.input })) };
} catch (e) {
  out.namedTool = { error: errorOf(e) };
}

try {
  const s = streamText({ model, prompt: 'What is the weather in Oslo?', tools, toolChoice: 'required', ...settings });
  const parts = {};
  const calls = [];
  let error = null;
  for await (const p of s.fullStream) {
    parts[p.type] = (parts[p.type] ?? 0) + 1;
    if (p.type === 'tool-call') calls.push({ name: p.toolName, input: p.input, invalid: p.invalid ?? false });
    if (p.type === 'error') error = errorOf(p.error);
  }
  out.streamText = {
    parts, calls, error, finish: await s.finishReason,
    valid: calls.length > 0 && calls.every((c) => (c.name === 'get_weather' ? weather : tools.add.inputSchema).safeParse(c.input).success),
  };
} catch (e) {
  out.streamText = { error: errorOf(e) };
}

try {
  // With tools the model may answer in words: text streams as text.
  const s = streamText({ model, prompt: 'Say hello.', tools, toolChoice: 'auto', ...settings, maxOutputTokens: 16 });
  let text = '';
  for await (const t of s.textStream) text += t;
  out.streamAuto = { finish: await s.finishReason, text };
} catch (e) {
  out.streamAuto = { error: errorOf(e) };
}

const llm = new ChatOpenAI({ model: name, apiKey, configuration: { baseURL }, temperature: 1, maxTokens: 120, maxRetries: 0 });
for (const method of ['jsonSchema', 'functionCalling']) {
  const key = method === 'jsonSchema' ? 'langchainJsonSchema' : 'langchainFunctionCalling';
  try {
    const obj = await llm.withStructuredOutput(person, { name: 'person', method }).invoke('Describe a person.');
    out[key] = { obj, valid: person.safeParse(obj).success };
  } catch (e) {
    out[key] = { error: errorOf(e) };
  }
}

try {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const c = await client.chat.completions.parse({
    model: name,
    messages: [{ role: 'user', content: 'Describe a person.' }],
    response_format: zodResponseFormat(person, 'person'),
    max_completion_tokens: 120,
    temperature: 1,
    seed: 3,
  });
  const parsed = c.choices[0].message.parsed;
  out.parse = { parsed, valid: person.safeParse(parsed).success };
} catch (e) {
  out.parse = { error: errorOf(e) };
}

console.log(JSON.stringify(out));
