// Training through WebGPU end to end: the trainer (train()) on stories260K against the same run on the
// CPU (both f32, so the losses agree to fp32 rounding), device memory flat from step to step, the
// adapter written from the device loading on the CPU; and `lorakit train --device webgpu` from the CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadModel } from '../src/models/load.js';
import { addAdapter, loadAdapter } from '../src/peft/adapters.js';
import { LORA_DEFAULTS } from '../src/peft/config.js';
import { memoryStats } from '../src/tensor/tensor.js';
import { loadData } from '../src/train/data.js';
import { evaluate } from '../src/train/evaluate.js';
import { train } from '../src/train/trainer.js';
import { projectRoot, sharedData, writeStoriesJsonl } from './helpers.js';
import { WEBGPU_SKIP } from './webgpu-helpers.js';

const MODEL = sharedData('models', 'stories260K-hf');
const STORIES = sharedData('datasets', 'tinystories', 'tinystories_val.txt');
const skip = WEBGPU_SKIP || (!MODEL || !STORIES ? 'shared data missing' : false);

const rows = (dir: string, name: string, from: number, count: number): string =>
  writeStoriesJsonl(join(dir, name), from, count)!;

test(
  'WebGPU: stories260K LoRA training equals the CPU run, memory stays flat, the adapter reloads on the CPU',
  { skip },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lorakit-webgpu-train-'));
    try {
      const data = rows(dir, 'train.jsonl', 0, 48);
      const evalData = rows(dir, 'eval.jsonl', 300, 8);
      const runs: Record<string, { evalLoss: number; losses: number[]; memory: number[] }> = {};
      for (const device of ['cpu', 'webgpu'] as const) {
        const { model, tokenizer } = await loadModel(MODEL!, { device });
        try {
          addAdapter(model, 'default', { ...LORA_DEFAULTS, r: 4, alpha: 8, dropout: 0.1 }, 7);
          const losses: number[] = [];
          const memory: number[] = [];
          const r = await train(model, tokenizer, {
            data,
            evalData,
            maxSteps: 8,
            batchSize: 4,
            lr: 3e-3,
            maxSeqLen: 96,
            seed: 3,
            outDir: device === 'webgpu' ? join(dir, 'run') : undefined,
            onStep: (m) => {
              losses.push(m.loss);
              memory.push(memoryStats(false, device).liveBytes);
            },
            onWarning: () => {},
          });
          runs[device] = { evalLoss: r.evalLoss!, losses, memory };
        } finally {
          model.dispose();
        }
      }
      const { cpu, webgpu } = runs;
      // Same data, dropout masks and optimizer: only the order of fp32 sums differs.
      for (let s = 0; s < cpu.losses.length; s++)
        assert.ok(
          Math.abs(webgpu.losses[s] - cpu.losses[s]) / cpu.losses[s] < 1e-4,
          `step ${s + 1}: loss ${webgpu.losses[s]} on WebGPU vs ${cpu.losses[s]} on the CPU`,
        );
      assert.ok(cpu.losses.at(-1)! < cpu.losses[0], `the loss falls: ${cpu.losses.join(', ')}`);
      assert.ok(
        Math.abs(webgpu.evalLoss - cpu.evalLoss) / cpu.evalLoss < 1e-4,
        `eval ${webgpu.evalLoss} vs ${cpu.evalLoss}`,
      );
      assert.equal(webgpu.memory.at(-1), webgpu.memory[1], `WebGPU memory grew: ${webgpu.memory.join(', ')}`);
      // The adapter the WebGPU run wrote, on the CPU.
      const { model, tokenizer } = await loadModel(MODEL!);
      try {
        loadAdapter(model, join(dir, 'run', 'adapter'), 'default');
        const examples = (await loadData(evalData, tokenizer, { maxSeqLen: 96, completionOnly: false }))
          .examples;
        const r = await evaluate(model, examples, 4);
        assert.ok(
          Math.abs(r.loss - webgpu.evalLoss) / webgpu.evalLoss < 1e-4,
          `CPU eval ${r.loss} vs ${webgpu.evalLoss}`,
        );
      } finally {
        model.dispose();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'WebGPU: lorakit train --device webgpu writes an adapter; generate refuses the device in one sentence',
  { skip },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'lorakit-webgpu-cli-'));
    try {
      const data = rows(dir, 'train.jsonl', 0, 16);
      const cli = (...args: string[]) =>
        spawnSync(process.execPath, ['--import', 'tsx', 'test/lorakit-cli.mts', ...args], {
          cwd: projectRoot,
          encoding: 'utf8',
        });
      const r = cli(
        'train',
        '--model',
        MODEL!,
        '--data',
        data,
        '--out',
        join(dir, 'out'),
        '--device',
        'webgpu',
        '--max-steps',
        '3',
        '--batch-size',
        '4',
        '--max-seq-len',
        '64',
        '--r',
        '4',
      );
      assert.equal(r.status, 0, r.stderr);
      assert.ok(existsSync(join(dir, 'out', 'adapter', 'adapter_model.safetensors')));
      const g = cli('generate', '--model', MODEL!, '--prompt', 'Once', '--device', 'webgpu');
      assert.equal(g.status, 2);
      assert.match(
        g.stderr,
        /^lorakit generate: --device webgpu is not supported by this command; use --device cpu\.$/m,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
