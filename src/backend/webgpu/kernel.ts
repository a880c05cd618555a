/// <reference types="@webgpu/types" />
// How a WebGPU kernel is written: a WGSL compute shader plus its buffers and scalar parameters,
// declared once. The declaration generates the shader's bindings and accessors, so kernel sources use
// tensors by name and never see binding numbers, element offsets (tensors are views into pooled
// buffers) or dtype packing:
//
//   ld_x(i)          element i of input x as f32 (f32, or bf16 decoded from its packed u32 words),
//                    i32 for i32 tensors, u32 for u8 tensors
//   st_y(i, v)       writes element i of output y (f32 or i32)
//   add_y(i, v)      atomic f32 add into output y (declared 'y:atomic')
//   ldw_x(w), stw_x(w, v)  word w of a packed (bf16, u8) tensor's buffer, to write those whole words
//   P.name           a scalar parameter; P.x_off is tensor x's element offset in its buffer
//
// One pipeline per (kernel, dtypes, constants), made at first use and cached.
import type { DType } from '../../tensor/dtype.js';
import type { Tensor } from '../../tensor/tensor.js';
import { webGpu } from './gpu.js';
import { queue } from './queue.js';
import { gpuBuffer } from './storage.js';

type ScalarType = 'u32' | 'i32' | 'f32';

export interface KernelSpec {
  readonly name: string;
  /** Tensors the kernel reads, in binding order. */
  readonly inputs: readonly string[];
  /** Tensors it writes: 'y' (f32 or i32 elements), or 'y:atomic' (f32 accumulated with add_y). */
  readonly outputs: readonly string[];
  /** Scalar parameters, 'name:u32' | 'name:i32' | 'name:f32'. */
  readonly params: readonly string[];
  /** The WGSL: helpers and one `@compute @workgroup_size(…) fn main(…)`. */
  readonly source: string;
}

/** Specialization constants: each becomes `const NAME = value;` before the source. */
export type Constants = Readonly<Record<string, number | boolean>>;

const MAX_GROUPS = 65535;

/** Workgroup counts for `groups` workgroups in one dimension, folded into y past the 65535 limit. Kernels
 *  recover the index as wid.x + wid.y · nwg.x (and skip indices ≥ the real count). */
export function linearGroups(groups: number): [number, number] {
  if (groups <= MAX_GROUPS) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / MAX_GROUPS);
  return [Math.ceil(groups / y), y];
}

interface Binding {
  name: string;
  output: boolean;
  atomic: boolean;
}

function bindingsOf(spec: KernelSpec): Binding[] {
  return [
    ...spec.inputs.map((name) => ({ name, output: false, atomic: false })),
    ...spec.outputs.map((o) => {
      const [name, kind] = o.split(':');
      return { name, output: true, atomic: kind === 'atomic' };
    }),
  ];
}

function paramsOf(spec: KernelSpec): { name: string; type: ScalarType }[] {
  return [
    ...bindingsOf(spec).map((b) => ({ name: `${b.name}_off`, type: 'u32' as const })),
    ...spec.params.map((p) => {
      const [name, type] = p.split(':');
      if (type !== 'u32' && type !== 'i32' && type !== 'f32')
        throw new Error(
          `lorakit: WebGPU kernel ${spec.name}: parameter '${p}' needs a type u32, i32 or f32.`,
        );
      return { name, type: type as ScalarType };
    }),
  ];
}

function constantText(name: string, v: number | boolean): string {
  if (typeof v === 'boolean') return `const ${name} = ${v};`;
  if (Number.isInteger(v) && v >= 0) return `const ${name} = ${v}u;`;
  if (Number.isInteger(v)) return `const ${name} = ${v}i;`;
  return `const ${name} = ${v}f;`;
}

// Packed tensors (bf16, u8) are written a whole 32-bit word at a time: ldw_x(w) / stw_x(w, v) address
// word w of the buffer itself (the kernel places P.x_off), so that no two threads share a word.
function words(b: Binding, slot: string): string {
  const ld = `fn ldw_${b.name}(w: u32) -> u32 { return ${slot}[w]; }`;
  return b.output ? `${ld}\nfn stw_${b.name}(w: u32, v: u32) { ${slot}[w] = v; }` : ld;
}

