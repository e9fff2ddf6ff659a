// The wasm detector runs here so the page never blocks. Protocol (every message carries the id
// of the request it belongs to):
//   page → worker  {type:'registry'} | {type:'load', weights, anchors, manifest, hfConfig, device}
//                  | {type:'score', kind:'pair'|'set'|'image', images, opts}
//                  | {type:'inspect', file, opts}   (what a file holds: needs no model)
//                  | {type:'calibrate', scores, peaks, falseAlarm}   (thresholds for verdicts)
//                  (images: Blobs/Files, read by the wasm one at a time, or Uint8Arrays)
//   worker → page  {type:'progress', stage, done, total} | {type:'ready', info}
//                  | {type:'registry', models, version, wasmDir} | {type:'item', index, ...result}
//                  | {type:'result', info, fallback, count} | {type:'inspect', info}
//                  | {type:'calibrate', info}
//                  | {type:'error', code, message, trap}
// A score request sends each image's result as an `item` the moment it is final (its map
// transferred), then `result` or `error`: the page holds every finished image even when the
// request fails, is cancelled, or this worker hangs (a trap in a pool thread), and a WebGPU
// failure's rerun on the CPU sends the items again, which replace the earlier ones. Requests
// run one at a time, in arrival order. After a trap (`trap: true`) this worker's wasm is
// unusable: the page starts another.

// Four builds of the module (scripts/build-web.sh), all from one source:
//   pkg/                  SIMD128, WebGPU and the CPU: every browser with WebGPU;
//   pkg-relaxed/          the same with relaxed SIMD's fused multiply-add in the CPU path's
//                         matrix products (Chrome and Edge 114+), ~20% faster there;
//   pkg-threads/          the CPU path on a pool of Web Workers sharing one memory: pages that
//                         are cross-origin isolated (shared memory needs it). No WebGPU there:
//                         the GPU objects cannot be shared between threads;
//   pkg-threads-relaxed/  that with relaxed SIMD.
// A detector that will run on the CPU takes the first of threads-relaxed, threads, relaxed,
// plain that this browser runs and this site has; one that will run on WebGPU, relaxed or plain.
// A 37-byte module holding one f32x4.relaxed_madd tells whether relaxed SIMD runs here.
// Only the build chosen is fetched (sw.js precaches none of them).
//
// The builds are imported by their plain paths, not by a versioned URL: online every file
// comes from the server (the service worker goes to the network first); offline every file
// comes from one cache, "duoclip-shell-<build id>", which holds only that build's files (its
// shell fetched when that build's sw.js installed, any other file kept only if its sha256 is
// the one build-id.js lists). So this file and the wasm it loads are always of one build,
// without a version in the URL that every importer (the threaded builds' pool workers import
// the glue again) would have to agree on.
const RELAXED_SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123,
  123, 1, 123, 3, 2, 1, 0, 10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]);

const BUILDS = [
  { name: 'relaxed-simd+threads', dir: 'pkg-threads-relaxed', relaxed: true, threads: true },
  { name: 'simd128+threads', dir: 'pkg-threads', relaxed: false, threads: true },
  { name: 'relaxed-simd', dir: 'pkg-relaxed', relaxed: true, threads: false },
  { name: 'simd128', dir: 'pkg', relaxed: false, threads: false },
];

/** Whether `device` will run on the CPU: chosen, or `auto` without a hardware WebGPU adapter. */
async function runsOnCpu(device) {
  if (device === 'cpu') return true;
  if (device !== 'auto') return false;
  const adapter = await self.navigator?.gpu?.requestAdapter().catch(() => null);
  return !adapter || Boolean(adapter.info?.isFallbackAdapter);
}

/** The builds this browser can run for a detector on the CPU or not, best first. */
function candidates(onCpu) {
  const relaxed = WebAssembly.validate(RELAXED_SIMD_PROBE);
  const threads = onCpu && self.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
  return BUILDS.filter((b) => (relaxed || !b.relaxed) && (threads || !b.threads));
}

/** Pool threads: one per logical core (the calling worker waits while they work). */
const poolSize = () => Math.max(1, self.navigator?.hardwareConcurrency || 4);

