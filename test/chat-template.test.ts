// Chat templates rendered as transformers' apply_chat_template(tokenize=False) renders them
// (fixture test/fixtures/tokenizer/chat.json from scripts/reference/tokenizer_ref.py): SmolLM2's own
// template from its GGUF and common families (ChatML, Llama 3, Mistral, Gemma, Zephyr, Qwen with
// tools), with and without the generation prompt, and the errors raise_exception gives.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ChatTemplateError, renderChat, type ChatMessage } from '../src/tokenizer/chat-template.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { fixture } from './helpers.js';

interface ChatCase {
  template: string;
  conversation: string;
  addGenerationPrompt: boolean;
  tools: unknown[] | null;
  rendered?: string;
  error?: string;
}

interface ChatFixture {
  bosToken: string;
  eosToken: string;
  templates: Record<string, string>;
  conversations: Record<string, ChatMessage[]>;
  cases: ChatCase[];
}

test('chat templates render exactly as transformers renders them', (t) => {
  const p = fixture('tokenizer', 'chat.json');
  if (!p) return t.skip('no fixture test/fixtures/tokenizer/chat.json: run scripts/reference/make-all.sh');
  const fx = JSON.parse(readFileSync(p, 'utf8')) as ChatFixture;
  let rendered = 0;
  let errors = 0;
  for (const c of fx.cases) {
    const what = `${c.template} / ${c.conversation} / generation prompt ${c.addGenerationPrompt}${c.tools ? ' / tools' : ''}`;
    const run = (): string =>
      renderChat(fx.templates[c.template], fx.conversations[c.conversation], {
        addGenerationPrompt: c.addGenerationPrompt,
        bosToken: fx.bosToken,
        eosToken: fx.eosToken,
        tools: c.tools ?? undefined,
      });
    if (c.error !== undefined) {
      assert.throws(run, (e: unknown) => {
        assert.ok(e instanceof ChatTemplateError, `${what}: expected a ChatTemplateError`);
        assert.equal(e.message, `lorakit: chat template error: ${c.error}.`, what);
        return true;
      });
      errors++;
    } else {
      assert.equal(run(), c.rendered, what);
      rendered++;
    }
  }
  if (fx.templates.smollm2 === undefined)
    t.diagnostic('SmolLM2 template absent from the fixture (run scripts/fetch-smollm2.sh)');
  t.diagnostic(`${rendered} renders and ${errors} template errors match transformers`);
});

test('template globals: bos/eos, tools none, strftime_now, range, loop controls', () => {
  const msgs: ChatMessage[] = [
    { role: 'user', content: 'a' },
    { role: 'assistant', content: 'b' },
  ];
  const r = (tpl: string, extra: Partial<Parameters<typeof renderChat>[2]> = {}): string =>
    renderChat(tpl, msgs, { addGenerationPrompt: false, ...extra });
  assert.equal(r('{{ bos_token }}|{{ eos_token }}', { bosToken: '<s>', eosToken: '</s>' }), '<s>|</s>');
  assert.equal(
    r('[{{ bos_token }}]'),
    '[]',
    'an unset special token renders empty, as an undefined Jinja variable',
  );
  assert.equal(r('{% if tools is not none %}T{% else %}N{% endif %}'), 'N');
  assert.equal(r('{% if tools is not none %}{{ tools | length }}{% endif %}', { tools: [{ a: 1 }] }), '1');
  // (@huggingface/jinja prints booleans as true/false where Python prints True/False; templates test
  // them rather than print them.)
  assert.equal(r('{% if add_generation_prompt %}G{% endif %}', { addGenerationPrompt: true }), 'G');
  const now = new Date();
  const ymd = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
  const got = r("{{ strftime_now('%Y-%m-%d') }}");
  assert.ok(got === ymd || got > ymd, `strftime_now gave ${got}`);
  assert.match(
    r("{{ strftime_now('%d %b %Y %A %H:%M') }}"),
    /^\d\d [A-Z][a-z]{2} \d{4} [A-Z][a-z]+day \d\d:\d\d$/,
  );
  assert.equal(
    r('{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(1, 7, 2) %}{{ i }}{% endfor %}'),
    '012|135',
  );
  assert.equal(
    r('{% for m in messages %}{% if loop.last %}{% break %}{% endif %}{{ m.role }}{% endfor %}'),
    'user',
  );
  assert.equal(r('{{ messages | length }} {{ messages[-1].content }}', { extra: { unused: 1 } }), '2 b');
  assert.equal(r('{{ date_string }}', { extra: { date_string: '1 Jan 2025' } }), '1 Jan 2025');
});

test('template errors are one clear sentence', () => {
  const msgs: ChatMessage[] = [{ role: 'user', content: 'x' }];
  const err = (tpl: string, re: RegExp): void =>
    assert.throws(
      () => renderChat(tpl, msgs, { addGenerationPrompt: false }),
      (e: unknown) => e instanceof ChatTemplateError && re.test(e.message) && !e.message.includes('\n'),
    );
  err(
    "{{ raise_exception('Roles must alternate') }}",
    /^lorakit: chat template error: Roles must alternate\.$/,
  );
  err(
    '{% for m in messages %}{{ m.content }',
    /^lorakit: chat template error: cannot parse the template \(.+\)\.$/,
  );
  err('{% if %}', /^lorakit: chat template error: /);
  err('{{ messages.nope() }}', /^lorakit: chat template error: /);
  const tok = Tokenizer.fromJSON({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] } });
  assert.throws(() => tok.applyChatTemplate(msgs), /^Error: lorakit: this tokenizer has no chat template\.$/);
  assert.equal(tok.applyChatTemplate(msgs, { template: '{{ messages[0].content }}' }), 'x');
});
