// `lorakit chat`: multi-turn replies equal generate() on the same conversation, /reset, /adapter and
// /system work, and on a real terminal (a pseudo-terminal through `script`) Ctrl-C stops a reply
// without leaving while Ctrl-C twice at the prompt exits.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { generate } from '../src/infer/generate.js';
import { loadModel } from '../src/models/load.js';
import { loadAdapter, setActiveAdapter } from '../src/peft/adapters.js';
import type { ChatMessage } from '../src/tokenizer/chat-template.js';
import { fixture, projectRoot } from './helpers.js';

const MODEL = fixture('models', 'llama');
const LORA = fixture('peft', 'llama-lora', 'adapter');
const SKIP = 'fixtures missing: run scripts/reference/make-all.sh';
const CLI = join(projectRoot, 'test', 'lorakit-cli.mts');
const MAX = 12;

test(
  'piped chat: each reply is generate()’s for the conversation so far; /reset, /adapter, /system',
  { skip: (!MODEL || !LORA) && SKIP },
  async () => {
    const input = [
      'hello there',
      'and then?',
      '/adapter',
      '/adapter off',
      'what now',
      '/reset',
      '/adapter lora',
      'hello there',
      '/adapter nope',
      '/system be brief',
      'hi',
      '/help',
      '/bogus',
      '',
    ].join('\n');
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        CLI,
        'chat',
        '--model',
        MODEL!,
        '--adapter',
        `lora=${LORA}`,
        '--max-new-tokens',
        String(MAX),
      ],
      {
        input,
        encoding: 'utf8',
        cwd: projectRoot,
        timeout: 60_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.split('\n');
    // Expected replies, computed with generate() on the same conversations.
    const { model, tokenizer } = await loadModel(MODEL!);
    try {
      loadAdapter(model, LORA!, 'lora');
      const say = (adapter: string | null, messages: ChatMessage[]) => {
        setActiveAdapter(model, adapter);
        return generate(model, tokenizer, { messages, maxNewTokens: MAX }).text;
      };
      const r1 = say('lora', [{ role: 'user', content: 'hello there' }]);
      const r2 = say('lora', [
        { role: 'user', content: 'hello there' },
        { role: 'assistant', content: r1 },
        { role: 'user', content: 'and then?' },
      ]);
      const r3 = say(null, [
        { role: 'user', content: 'hello there' },
        { role: 'assistant', content: r1 },
        { role: 'user', content: 'and then?' },
        { role: 'assistant', content: r2 },
        { role: 'user', content: 'what now' },
      ]);
      const r4 = say('lora', [{ role: 'user', content: 'hello there' }]);
      const r5 = say('lora', [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hi' },
      ]);
      const expected = [
        r1,
        r2,
        "active: lora; available: lora (and 'off')",
        '(base model)',
        r3,
        '(new conversation)',
        '(adapter lora)',
        r4,
        "lorakit: no adapter named 'nope' (available: lora; /adapter off for the base model).",
        '(system prompt set; new conversation)',
        r5,
      ];
      assert.deepEqual(lines.slice(0, expected.length), expected, r.stdout);
      assert.equal(r1, r4);
      assert.match(r.stdout, /\/adapter NAME {5}answer with adapter NAME/);
      assert.match(r.stdout, /lorakit: unknown command \/bogus \(try \/help\)\./);
    } finally {
      model.dispose();
    }
  },
);

test('chat refuses bad flags and adapters with clear errors', { skip: !MODEL && SKIP }, () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', CLI, 'chat', ...args], {
      encoding: 'utf8',
      cwd: projectRoot,
      input: '',
    });
  const noModel = run();
  assert.equal(noModel.status, 2);
  assert.match(noModel.stderr, /^lorakit chat: --model is required\./);
  const badAdapter = run('--model', MODEL!, '--adapter', join(projectRoot, 'test'));
  assert.equal(badAdapter.status, 1);
  assert.match(badAdapter.stderr, /^lorakit: .* is not a PEFT adapter folder/);
});

/** Runs chat on a pseudo-terminal (util-linux `script`), so readline sees a real TTY. */
function onTerminal(args: string[]) {
  const cmd = [process.execPath, '--import', 'tsx', CLI, 'chat', ...args]
    .map((s) => `'${s.replace(/'/g, "'\\''")}'`)
    .join(' ');
  const child = spawn('script', ['-qfec', cmd, '/dev/null'], {
    cwd: projectRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let raw = '';
  child.stdout.on('data', (d: Buffer) => (raw += d.toString()));
  child.stderr.on('data', (d: Buffer) => (raw += d.toString()));
  // eslint-disable-next-line no-control-regex
  const text = () => raw.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const waitFor = async (re: RegExp, what: string) => {
    for (let i = 0; i < 600; i++) {
      if (re.test(text())) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`timed out waiting for ${what}; terminal shows:\n${text()}`);
  };
  return { child, text, exited, waitFor, type: (s: string) => child.stdin.write(s) };
}

test(
  'on a terminal: Ctrl-C stops the reply and keeps the chat; Ctrl-C twice at the prompt exits',
  {
    skip:
      (!MODEL && SKIP) ||
      (spawnSync('script', ['--version']).status !== 0 && 'util-linux script is not installed'),
  },
  async () => {
    const t = onTerminal(['--model', MODEL!, '--max-new-tokens', '40']);
    try {
      await t.waitFor(/Ctrl-C twice to quit\.\n> $/, 'the first prompt');
      t.type('hello\r');
      await t.waitFor(/hello\n[^\n]*\n> $/, 'a whole reply');
      // Enter and Ctrl-C in one write: the reply is stopped before its first token, and the chat goes on.
      t.type('again\r\x03');
      await t.waitFor(/again\n\s*\[stopped\]\n> $/, 'the stopped reply');
      t.type('/adapter\r');
      await t.waitFor(/active: base model/, 'the chat to go on after Ctrl-C');
      t.type('\x03');
      await t.waitFor(/\(Ctrl-C again to quit\)\n> $/, 'the hint after one Ctrl-C at the prompt');
      t.type('\x03');
      assert.equal(await t.exited, 0, t.text());
    } finally {
      t.child.kill();
    }
  },
);
