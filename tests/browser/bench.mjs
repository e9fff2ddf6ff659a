// Browser benchmark (not a test): per-image time of the detector in headless Chromium on the
// wasm CPU backend and on WebGPU, for a full-size random-weight ViT-B-16-plus-240 bundle,
// cold (first call after load) and warm (median of --repeats), next to `duoclip bench` (native)
// on the same machine.
//
//   node tests/browser/bench.mjs [--bundle DIR] [--devices cpu,webgpu] [--repeats 3]
//                                [--native FILE.json | --no-native] [--software-webgpu]
//                                [--one-thread] [--quick] [--out bench-browser.json]
//
// Without --bundle, one is written with `duoclip convert --random vit-b-16-plus-240 --fp16
// --domains object:bottle` (random weights and anchors, seconds).
// --native reuses the JSON of an earlier `duoclip bench --out FILE.json`.
// Rows: faithful map, product pair, product set of 8, faithful + TTA (5 steps) and the 22-view
// score, as `duoclip bench` names them; --quick leaves out the 22-view row (22 towers a call),
// here and in the native run, as `duoclip bench --quick` does.
// --one-thread serves the site without its threaded builds (www/pkg-threads*), so the CPU row
// times the one-thread build a page that is not cross-origin isolated gets (and the native run,
// unless --native, gets one thread too).
// On a machine without a GPU, Chromium's WebGPU adapter is SwiftShader (CPU emulation): its
// numbers say nothing about GPUs and a full-size model takes minutes per image there, so that
// row is skipped unless --software-webgpu.

import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { WWW, runDuoclip, startSite, tempDir } from './harness.mjs';
import { BUILD_DIRS } from './page-driver.mjs';

const { values: args } = parseArgs({
  options: {
    bundle: { type: 'string' },
    devices: { type: 'string', default: 'cpu,webgpu' },
    repeats: { type: 'string', default: '3' },
    native: { type: 'string' },
    'no-native': { type: 'boolean', default: false },
    'software-webgpu': { type: 'boolean', default: false },
    'one-thread': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench-browser.json' },
  },
});
const repeats = Math.max(1, Number(args.repeats));
const cleanup = [];

async function bundleDir() {
  if (args.bundle) return path.resolve(args.bundle);
  const dir = tempDir('duoclip-bench-bundle-');
  cleanup.push(dir);
  console.error('writing a random full-size bundle with `duoclip convert --random` …');
  await runDuoclip(['convert', '--random', 'vit-b-16-plus-240', '--fp16',
    '--domains', 'object:bottle', '--out', dir]);
  return dir;
}

/** www/ with the bundle mounted at /bench-model/, as links: nothing is copied or written to www/. */
function siteWithBundle(bundle) {
  const root = tempDir('duoclip-bench-site-');
  cleanup.push(root);
  const threaded = (name) => name.startsWith('pkg-threads');
  for (const name of readdirSync(WWW).filter((n) => !(args['one-thread'] && threaded(n)))) {
    symlinkSync(path.join(WWW, name), path.join(root, name));
  }
  mkdirSync(path.join(root, 'bench-model'));
  for (const name of readdirSync(bundle)) {
    symlinkSync(path.join(bundle, name), path.join(root, 'bench-model', name));
  }
  return root;
}

async function nativeRows() {
  if (args['no-native']) return null;
  if (args.native) return JSON.parse(readFileSync(args.native, 'utf8'));
  const out = path.join(tempDir('duoclip-bench-native-'), 'bench.json');
  cleanup.push(path.dirname(out));
  // As many threads as the browser's CPU path: one with --one-thread, else every core.
  const env = args['one-thread'] ? { RAYON_NUM_THREADS: '1' } : {};
  console.error(`running \`duoclip bench --device cpu --repeats ${repeats}\`${args['one-thread'] ? ' on one thread' : ''} …`);
  const { stdout } = await runDuoclip(['bench', '--device', 'cpu', '--repeats', String(repeats),
    '--no-text', ...(args.quick ? ['--quick'] : []), '--out', out], env);
  console.error(stdout);
  return JSON.parse(readFileSync(out, 'utf8'));
}