/**
 * Starts the pool; rejects when it is not running within 30 s, so that a browser whose nested
 * workers never start (the pool's workers are started from this one) falls back to a
 * one-thread build instead of waiting forever. Starting takes well under a second here.
 */
function startPool(glue) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the thread pool did not start')), 30_000);
    glue.initThreadPool(poolSize()).then(resolve, reject).finally(() => clearTimeout(timer));
  });
}

// Each build is instantiated at most once per worker, and its thread pool started at most once
// (a pool cannot be started twice): build name → promise of [its bindings, its exports], and
// build name → promise of its running pool.
const started = new Map();
const pools = new Map();

function start(build) {
  if (!started.has(build.name)) {
    started.set(build.name, (async () => {
      const glue = await import(`./${build.dir}/duoclip.js`);
      return [glue, await glue.default()];
    })());
  }
  return started.get(build.name);
}

function pool(build, glue) {
  if (!pools.has(build.name)) pools.set(build.name, startPool(glue));
  return pools.get(build.name);
}

/**
 * [build, its bindings, its exports]: the first candidate that starts here. Its pool starts
 * only `forModel`: registry() may run on a build the model then does not use, and a module
 * cannot be unloaded, but one without a model or pool is small.
 */
async function instantiate(onCpu, forModel) {
  const builds = candidates(onCpu);
  for (const build of builds) {
    try {
      const [glue, exports] = await start(build);
      if (forModel && build.threads) await pool(build, glue);
      return [build, glue, exports];
    } catch (e) {
      // Not on this site, or refused by this browser after all: the next build serves.
      if (build === builds.at(-1)) throw e;
    }
  }
}

// The chosen build ({name, threads, ...}), its bindings (WebDetector, registry, ...) and its
// instance's exports (the memory).
let wasmBuild = null;
let wasm = null;
let wasmExports = null;
let detector = null;
// Kept so a WebGPU failure can re-create the detector on the CPU without asking the page.
let model = null;
const post = (message, transfer = []) => self.postMessage(message, transfer);

/**
 * The module for a detector on `device` (registry(): whatever `auto` would load). Until a
 * model is loaded the worker may switch builds (registry() ran on another); after that it
 * keeps its build (a WebGPU failure then falls back to the CPU in the same build).
 */
async function ensureWasm(device = 'auto', forModel = false) {
  if (wasm && model) return;
  [wasmBuild, wasm, wasmExports] = await instantiate(await runsOnCpu(device), forModel);
}

/** Bytes of the wasm linear memory: it only grows, so this is the peak so far. */
const wasmMemoryBytes = () => wasmExports.memory.buffer.byteLength;

async function info(det) {
  return {
    wasmMemoryBytes: wasmMemoryBytes(),
    wasmHeapInUseBytes: wasm.heapInUse(),
    wasmBuild: wasmBuild.name,
    wasmDir: wasmBuild.dir, // for the service worker, to keep this build offline
    wasmThreads: wasmBuild.threads ? poolSize() : 1,
    device: det.device,
    precision: det.precision,
    deviceNote: det.deviceNote || autoNote,
    imageSize: det.imageSize,
    hasTextTower: det.hasTextTower,
    anchorSets: det.anchorSets(),
    textTowerRuns: det.textTowerRuns,
  };
}

// Why `auto` chose the CPU although WebGPU exists (the wasm reports the other reasons).
let autoNote = '';

/**
 * `auto` skips a software fallback adapter (e.g. SwiftShader): it is slower than the CPU path.
 * A threaded build has no WebGPU to try, so without an adapter it is told `cpu` and the reason
 * the wasm would have given.
 */
async function resolveAuto(device) {
  autoNote = '';
  if (device !== 'auto') return device;
  const adapter = await self.navigator?.gpu?.requestAdapter().catch(() => null);
  if (!adapter) {
    if (!wasmBuild.threads) return device;
    autoNote = self.navigator?.gpu
      ? 'running on the CPU: no WebGPU adapter'
      : 'running on the CPU: this browser has no WebGPU (navigator.gpu is missing)';
    return 'cpu';
  }
  if (!adapter.info?.isFallbackAdapter) return device;
  autoNote = 'the only WebGPU adapter is a software fallback, slower than the CPU path ' +
    '(choose the WebGPU device to use it anyway)';
  return 'cpu';
}

