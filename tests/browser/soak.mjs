// Browser soak (issue #7, item 5): scores the same pair many times through the page's own
// controls and records the memory curve, to show that nothing grows from run to run. A
// measurement, not a test (it is not named *.test.mjs, so `node --test tests/browser/` skips it).
//
//   node tests/browser/soak.mjs [--pairs 200] [--every 10] [--device cpu|webgpu]
//                               [--model models/tiny/] [--json FILE]
//
// Needs www/pkg from scripts/build-web.sh. Per sample it reports:
// - wasm heap in use: bytes the Rust code holds (counted by its allocator, src/web/memory.rs);
//   a leak in the model or detector is a climb here;
// - wasm memory: the linear memory's size, its peak (it never shrinks);
// - page JS heap: the page's used JS heap after a forced garbage collection (CDP), where the
//   results view keeps maps and bitmaps;
// - ms per pair over the last samples;
// - on WebGPU, the GPU buffers alive and their bytes (created minus destroyed), counted by
//   wrapping the worker's GPUDevice.createBuffer from here (the shipped page has no such hook).
// The verdict compares the last sample with the first one after warm-up.

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { startSite } from './harness.mjs';
import { IMAGES, OBJECT, counter, loadModel, waitFor } from './page-driver.mjs';

const { values: args } = parseArgs({
  options: {
    pairs: { type: 'string', default: '200' },
    every: { type: 'string', default: '10' },
    device: { type: 'string', default: 'cpu' },
    model: { type: 'string', default: 'models/tiny/' },
    json: { type: 'string' },
  },
});
const pairs = Number(args.pairs);
const every = Number(args.every);
if (!(pairs >= 1 && every >= 1 && Number.isInteger(pairs) && Number.isInteger(every))) {
  console.error('soak.mjs: --pairs and --every must be whole numbers >= 1');
  process.exit(2);
}
const PAIR_TIMEOUT = args.device === 'webgpu' ? 300_000 : 60_000;
const MB = 1e6;

/** In the worker: count the GPU buffers its devices create and destroy. */
function countGpuBuffers(worker) {
  return worker.evaluate(() => {
    const count = (self.__gpuBuffers = { live: 0, bytes: 0 });
    const requestDevice = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function wrapped(...args) {
      const gpu = await requestDevice.apply(this, args);
      const createBuffer = gpu.createBuffer.bind(gpu);
      gpu.createBuffer = (descriptor) => {
        const buffer = createBuffer(descriptor);
        count.live += 1;
        count.bytes += descriptor.size;
        const destroy = buffer.destroy.bind(buffer);
        let destroyed = false;
        buffer.destroy = () => {
          if (!destroyed) {
            destroyed = true;
            count.live -= 1;
            count.bytes -= descriptor.size;
          }
          destroy();
        };
        return buffer;
      };
      return gpu;
    };
  });
}

const site = await startSite();
try {
  const page = await site.context.newPage();
  const cdp = await site.context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const workers = [];
  page.on('worker', (w) => workers.push(w));
  await page.goto(site.url);
  await page.waitForFunction(() => document.body.dataset.state === 'idle' && window.__duoclip.registry);
  // The worker started for the registry is the one the model loads in.
  const worker = workers.at(-1);
  if (args.device === 'webgpu') await countGpuBuffers(worker);
  const { device } = await loadModel(page, { device: args.device, model: args.model, timeout: PAIR_TIMEOUT });
  await page.check('input[name=mode][value=pair]');
  await page.setInputFiles('#image-a', IMAGES[0]);
  await page.setInputFiles('#image-b', IMAGES[1]);
  await page.selectOption('#domain', 'object');
  await page.fill('#object', OBJECT);

  /** One sample after `done` pairs: memory after a forced GC, and the time since the last. */
  const sample = async (done, ms) => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const heap = metrics.find((m) => m.name === 'JSHeapUsedSize').value;
    const hook = await page.evaluate(() => ({
      wasmMemory: window.__duoclip.wasmMemoryBytes, wasmHeap: window.__duoclip.wasmHeapInUseBytes,
    }));
    const gpu = device === 'webgpu' ? await worker.evaluate(() => self.__gpuBuffers) : null;
    return {
      pairs: done,
      ...(gpu && { gpuBuffers: gpu.live, gpuBufferMB: +(gpu.bytes / MB).toFixed(3) }),
      wasmHeapMB: +(hook.wasmHeap / MB).toFixed(3),
      wasmMemoryMB: +(hook.wasmMemory / MB).toFixed(3),
      pageHeapMB: +(heap / MB).toFixed(3),
      msPerPair: ms == null ? null : Math.round(ms),
    };
  };

  const curve = [];
  let since = Date.now();
  for (let done = 1; done <= pairs; done++) {
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, PAIR_TIMEOUT);
    if (done === 1 || done % every === 0 || done === pairs) {
      const elapsed = Date.now() - since;
      const row = await sample(done, done === 1 ? elapsed : elapsed / (done - (curve.at(-1)?.pairs ?? 0)));
      curve.push(row);
      console.log(JSON.stringify(row));
      since = Date.now();
    }
  }

  // The first sample includes the first run's one-off allocations (caches, compiled code);
  // growth is counted from the first sample after it.
  const base = curve.find((r) => r.pairs >= every) ?? curve[0];
  const last = curve.at(-1);
  const growth = (key) => +(last[key] - base[key]).toFixed(3);
  const report = {
    device, pairs, model: args.model, curve,
    growthAfterWarmUp: {
      from: base.pairs, to: last.pairs,
      wasmHeapMB: growth('wasmHeapMB'), wasmMemoryMB: growth('wasmMemoryMB'), pageHeapMB: growth('pageHeapMB'),
      ...(device === 'webgpu' && { gpuBuffers: last.gpuBuffers - base.gpuBuffers, gpuBufferMB: growth('gpuBufferMB') }),
    },
  };
  console.log(`growth from pair ${base.pairs} to ${last.pairs}: ${JSON.stringify(report.growthAfterWarmUp)}`);
  if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
} finally {
  await site.close();
}
