#!/usr/bin/env node
// The sparsegrad command, on plain Node: it runs the compiled package (dist/, built by `tsc -b`,
// which `npm install` runs in this repository).
let main;
try {
  ({ main } = await import('../dist/main.js'));
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
  console.error(`sparsegrad: the compiled package is missing (${e.message}); run \`npm run build\` in the repository first`);
  process.exit(1);
}
process.exitCode = await main(process.argv.slice(2));
