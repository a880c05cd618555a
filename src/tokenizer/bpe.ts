// The BPE model, as tokenizers' models/bpe: a word starts as its characters (unknown ones become
// byte-fallback <0xNN> tokens or unk), then the adjacent pair with the lowest merge rank is merged,
// leftmost first, until no pair merges. A binary heap orders the candidate merges (stale entries are
// skipped on pop), so long words stay O(n log n). Words are cached.
//
// Ranks come from the merges list, or (sentencepiece-style, GGUF `llama` vocabularies) from the score
// of the merged token: a higher score merges first, equal scores leftmost first.

export interface BpeConfig {
  /** token → id of the model's vocabulary. */
  vocab: Map<string, number>;
  /** Ranked merges (rank = index). Ignored when `scores` is given. */
  merges?: [string, string][];
  /** Sentencepiece scores by id: any adjacent pair whose concatenation is a token may merge. */
  scores?: ArrayLike<number>;
  unkToken: string | null;
  fuseUnk: boolean;
  byteFallback: boolean;
  ignoreMerges: boolean;
  continuingSubwordPrefix: string | null;
  endOfWordSuffix: string | null;
  /** For error messages. */
  file: string;
}

const utf8 = new TextEncoder();
const NO_MERGE = -1;
const PAIR_BITS = 22; // new ids < 4M
const PAIR_SCALE = 2 ** PAIR_BITS;
const POS_SCALE = 2 ** 32;
/** tokenizers caches words shorter than this many bytes; we count UTF-16 units, close enough. */
const CACHE_MAX_WORD = 256;
const CACHE_CAPACITY = 100_000;
/** Characters a long word may be cut before (where words start in sentencepiece and byte-level text). */
const CUT_BEFORE = new Set([' ', '\u2581', '\n', '\u0120', '\u010a']);

/** The code point of `s` that ends at UTF-16 index i. */
function charBefore(s: string, i: number): string {
  const low = s.charCodeAt(i - 1);
  return i >= 2 && low >= 0xdc00 && low <= 0xdfff ? s.slice(i - 2, i) : s.slice(i - 1, i);
}

/** A min-heap of merge candidates keyed by rank·2³² + position, carrying the merged id. */
class MergeHeap {
  keys: number[] = [];
  ids: number[] = [];
  get size(): number {
    return this.keys.length;
  }
  clear(): void {
    this.keys.length = 0;
    this.ids.length = 0;
  }
  push(key: number, id: number): void {
    const k = this.keys;
    const d = this.ids;
    let i = k.length;
    k.push(key);
    d.push(id);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (k[p] <= key) break;
      k[i] = k[p];
      d[i] = d[p];
      i = p;
    }
    k[i] = key;
    d[i] = id;
  }
  /** Pops the minimum into popKey/popId. */
  popKey = 0;
  popId = 0;
  pop(): void {
    const k = this.keys;
    const d = this.ids;
    this.popKey = k[0];
    this.popId = d[0];
    const lastK = k.pop()!;
    const lastD = d.pop()!;
    const n = k.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && k[c + 1] < k[c]) c++;
      if (k[c] >= lastK) break;
      k[i] = k[c];
      d[i] = d[c];
      i = c;
    }
    k[i] = lastK;
    d[i] = lastD;
  }
}

export class BpeModel {
  readonly vocab: Map<string, number>;
  /** id → token of the model vocabulary (holes are undefined). */
  readonly vocabR: (string | undefined)[];
  private readonly pairs = new Map<number, number>();
  private readonly idBound: number;
  private readonly scoreRank: Int32Array | null = null;
  private readonly unkId: number | null;
  private readonly cfg: BpeConfig;
  private readonly cache = new Map<string, number[]>();
  private readonly byteIds: (number | undefined)[] = [];
  private readonly heap = new MergeHeap();
  /** "ab" for every token holding a CUT_BEFORE character b after a character a (built on first use). */
  private crossing: Set<string> | null = null;
  // Symbol buffers reused across words.
  private symC = new Int32Array(64);
  private symPrev = new Int32Array(64);
  private symNext = new Int32Array(64);
  private symLive = new Uint8Array(64);

  constructor(cfg: BpeConfig) {
    this.cfg = cfg;
    this.vocab = cfg.vocab;
    let bound = 0;
    for (const id of cfg.vocab.values()) bound = Math.max(bound, id + 1);
    this.idBound = bound;
    if (bound >= PAIR_SCALE)
      throw new Error(`lorakit: vocabulary of ${cfg.file} is too large (${bound} ids).`);
    this.vocabR = new Array<string | undefined>(bound);
    for (const [tok, id] of cfg.vocab) this.vocabR[id] = tok;
    this.unkId = cfg.unkToken !== null ? (cfg.vocab.get(cfg.unkToken) ?? null) : null;
    for (let b = 0; b < 256; b++)
      this.byteIds.push(cfg.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));

