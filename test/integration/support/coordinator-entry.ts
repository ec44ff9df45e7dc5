/**
 * Runs `coordinator` from the TypeScript sources (no build needed): `node --import tsx coordinator-entry.ts <args>`,
 * exactly as `npx coordinator <args>` runs `dist/`. Used by the integration tests through {@link CoordinatorProcess}.
 */
import { main } from '../../../src/coordinator/cli.js';

process.exitCode = await main(process.argv.slice(2));