/** The WebGPU adapter Chromium offers, as { vendor, architecture, software }, or null. */
function webgpuAdapter(page) {
  return page.evaluate(async () => {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) return null;
    const { vendor, architecture } = adapter.info ?? {};
    const software = adapter.info?.isFallbackAdapter === true || /swiftshader/i.test(`${vendor} ${architecture}`);
    return { vendor, architecture, software };
  });
}

/** Runs in the page: loads the bundle on `device` and times the detector's paths on it. */
async function timeInPage(page, device) {
  return page.evaluate(async ({ device, repeats, quick }) => {
    const { Detector } = await import('./duoclip.js');
    const started = performance.now();
    const detector = await Detector.load({ model: 'bench-model/', device });
    const loadS = (performance.now() - started) / 1000;
    console.log(`[bench] ${device}: model loaded in ${loadS.toFixed(2)} s`);
    // The same smooth gradient as `duoclip bench`: content does not change the cost.
    const size = detector.imageSize;
    const canvas = new OffscreenCanvas(size, size);
    const ctx = canvas.getContext('2d');
    const pixels = ctx.createImageData(size, size);
    for (let i = 0; i < size * size; i++) pixels.data.set([i % size, Math.floor(i / size), 128, 255], i * 4);
    ctx.putImageData(pixels, 0, 0);
    const image = await canvas.convertToBlob({ type: 'image/png' });
    const base = { domain: 'object', object: 'bottle' };
    const eight = Array(8).fill(image);
    const faithful = { ...base, preset: 'anovl' };
    // The names of `duoclip bench`'s rows, so that the table can put them side by side.
    const paths = [
      ['faithful map (per image)', () => detector.scoreImage(image, faithful), 1],
      ['product pair (per image)', () => detector.scorePair(image, image, { ...base, preset: 'product' }), 2],
      ['product set of 8 (per image)', () => detector.scoreSet(eight, { ...base, preset: 'product' }), 8],
      ['faithful + TTA anovl 5 steps (per image)', () => detector.scoreImage(image, { ...faithful, tta: 'anovl' }), 1],
      ...(quick ? [] : [
        ['faithful, 22-view score (per image)', () => detector.scoreImage(image, { ...faithful, views: 22 }), 1],
      ]),
    ];
    const rows = [];
    for (const [name, run, n] of paths) {
      const once = async () => {
        const t = performance.now();
        await run();
        return (performance.now() - t) / 1000 / n;
      };
      const cold = await once();
      console.log(`[bench] ${device} ${name}: cold ${cold.toFixed(2)} s`);
      const warm = [];
      for (let r = 0; r < repeats; r++) warm.push(await once());
      console.log(`[bench] ${device} ${name}: warm ${warm.map((w) => w.toFixed(2)).join(', ')} s`);
      warm.sort((a, b) => a - b);
      rows.push({ path: name, cold_s: cold, warm_s: warm[Math.floor(warm.length / 2)] });
    }
    const result = { device: detector.device, note: detector.deviceNote, load_s: loadS, rows,
      memory_bytes: detector.wasmMemoryBytes, wasm_build: detector.wasmBuild };
    detector.dispose();
    return result;
  }, { device, repeats, quick: args.quick });
}

/** Bytes of the module of the build worker.js ran. */
const moduleBytes = (build) => statSync(path.join(WWW, BUILD_DIRS[build], 'duoclip_bg.wasm')).size;

