// GGUF files by path (Node). The format itself (header parsing, tensor reads and dequantization) is
// io/gguf-reader.ts, which a browser uses with a file's bytes.
import { fileSize, reopenChecked, withFile } from './file.js';
import { GGUFFile } from './gguf-reader.js';

export * from './gguf-reader.js';

/** Parses a GGUF file's header (metadata and tensor infos); tensors are read later, one at a time. */
export async function readGGUF(path: string): Promise<GGUFFile> {
  return withFile(path, (fd) => {
    const size = fileSize(fd);
    return GGUFFile.fromSource(fd, size, path, reopenChecked(path, size));
  });
}
