// Runs the CLI from the TypeScript sources (tests spawn this instead of the built bin/lorakit.js).
import { main } from '../src/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