function printTable(title, native, browser, f32Bytes) {
  const fmt = (v) => (v == null ? '-' : v.toFixed(3));
  const columns = [
    ...(native ? [['native cpu', native.rows]] : []),
    ...browser.map((b) => [`${b.device === 'webgpu' ? 'webgpu' : 'wasm cpu'}`, b.rows]),
  ];
  const pathsShown = browser[0]?.rows.map((r) => r.path) ?? [];
  console.log(`\nduoclip browser bench — bundle ${title}, seconds per image (cold / warm median)`);
  console.log('  (a wasm-check build is unoptimized: use scripts/build-web.sh for meaningful numbers)');
  for (const b of browser) {
    console.log(`  ${b.device}: model load ${b.load_s.toFixed(2)} s, peak wasm memory ` +
      `${(b.memory_bytes / 1e6).toFixed(0)} MB = ${(b.memory_bytes / f32Bytes).toFixed(2)}× the weights as f32, ` +
      `${b.wasm_build} build (${(moduleBytes(b.wasm_build) / 1e6).toFixed(1)} MB module)` +
      `${b.note ? ` (${b.note})` : ''}`);
  }
  if (native) console.log(`  native: model load ${native.model_load_s.toFixed(2)} s (duoclip bench, device ${native.device})`);
  const ratioNames = native ? browser.map((b) => `${b.device}/native`) : [];
  const header = ['path'.padEnd(30), ...columns.map(([name]) => name.padStart(20)),
    ...ratioNames.map((n) => n.padStart(16))].join(' ');
  console.log(header);
  for (const p of pathsShown) {
    const warmOf = (rows) => rows.find((r) => r.path === p)?.warm_s;
    const cells = columns.map(([, rows]) => {
      const row = rows.find((r) => r.path === p);
      return `${fmt(row?.cold_s)} / ${fmt(row?.warm_s)}`.padStart(20);
    });
    const ratios = native ? browser.map((b) => {
      const n = warmOf(native.rows);
      const w = warmOf(b.rows);
      return (n && w ? `${(w / n).toFixed(2)}x` : '-').padStart(16);
    }) : [];
    console.log([p.padEnd(30), ...cells, ...ratios].join(' '));
  }
}

async function main() {
  const bundle = await bundleDir();
  const manifest = JSON.parse(readFileSync(path.join(bundle, 'manifest.json'), 'utf8'));
  console.error(`bundle ${manifest.name}: ${(manifest.weights.bytes / 1e6).toFixed(0)} MB ${manifest.weights.dtype}`);
  const native = await nativeRows();
  const site = await startSite({ root: siteWithBundle(bundle) });
  const browser = [];
  try {
    const page = await site.context.newPage();
    page.on('console', (m) => {
      if (m.text().startsWith('[bench]')) console.error(m.text());
    });
    await page.goto(site.url);
    for (const device of args.devices.split(',').map((d) => d.trim()).filter(Boolean)) {
      if (device === 'webgpu') {
        const adapter = await webgpuAdapter(page);
        if (!adapter || (adapter.software && !args['software-webgpu'])) {
          console.error(adapter
            ? `WebGPU row skipped: the adapter is ${adapter.vendor} ${adapter.architecture} (software ` +
              'emulation on the CPU; minutes per image, says nothing about GPUs). --software-webgpu times it anyway.'
            : 'WebGPU row skipped: Chromium offers no WebGPU adapter here.');
          continue;
        }
      }
      console.error(`timing ${device} in Chromium …`);
      const result = await timeInPage(page, device);
      if (result.device !== device) {
        console.error(`  asked for ${device}, got ${result.device}: ${result.note}; row skipped`);
        continue;
      }
      browser.push(result);
    }
  } finally {
    await site.close();
  }
  const title = `${manifest.name} (${manifest.architecture.image_size} px, ${manifest.weights.dtype}` +
    `${manifest.test_model ? ', random weights' : ''})`;
  const f32Bytes = manifest.weights.bytes * (manifest.weights.dtype === 'f16' ? 2 : 1);
  printTable(title, native, browser, f32Bytes);
  writeFileSync(args.out, `${JSON.stringify({ bundle: title, native, browser }, null, 2)}\n`);
  console.error(`wrote ${args.out}`);
}

main().finally(() => {
  for (const dir of cleanup) rmSync(dir, { recursive: true, force: true });
}).catch((e) => {
  console.error(`bench failed: ${e.stack ?? e}`);
  process.exitCode = 1;
});