// Element accessors of binding b, stored in buffer slot `slot` whose elements are `elem`.
function accessors(b: Binding, dtype: DType, slot: string, elem: string): string {
  const n = b.name;
  const at = `P.${n}_off + i`;
  if (elem === 'atomic<u32>') {
    if (dtype !== 'f32') throw new Error(`lorakit: WebGPU atomic output ${n} must be f32, got ${dtype}.`);
    const load = `fn ld_${n}(i: u32) -> f32 { return bitcast<f32>(atomicLoad(&${slot}[${at}])); }`;
    if (!b.atomic) return load;
    return `${load}
fn add_${n}(i: u32, v: f32) {
  let j = ${at};
  var old = atomicLoad(&${slot}[j]);
  loop {
    let r = atomicCompareExchangeWeak(&${slot}[j], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}`;
  }
  switch (dtype) {
    case 'f32':
    case 'i32': {
      const t = dtype;
      const ld = `fn ld_${n}(i: u32) -> ${t} { return ${slot}[${at}]; }`;
      return b.output ? `${ld}\nfn st_${n}(i: u32, v: ${t}) { ${slot}[${at}] = v; }` : ld;
    }
    case 'bf16':
      return (
        `fn ld_${n}(i: u32) -> f32 { let j = ${at}; let w = ${slot}[j >> 1u]; return bitcast<f32>(select(w << 16u, w & 0xffff0000u, (j & 1u) == 1u)); }\n` +
        words(b, slot)
      );
    case 'u8':
      return (
        `fn ld_${n}(i: u32) -> u32 { let j = ${at}; return (${slot}[j >> 2u] >> ((j & 3u) * 8u)) & 0xffu; }\n` +
        words(b, slot)
      );
    default:
      throw new Error(`lorakit: WebGPU kernels take f32, bf16, i32 or u8 tensors, not ${dtype} (${n}).`);
  }
}

/**
 * Buffers to bind: one slot per distinct GPU buffer, since WebGPU forbids binding one buffer twice in
 * a dispatch when either binding writes it (an in-place op, or views of one tensor). slotOf[i] is
 * binding i's slot; a slot is writable when any of its tensors is an output.
 */
interface Layout {
  slotOf: number[];
  writable: boolean[];
  elem: string[];
}

function layoutOf(
  bindings: readonly Binding[],
  dtypes: readonly DType[],
  buffers: readonly unknown[],
): Layout {
  const slotOf: number[] = [];
  const writable: boolean[] = [];
  const elem: string[] = [];
  const first: unknown[] = [];
  bindings.forEach((b, i) => {
    let s = first.indexOf(buffers[i]);
    if (s < 0) {
      s = first.length;
      first.push(buffers[i]);
      writable.push(false);
      elem.push(dtypes[i] === 'f32' ? 'f32' : dtypes[i] === 'i32' ? 'i32' : 'u32');
    } else if (elem[s] !== (dtypes[i] === 'f32' ? 'f32' : dtypes[i] === 'i32' ? 'i32' : 'u32'))
      throw new Error(
        `lorakit: WebGPU: tensors of one buffer with different dtypes in one dispatch (${b.name}).`,
      );
    if (b.output) writable[s] = true;
    if (b.atomic) elem[s] = 'atomic<u32>';
    slotOf.push(s);
  });
  return { slotOf, writable, elem };
}

/** The whole WGSL of one variant (exported for error messages and tests). */
export function shaderText(
  spec: KernelSpec,
  dtypes: readonly DType[],
  layout: Layout,
  constants: Constants = {},
): string {
  const bindings = bindingsOf(spec);
  const params = paramsOf(spec);
  const lines: string[] = [];
  for (const [k, v] of Object.entries(constants)) lines.push(constantText(k, v));
  lines.push(`struct Params { ${params.map((p) => `${p.name}: ${p.type},`).join(' ')} }`);
  lines.push(`@group(0) @binding(${layout.elem.length}) var<uniform> P: Params;`);
  layout.elem.forEach((e, s) =>
    lines.push(
      `@group(0) @binding(${s}) var<storage, ${layout.writable[s] ? 'read_write' : 'read'}> buf${s}: array<${e}>;`,
    ),
  );
  bindings.forEach((b, i) =>
    lines.push(accessors(b, dtypes[i], `buf${layout.slotOf[i]}`, layout.elem[layout.slotOf[i]])),
  );
  lines.push(spec.source);
  return lines.join('\n');
}