/** `precision` is the caller's for the device it chose; a fallback to the CPU passes `auto`. */
async function create(device, id, precision = 'auto') {
  post({ id, type: 'progress', stage: 'init', done: 0, total: 1 });
  detector?.free?.();
  detector = null;
  const chosen = await resolveAuto(device);
  detector = await guarded(wasm.WebDetector.create(model.weights, model.anchors, model.manifest, chosen,
    model.hfConfig, chosen === device ? precision : 'auto'));
  if (model.sha256) detector.setModelId(model.sha256);
  post({ id, type: 'progress', stage: 'init', done: 1, total: 1 });
}

async function load({ id, weights, anchors, manifest, hfConfig, device, precision }) {
  await ensureWasm(device, true);
  model = { weights, anchors, manifest, hfConfig };
  try {
    await create(device, id, precision);
  } catch (e) {
    // `auto` promises a working device: WebGPU failing while the model is prepared (its
    // warm-up pass) leaves the CPU, with the reason shown. An explicit `webgpu` reports it.
    if (device !== 'auto' || isTrap(e) || e.code !== 'device') throw e;
    await create('cpu', id);
    autoNote = `WebGPU failed while preparing the model (${e.message}); running on the CPU`;
  }
  post({ id, type: 'ready', info: await info(detector) });
}

function run(kind, images, opts, onProgress, onResult) {
  if (kind === 'pair') return guarded(detector.scorePair(images[0], images[1], opts, onProgress, onResult));
  if (kind === 'set') return guarded(detector.scoreSet(images, opts, onProgress, onResult));
  return guarded(detector.scoreImage(images[0], opts, onProgress, onResult));
}

/** A wasm trap (a Rust panic or a failed allocation) leaves the instance unusable. */
const isTrap = (e) => e instanceof WebAssembly.RuntimeError;

// A trap inside an async wasm call is thrown from the microtask that polls the Rust future,
// not through the call's promise, which then never settles: it arrives here as an uncaught
// error instead, and fails the call in flight (the page then starts a fresh worker).
let failInFlight = null;
const onTrap = (error, event) => {
  if (!isTrap(error) || !failInFlight) return;
  event.preventDefault(); // handled: the page hears it as the request's error, not a dead worker
  failInFlight(error);
};
self.addEventListener('error', (event) => onTrap(event.error, event));
self.addEventListener('unhandledrejection', (event) => onTrap(event.reason, event));

/** The promise of a wasm call, or the trap that aborts the module while it runs. */
function guarded(promise) {
  return new Promise((resolve, reject) => {
    failInFlight = reject;
    promise.then(resolve, reject).finally(() => {
      failInFlight = null;
    });
  });
}

/** Sends one image's finished result to the page; its map moves there (this copy is dropped). */
function sendItem(id, index, r) {
  const moved = [r.map.buffer, ...(r.display ? [r.display.pixels.buffer] : [])];
  post({ ...r, id, type: 'item', index }, moved);
}

/**
 * A trap caused by an allocation the wasm memory could not satisfy becomes a clear
 * `out_of_memory` error with the numbers; any other trap is passed on as it is.
 */
async function explainTrap(e) {
  let failed = 0;
  try {
    failed = wasm.failedAllocation();
  } catch {
    return e; // the module cannot even answer that: report the trap itself
  }
  if (!failed) return e;
  const mb = (n) => `${Math.round(n / 1e6)} MB`;
  return Object.assign(new Error(
    `the browser could not give the detector ${mb(failed)} more memory (its wasm memory was ` +
    `already ${mb(wasmMemoryBytes())}; a tab's wasm memory ends at 4.3 GB, and less ` +
    'when the device is short of memory). Score fewer or smaller images at a time.',
  ), { code: 'out_of_memory' });
}

