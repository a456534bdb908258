// Builds the SDK into dist/ (ignored by git):
//   herald-client.js      the ES module, readable (bundlers, Node)
//   herald-client.min.js  the same, minified: what a page loads; its
//                         gzipped size is held to the budget below
//   herald-client.iife.js the same for a classic <script>: window.Herald
//   msgpack.js            the optional MessagePack codec adapter
//   *.d.ts                declarations, from the TypeScript sources (tsc)
//   www/                  the demo site: demo/ plus herald-client.js (the
//                         minified module) and herald-client.iife.js,
//                         served by `make run` (conf/demo.conf)
// Fails when the type check fails or the minified module is over budget.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createRequire } from 'node:module';

const BUDGET = 8 * 1024; // bytes, minified and gzipped, without msgpack
const require = createRequire(import.meta.url);

rmSync('dist', { recursive: true, force: true });
// Type check and declarations.
try {
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', '.'],
    { stdio: 'inherit' });
} catch {
  console.error('build: the type check failed');
  process.exit(1);
}

const common = { bundle: true, format: 'esm', target: 'es2020', platform: 'neutral',
  logLevel: 'warning' };
await build({ ...common, entryPoints: ['src/index.ts'], outfile: 'dist/herald-client.js' });
await build({ ...common, entryPoints: ['src/index.ts'], outfile: 'dist/herald-client.min.js',
  minify: true, sourcemap: 'linked' });
await build({ ...common, entryPoints: ['src/msgpack.ts'], outfile: 'dist/msgpack.js',
  external: ['@msgpack/msgpack'] });
// A classic script (no modules): window.Herald.Client.
await build({ ...common, format: 'iife', globalName: 'Herald', entryPoints: ['src/index.ts'],
  outfile: 'dist/herald-client.iife.js', minify: true });
// The pure helpers on their own, for the unit tests (not part of the API).
await build({ ...common, entryPoints: ['src/util.ts'], outfile: 'dist/util.js' });

const min = readFileSync('dist/herald-client.min.js');
const gz = gzipSync(min, { level: 9 }).length;
const report = { minified: min.length, gzipped: gz, budget: BUDGET };
writeFileSync('dist/size.json', JSON.stringify(report) + '\n');
console.log(`herald-client.min.js: ${min.length} bytes minified, ${gz} gzipped (budget ${BUDGET})`);
if (gz > BUDGET) {
  console.error(`build: over the size budget by ${gz - BUDGET} bytes`);
  process.exit(1);
}

// The demo site served by `make run` (conf/demo.conf).
mkdirSync('dist/www', { recursive: true });
cpSync('demo', 'dist/www', { recursive: true });
cpSync('dist/herald-client.min.js', 'dist/www/herald-client.js');
cpSync('dist/herald-client.min.js.map', 'dist/www/herald-client.min.js.map');
cpSync('dist/herald-client.iife.js', 'dist/www/herald-client.iife.js');