interface Variant {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  slots: number;
}
const variants = new Map<string, Variant>();

function variant(spec: KernelSpec, dtypes: readonly DType[], layout: Layout, constants: Constants): Variant {
  const key = `${spec.name}|${dtypes.join(',')}|${layout.slotOf.join(',')}|${JSON.stringify(constants)}`;
  let v = variants.get(key);
  if (v) return v;
  const { device } = webGpu();
  const slots = layout.elem.length;
  const bindGroupLayout = device.createBindGroupLayout({
    entries: [
      ...layout.writable.map((w, s) => ({
        binding: s,
        visibility: 4 /* GPUShaderStage.COMPUTE */,
        buffer: { type: w ? ('storage' as const) : ('read-only-storage' as const) },
      })),
      { binding: slots, visibility: 4, buffer: { type: 'uniform' as const } },
    ],
  });
  const module = device.createShaderModule({
    code: shaderText(spec, dtypes, layout, constants),
    label: spec.name,
  });
  const pipeline = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] }),
    compute: { module, entryPoint: 'main' },
    label: spec.name,
  });
  v = { pipeline, layout: bindGroupLayout, slots };
  variants.set(key, v);
  return v;
}

/**
 * Records one dispatch of `spec` over `groups` workgroups ([x, y, z]), binding tensors by name and
 * filling the scalar parameters. Returns at once; the work runs when the queue is next submitted.
 */
export function dispatch(
  spec: KernelSpec,
  tensors: Readonly<Record<string, Tensor>>,
  params: Readonly<Record<string, number>>,
  groups: readonly [number, number?, number?],
  constants: Constants = {},
): void {
  const bindings = bindingsOf(spec);
  const used = bindings.map((b) => {
    const t = tensors[b.name];
    if (!t) throw new Error(`lorakit: WebGPU kernel ${spec.name} needs tensor '${b.name}'.`);
    if (t.device !== 'webgpu')
      throw new Error(`lorakit: WebGPU kernel ${spec.name}: '${b.name}' is on ${t.device}.`);
    return t;
  });
  const dtypes = used.map((t) => t.dtype);
  const buffers = used.map(gpuBuffer);
  const layout = layoutOf(bindings, dtypes, buffers);
  const v = variant(spec, dtypes, layout, constants);
  const paramList = paramsOf(spec);
  const { data, binding } = queue.params(paramList.length * 4);
  paramList.forEach((p, i) => {
    const value =
      p.name.endsWith('_off') && p.name.slice(0, -4) in tensors
        ? tensors[p.name.slice(0, -4)].offset
        : params[p.name];
    if (value === undefined)
      throw new Error(`lorakit: WebGPU kernel ${spec.name} needs parameter '${p.name}'.`);
    if (p.type === 'f32') data.setFloat32(i * 4, value, true);
    else if (p.type === 'i32') data.setInt32(i * 4, value, true);
    else {
      if (!(value >= 0 && value <= 0xffffffff))
        throw new Error(`lorakit: WebGPU kernel ${spec.name}: ${p.name} = ${value} does not fit a u32.`);
      data.setUint32(i * 4, value, true);
    }
  });
  const { device } = webGpu();
  const group = device.createBindGroup({
    layout: v.layout,
    entries: [
      ...layout.writable.map((_, s) => {
        const buffer = buffers[layout.slotOf.indexOf(s)];
        return { binding: s, resource: { buffer, offset: 0, size: buffer.size } };
      }),
      { binding: v.slots, resource: binding },
    ],
  });
  const pass = queue.computePass();
  pass.setPipeline(v.pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1);
}

/** Throws one sentence unless every given tensor is f32 (what WebGPU kernels compute and write in). */
export function expectF32(op: string, ...ts: (Tensor | null)[]): void {
  for (const t of ts)
    if (t && t.dtype !== 'f32')
      throw new Error(`lorakit: the WebGPU ${op} kernel computes in f32, got a ${t.dtype} tensor.`);
}
