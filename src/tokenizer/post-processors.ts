// Post-processors: what encode(add_special_tokens=True) adds around a single sequence (BOS and the
// like). ByteLevel's post-processor only adjusts offsets, so it leaves ids unchanged.
import {
  arr,
  componentType,
  isObject,
  type Json,
  type JsonObject,
  malformed,
  objects,
  type Source,
  unsupported,
} from './json.js';

export type PostProcessor = (ids: number[]) => number[];

function specialIds(json: JsonObject, name: string, src: Source): number[] {
  const table = json.special_tokens;
  if (!isObject(table)) throw malformed('TemplateProcessing has no special_tokens', src);
  const entry = table[name];
  if (!isObject(entry) || !Array.isArray(entry.ids) || !entry.ids.every((x) => typeof x === 'number'))
    throw malformed(`TemplateProcessing special token ${name} has no ids`, src);
  return entry.ids as number[];
}

/** A [token, id] pair of BertProcessing/RobertaProcessing. */
function pairId(json: JsonObject, key: string, src: Source): number {
  const v = json[key];
  if (Array.isArray(v) && typeof v[1] === 'number') return v[1];
  throw malformed(`${String(json.type)}.${key} must be [token, id]`, src);
}

export function buildPostProcessor(json: Json | undefined, src: Source): PostProcessor | null {
  if (json === undefined || json === null) return null;
  if (typeof json !== 'object' || Array.isArray(json)) throw unsupported(JSON.stringify(json), src);
  const type = componentType(json, src);
  switch (type) {
    case 'Sequence': {
      const parts = objects(arr(json, 'processors', src), 'Sequence.processors', src)
        .map((p) => buildPostProcessor(p, src))
        .filter((p): p is PostProcessor => p !== null);
      return (ids) => {
        for (const p of parts) ids = p(ids);
        return ids;
      };
    }
    case 'ByteLevel':
      return null;
    case 'TemplateProcessing': {
      // Only the single-sequence template matters for encode(text).
      const items = objects(arr(json, 'single', src), 'TemplateProcessing.single', src);
      const plan: (number[] | 'A')[] = items.map((it) => {
        if (isObject(it.Sequence)) {
          if (it.Sequence.id !== 'A') throw malformed('the single template may only use sequence A', src);
          return 'A';
        }
        if (isObject(it.SpecialToken) && typeof it.SpecialToken.id === 'string')
          return specialIds(json, it.SpecialToken.id, src);
        throw malformed('TemplateProcessing items must be Sequence or SpecialToken', src);
      });
      return (ids) => {
        const out: number[] = [];
        for (const p of plan) {
          if (p === 'A') for (const id of ids) out.push(id);
          else out.push(...p);
        }
        return out;
      };
    }
    case 'BertProcessing':
    case 'RobertaProcessing': {
      const cls = pairId(json, 'cls', src);
      const sep = pairId(json, 'sep', src);
      return (ids) => [cls, ...ids, sep];
    }
    default:
      throw unsupported(type, src);
  }
}
