// The wasm detector runs here so the page never blocks. Protocol (every message carries the id
// of the request it belongs to):
//   page → worker  {type:'registry'} | {type:'load', weights, anchors, manifest, hfConfig, device}
//                  | {type:'score', kind:'pair'|'set'|'image', images, opts}
//   worker → page  {type:'progress', stage, done, total} | {type:'ready', info}
//                  | {type:'registry', models} | {type:'result', results, info, fallback}
//                  | {type:'error', code, message, trap}
// Maps come back as transferables. Requests run one at a time, in arrival order.

import init, { WebDetector, registry } from './pkg/duoclip.js';

let wasmReady = null;
let detector = null;
// Kept so a WebGPU failure can re-create the detector on the CPU without asking the page.
let model = null;

const post = (message, transfer = []) => self.postMessage(message, transfer);

function ensureWasm() {
  wasmReady ??= init();
  return wasmReady;
}

/** Bytes of the wasm linear memory: it only grows, so this is the peak so far. */
async function wasmMemoryBytes() {
  const exports = await ensureWasm();
  return exports.memory.buffer.byteLength;
}

async function info(det) {
  return {
    wasmMemoryBytes: await wasmMemoryBytes(),
    device: det.device,
    deviceNote: det.deviceNote || autoNote,
    imageSize: det.imageSize,
    hasTextTower: det.hasTextTower,
    anchorSets: det.anchorSets(),
  };
}

// Why `auto` chose the CPU although WebGPU exists (the wasm reports the other reasons).
let autoNote = '';

/** `auto` skips a software fallback adapter (e.g. SwiftShader): it is slower than the CPU path. */
async function resolveAuto(device) {
  autoNote = '';
  if (device !== 'auto' || !self.navigator?.gpu) return device;
  const adapter = await self.navigator.gpu.requestAdapter().catch(() => null);
  if (!adapter?.info?.isFallbackAdapter) return device;
  autoNote = 'the only WebGPU adapter is a software fallback, slower than the CPU path ' +
    '(choose the WebGPU device to use it anyway)';
  return 'cpu';
}

async function create(device, id) {
  post({ id, type: 'progress', stage: 'init', done: 0, total: 1 });
  detector?.free?.();
  detector = null;
  const chosen = await resolveAuto(device);
  detector = await WebDetector.create(model.weights, model.anchors, model.manifest, chosen,
    model.hfConfig);
  post({ id, type: 'progress', stage: 'init', done: 1, total: 1 });
}

async function load({ id, weights, anchors, manifest, hfConfig, device }) {
  await ensureWasm();
  model = { weights, anchors, manifest, hfConfig };
  await create(device, id);
  post({ id, type: 'ready', info: await info(detector) });
}

function run(kind, images, opts, onProgress) {
  if (kind === 'pair') return detector.scorePair(images[0], images[1], opts, onProgress);
  if (kind === 'set') return detector.scoreSet(images, opts, onProgress);
  return detector.scoreImage(images[0], opts, onProgress);
}

/** A wasm trap (a Rust panic) leaves the instance unusable; only a fresh worker recovers. */
const isTrap = (e) => e instanceof WebAssembly.RuntimeError;

async function score({ id, kind, images, opts }) {
  if (!detector) throw Object.assign(new Error('no model is loaded yet'), { code: 'bad_option' });
  const onProgress = (done, total) => post({ id, type: 'progress', stage: 'score', done, total });
  let results;
  let fallback = null;
  try {
    results = await run(kind, images, opts, onProgress);
  } catch (e) {
    if (detector.device !== 'webgpu' || isTrap(e) || e.code !== 'device') throw e;
    fallback = `WebGPU failed while scoring (${e.message}); re-ran on the CPU.`;
    await create('cpu', id);
    results = await run(kind, images, opts, onProgress);
  }
  const plain = results.map((r) => ({ score: r.score, width: r.width, height: r.height, map: r.map }));
  post({ id, type: 'result', results: plain, info: await info(detector), fallback },
    plain.map((r) => r.map.buffer));
}

async function handle(message) {
  const { id, type } = message;
  try {
    if (type === 'registry') {
      await ensureWasm();
      post({ id, type: 'registry', models: registry() });
    } else if (type === 'load') {
      await load(message);
    } else if (type === 'score') {
      await score(message);
    } else {
      throw Object.assign(new Error(`unknown request type ${type}`), { code: 'internal' });
    }
  } catch (e) {
    post({
      id,
      type: 'error',
      code: e?.code ?? 'internal',
      message: String(e?.message ?? e),
      trap: isTrap(e),
    });
  }
}

let queue = Promise.resolve();
self.onmessage = ({ data }) => {
  queue = queue.then(() => handle(data));
};
