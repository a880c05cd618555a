// `lorakit info`: what this machine gives lorakit — the CPU kernel path in use and the CPU features
// that chose it, threads, whether a CUDA GPU is usable and which WebGPU adapter --device webgpu gets.
// Bug reports and benchmark headers quote it.
import { cpu, cpuPath, describeCpuPath } from '../backend/cpu/addon.js';
import { cudaAddon, cudaUnavailableReason } from '../backend/cuda/addon.js';
import { prepareWebGpu } from '../backend/webgpu/gpu.js';
import { parseFlags, type Specs } from './args.js';

export const SYNOPSIS = '[--json]';
export const HELP = 'show the CPU kernel path, CPU features, threads and GPU in use';

export const FLAGS = {
  json: { type: 'bool', help: 'print one JSON object' },
} as const satisfies Specs;

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, FLAGS, 'info');
  const cuda = cudaAddon();
  const gpu = cuda
    ? { available: true, name: cuda.deviceName() }
    : { available: false, reason: cudaUnavailableReason() };
  const webgpu = await prepareWebGpu().then(
    (g) => ({ available: true as const, name: g.adapter, f16: g.f16 }),
    (e: unknown) => ({
      available: false as const,
      reason: e instanceof Error ? e.message.replace(/^lorakit: /, '') : String(e),
    }),
  );
  const path = cpuPath();
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ cpu: { ...path, threads: cpu.getThreads() }, gpu, webgpu })}\n`);
    return 0;
  }
  process.stdout.write(
    `${describeCpuPath(path)}\n` +
      `threads: ${cpu.getThreads()} (OMP_NUM_THREADS sets it)\n` +
      `GPU: ${gpu.available ? gpu.name : `none (${gpu.reason})`}\n` +
      `WebGPU: ${webgpu.available ? webgpu.name : `none (${webgpu.reason})`}\n` +
      'LORAKIT_CPU_ISA=' +
      path.supported.join('|') +
      ' forces a CPU kernel path.\n',
  );
  return 0;
}
