// The browser bundle's folder.ts: a page has no folders to read, so Tokenizer.fromFile says what to
// use instead. scripts/build-browser.mjs puts this file in folder.ts's place.
import type * as NodeFolder from './folder.js';

export type { TokenizerFolder } from './folder.js';

export function readTokenizerFolder(path: string): NodeFolder.TokenizerFolder {
  throw new Error(
    `lorakit: Tokenizer.fromFile(${JSON.stringify(path)}) reads files by path, which needs Node; in a browser use Tokenizer.fromFiles with the files' texts.`,
  );
}

// The twin must export what folder.ts does, with the same types.
({ readTokenizerFolder }) satisfies typeof NodeFolder;