    if (cfg.scores) {
      // Dense rank of scores, highest first: equal scores share a rank, so position breaks ties.
      const n = bound;
      const order = Array.from({ length: n }, (_, i) => i).sort(
        (a, b) => (cfg.scores![b] ?? 0) - (cfg.scores![a] ?? 0),
      );
      const rank = new Int32Array(n);
      let r = 0;
      for (let i = 0; i < n; i++) {
        if (i > 0 && cfg.scores[order[i]] !== cfg.scores[order[i - 1]]) r++;
        rank[order[i]] = r;
      }
      this.scoreRank = rank;
    } else {
      const prefix = cfg.continuingSubwordPrefix ?? '';
      const merges = cfg.merges ?? [];
      for (let rank = 0; rank < merges.length; rank++) {
        const [a, b] = merges[rank];
        const ia = cfg.vocab.get(a);
        const ib = cfg.vocab.get(b);
        if (ia === undefined || ib === undefined)
          throw new Error(
            `lorakit: merge "${a} ${b}" of ${cfg.file} uses a token missing from the vocabulary.`,
          );
        const merged = a + (prefix && b.startsWith(prefix) ? b.slice(prefix.length) : b);
        const id = cfg.vocab.get(merged);
        if (id === undefined)
          throw new Error(
            `lorakit: merge "${a} ${b}" of ${cfg.file} makes "${merged}", which is not in the vocabulary.`,
          );
        this.pairs.set(ia * bound + ib, rank * PAIR_SCALE + id);
      }
    }
  }

  get size(): number {
    return this.vocab.size;
  }

  /** rank·2²² + newId of merging ids a and b, or NO_MERGE. */
  private pair(a: number, b: number): number {
    const key = a * this.idBound + b;
    const hit = this.pairs.get(key);
    if (hit !== undefined) return hit;
    if (this.scoreRank === null) return NO_MERGE;
    const id = this.vocab.get(this.vocabR[a]! + this.vocabR[b]!);
    const v = id === undefined ? NO_MERGE : this.scoreRank[id] * PAIR_SCALE + id;
    this.pairs.set(key, v);
    return v;
  }

  /**
   * The most UTF-8 bytes of a word one token stands for: its own string's (a token's string is the
   * text it covers or longer: byte tokens, prefixes), at least a character's 4 (an unknown one as
   * unk); null when runs of unknown characters fuse into one unk token, which covers any length.
   */
  maxTokenBytes(): number | null {
    const c = this.cfg;
    const allBytes = this.byteIds.every((id) => id !== undefined);
    if (c.unkToken !== null && c.fuseUnk && !(c.byteFallback && allBytes)) return null;
    let most = 4;
    for (const t of this.vocab.keys()) most = Math.max(most, utf8.encode(t).length);
    return most;
  }

  /**
   * `word` cut into pieces of at least `chars` characters (the last may be shorter) where no merge can
   * cross: before a CUT_BEFORE character b that is a token, after a character a that is a token, when
   * no token holds "ab" (what a merge across the cut would make). Tokenizing the pieces one after the
   * other gives tokenize(word)'s ids. A word with no such place stays whole.
   */
  splitWord(word: string, chars: number): string[] {
    const c = this.cfg;
    // A prefix or suffix marks a piece's first or last character; ignore_merges looks up whole words.
    if (c.ignoreMerges || c.continuingSubwordPrefix || c.endOfWordSuffix || word.length <= chars)
      return [word];
    this.crossing ??= this.crossingPairs();
    const out: string[] = [];
    let start = 0;
    for (let i = chars; i < word.length; i++) {
      const b = word[i];
      if (!CUT_BEFORE.has(b) || !this.vocab.has(b)) continue;
      const a = charBefore(word, i);
      if (!this.vocab.has(a) || this.crossing.has(a + b)) continue;
      out.push(word.slice(start, i));
      start = i;
      i = start + chars - 1;
    }
    out.push(word.slice(start));
    return out;
  }

  private crossingPairs(): Set<string> {
    const pairs = new Set<string>();
    for (const t of this.vocab.keys())
      for (let i = 1; i < t.length; i++) if (CUT_BEFORE.has(t[i])) pairs.add(charBefore(t, i) + t[i]);
    return pairs;
  }

  /** Appends the ids of one pre-tokenized word. */
  tokenize(word: string, out: number[]): void {
    if (word.length === 0) return;
    if (this.cfg.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) {
        out.push(id);
        return;
      }
    }
    const hit = this.cache.get(word);
    if (hit !== undefined) {
      for (let i = 0; i < hit.length; i++) out.push(hit[i]);
      return;
    }
    const ids = this.mergeWord(word);
    if (word.length < CACHE_MAX_WORD) {
      if (this.cache.size >= CACHE_CAPACITY) this.cache.clear();
      this.cache.set(word, ids);
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  private ensure(n: number): void {
    if (this.symC.length >= n) return;
    const m = Math.max(n, this.symC.length * 2);
    this.symC = new Int32Array(m);
    this.symPrev = new Int32Array(m);
    this.symNext = new Int32Array(m);
    this.symLive = new Uint8Array(m);
  }

  /** Initial symbols (tokenizers' merge_word), then merge_all. */
  private mergeWord(w: string): number[] {
    const cfg = this.cfg;
    const syms: number[] = [];
    let unk = -1; // pending unk id (fused runs collapse into one)
    const chars: string[] = [];
    for (let i = 0; i < w.length;) {
      const cp = w.codePointAt(i)!;
      const n = cp > 0xffff ? 2 : 1;
      chars.push(w.slice(i, i + n));
      i += n;
    }
    for (let k = 0; k < chars.length; k++) {
      let s = chars[k];
      if (k > 0 && cfg.continuingSubwordPrefix) s = cfg.continuingSubwordPrefix + s;
      if (k === chars.length - 1 && cfg.endOfWordSuffix) s = s + cfg.endOfWordSuffix;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        if (unk >= 0) {
          syms.push(unk);
          unk = -1;
        }
        syms.push(id);
        continue;
      }
      if (cfg.byteFallback) {
        const bytes = utf8.encode(s);
        const ids: number[] = [];
        for (const b of bytes) {
          const bid = this.byteIds[b];
          if (bid === undefined) break;
          ids.push(bid);
        }
        if (ids.length === bytes.length) {
          // tokenizers leaves a pending unk in place here; it is flushed before the next known char.
          syms.push(...ids);
          continue;
        }
      }
      if (cfg.unkToken !== null) {
        if (this.unkId === null)
          throw new Error(
            `lorakit: the unknown token ${cfg.unkToken} of ${cfg.file} is not in its vocabulary.`,
          );
        if (unk >= 0 && !cfg.fuseUnk) syms.push(unk);
        unk = this.unkId;
      }
    }
    if (unk >= 0) syms.push(unk);
    return this.mergeAll(syms);
  }

  private mergeAll(syms: number[]): number[] {
    const n = syms.length;
    if (n < 2) return syms;
    this.ensure(n);
    const c = this.symC;
    const prev = this.symPrev;
    const next = this.symNext;
    const live = this.symLive;
    const heap = this.heap;
    heap.clear();
    for (let i = 0; i < n; i++) {
      c[i] = syms[i];
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
      live[i] = 1;
    }
    for (let i = 0; i + 1 < n; i++) {
      const m = this.pair(c[i], c[i + 1]);
      if (m !== NO_MERGE) heap.push(Math.floor(m / PAIR_SCALE) * POS_SCALE + i, m % PAIR_SCALE);
    }
    while (heap.size > 0) {
      heap.pop();
      const pos = heap.popKey % POS_SCALE;
      const newId = heap.popId;
      if (!live[pos]) continue;
      const right = next[pos];
      if (right < 0) continue;
      const cur = this.pair(c[pos], c[right]);
      if (cur === NO_MERGE || cur % PAIR_SCALE !== newId) continue; // stale entry
      c[pos] = newId;
      live[right] = 0;
      const rn = next[right];
      next[pos] = rn;
      if (rn >= 0) prev[rn] = pos;
      const p = prev[pos];
      if (p >= 0) {
        const m = this.pair(c[p], c[pos]);
        if (m !== NO_MERGE) heap.push(Math.floor(m / PAIR_SCALE) * POS_SCALE + p, m % PAIR_SCALE);
      }
      if (rn >= 0) {
        const m = this.pair(c[pos], c[rn]);
        if (m !== NO_MERGE) heap.push(Math.floor(m / PAIR_SCALE) * POS_SCALE + pos, m % PAIR_SCALE);
      }
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(c[i]);
    return out;
  }
}