// ---------------------------------------------------------------- stored text anchors
// Anchors the text tower computed (a registry model, picked weights, an object the bundle
// lacks: ~20 s for a ViT-B on the CPU) are kept in Cache Storage under a name the wasm gives
// (it hashes the weights' sha256, domain, object, the exact prompts and the code version) and
// handed back on the next visit, so the tower runs once per model and object, not per visit.
// A browser that refuses Cache Storage costs only that reuse.
const ANCHOR_CACHE = 'duoclip-anchors';
const anchorUrl = (name) => `https://duoclip.invalid/anchors/${name}`;

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

/** Gives the detector its stored anchors for `opts` when it would run the text tower; true if it did. */
async function restoreAnchors(opts) {
  if (!detector.needsTextTower(opts)) return false;
  model.sha256 ??= hex(await crypto.subtle.digest('SHA-256', model.weights));
  detector.setModelId(model.sha256);
  const name = detector.storedAnchorsName(opts);
  try {
    const cache = await caches.open(ANCHOR_CACHE);
    const hit = await cache.match(anchorUrl(name));
    if (!hit) return false;
    if (detector.addStoredAnchors(opts, new Uint8Array(await hit.arrayBuffer()))) return true;
    await cache.delete(anchorUrl(name)); // damaged or stale: computed and stored afresh
  } catch {
    // no Cache Storage here: the text tower runs
  }
  return false;
}

/** Stores the anchors the last call computed. */
async function storeAnchors() {
  const computed = detector.takeStoredAnchors();
  if (computed.length === 0) return;
  try {
    const cache = await caches.open(ANCHOR_CACHE);
    for (const { name, bytes } of computed) {
      await cache.put(anchorUrl(name), new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } }));
    }
  } catch {
    // quota or no Cache Storage: the next visit computes them again
  }
}

async function score({ id, kind, images, opts }) {
  if (!detector) throw Object.assign(new Error('no model is loaded yet'), { code: 'bad_option' });
  const onProgress = (done, total) => post({ id, type: 'progress', stage: 'score', done, total });
  if (detector.needsTextTower(opts) && !await restoreAnchors(opts)) {
    // The text tower runs first in the call; its end is the first image's progress.
    post({ id, type: 'progress', stage: 'prompts', done: 0, total: 1 });
  }
  const onResult = (index, r) => sendItem(id, index, r);
  let fallback = null;
  let results;
  try {
    results = await run(kind, images, opts, onProgress, onResult);
  } catch (e) {
    // After a trap the detector must not be touched (its Rust borrow is still held).
    if (isTrap(e) || e.code !== 'device' || detector.device !== 'webgpu') throw e;
    fallback = `WebGPU failed while scoring (${e.message}); re-ran on the CPU.`;
    await create('cpu', id);
    await restoreAnchors(opts);
    results = await run(kind, images, opts, onProgress, onResult);
  }
  await storeAnchors();
  post({ id, type: 'result', info: await info(detector), fallback, count: results.length });
}

async function handle(message) {
  const { id, type } = message;
  try {
    if (type === 'registry') {
      await ensureWasm();
      post({ id, type: 'registry', models: wasm.registry(), version: wasm.version(), wasmDir: wasmBuild.dir });
    } else if (type === 'load') {
      await load(message);
    } else if (type === 'score') {
      await score(message);
    } else if (type === 'calibrate') {
      await ensureWasm();
      post({ id, type: 'calibrate', info: wasm.calibrate(Float32Array.from(message.scores), Float32Array.from(message.peaks), message.falseAlarm) });
    } else if (type === 'inspect') {
      await ensureWasm();
      post({ id, type: 'inspect', info: await guarded(wasm.inspectFile(message.file, message.opts)) });
    } else {
      throw Object.assign(new Error(`unknown request type ${type}`), { code: 'internal' });
    }
  } catch (e) {
    const trap = isTrap(e);
    const error = trap ? await explainTrap(e) : e;
    post({ id, type: 'error', code: error?.code ?? 'internal', message: String(error?.message ?? error), trap });
  }
}

let queue = Promise.resolve();
self.onmessage = ({ data }) => {
  queue = queue.then(() => handle(data));
};
