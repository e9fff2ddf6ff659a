// duoclip in the browser: the public ES-module API.
//
//   import { Detector } from './duoclip.js';
//   const det = await Detector.load({ model: 'models/tiny/', device: 'auto', onProgress });
//   const [a, b] = await det.scorePair(blobA, blobB, { domain: 'object', object: 'bottle' });
//   // a = { score, width, height, map: Float32Array (height × width, row-major), file }
//
// Files: PNG, JPEG, TIFF (8/16-bit), WebP, BMP, DICOM and NIfTI (.nii, .nii.gz). A file of
// several images (a volume's slices, a DICOM file's frames) gives one result per image, in
// file order, its slices scored as a set; each result says its `file` (index in the call),
// `label` ("k=12", "series=3,instance=1,frame=1"), `stack` and `slice` (the images a viewer
// steps through together — a volume, a file's frames, a DICOM series' files — and the image's
// place there), `private` (DICOM: name it by label only),
// `window`, `withheld` (identifying DICOM attributes not passed on) and `display` ({width,
// height, channels, pixels}: the image the model saw, for files a browser cannot draw).
// Options `window` ("auto", "percentile", "file:N", "lung", "40,400"...), `sliceAxis`,
// `sliceStride` and `setSize` are the CLI's.
//
// `precision`: "auto" (f16 where WebGPU has shader-f16, else f32), "f32" or "f16" (WebGPU with
// shader-f16 only); `det.precision` says which runs.
// `model`: a bundle folder URL (ending in '/'), a manifest.json URL, a .safetensors URL, a
// registry name, a File/Blob (weights), a list of Files (a bundle's manifest.json +
// model.safetensors + anchors.safetensors), or an ArrayBuffer/Uint8Array (weights).
// Images: Blob/File, ImageBitmap, <img>/<canvas>, URL string, ArrayBuffer/Uint8Array.
// Without a model: `await registry()` (the built-in models) and `await version()` (this
// build's, e.g. "0.1.0").
// Downloads are verified against their sha256 and kept in Cache Storage, so a second visit
// reads them from disk without hashing them again (model-files.js). The wasm runs in a Web
// Worker (worker.js).
//
// `signal`: an AbortSignal (AbortController's) that cancels the load: aborted while the model
// downloads, is checked or starts in the worker, Detector.load rejects with code "cancelled",
// the download stops, the worker is ended, and nothing of that download stays in the cache.
// `onProgress(event)`: { stage: "download", file, done, total, cached, approximate } (bytes;
// `total` null when unknown, `approximate` true when it is the registry's rounded size; at
// most one event per percent and per 250 ms), { stage: "verify", file, done: 0, total: 1 }
// (the sha256 check of a file not checked before), { stage: "init", done, total: 1 } (the
// model prepared in the worker), and during scoring { stage: "prompts", done: 0, total: 1 } (the
// text tower embeds the prompts of a domain and object this model has no anchors for yet: once
// per model and object, then kept in Cache Storage for later visits) and { stage: "score", done,
// total } (images).
//
// Errors are DuoclipError with a stable `code`: from the model "bad_image", "bad_weights",
// "bad_option", "no_text_tower", "device", "internal", "out_of_memory"; from the JS side
// "network" (a download failed), "integrity" (sha256 or size differs from what the
// manifest/registry promises), "not_in_browser" (a registry model that must be converted
// first), "cancelled". A failed or cancelled score call's error has `partial`: the results
// ({index, score, width, height, map, file, ...}) finished before it stopped, e.g. the first images of a
// set too large for the memory, or of a folder whose run was cancelled. After a failure that
// broke the worker the detector has restarted it and reloaded the model: it can be used again
// at once. Score options may include `onResult({index, score, width, height, map})`, called
// as each image's result is final (a set with references: image by image); after a WebGPU
// failure the rerun on the CPU calls it again for the same indices.

import { DuoclipError } from './errors.js';
import { resolveModel, sha256, throwIfCancelled } from './model-files.js';

// Defined next door but part of this API: importers of duoclip.js keep finding them here.
export { DuoclipError, sha256 };

const WORKER_URL = new URL('./worker.js', import.meta.url);

/**
 * The worker is started from a tiny blob: module that imports worker.js. A worker loaded from
 * its own URL is governed by its response's CSP headers, which a static host does not send,
 * so the page's CSP <meta> would not bind it: it could fetch anything. A blob: worker inherits
 * the page's policy (CSP3: local-scheme workers take their creator's), so the same
 * connect-src list holds for the wasm too. Needs `worker-src 'self' blob:`.
 */
function startWorker() {
  const bootstrap = new Blob([`import ${JSON.stringify(WORKER_URL.href)};\n`], { type: 'text/javascript' });
  const url = URL.createObjectURL(bootstrap);
  try {
    // The fragment names it among the page's workers (a threaded build's pool adds its own).
    return new Worker(`${url}#duoclip-detector`, { type: 'module', name: 'duoclip detector' });
  } finally {
    // The worker has its own reference to the script once started: the page need not keep it.
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}

// ---------------------------------------------------------------- worker connection

/** One worker and its pending requests; `request` resolves on the matching reply. */
class WorkerLink {
  constructor() {
    this.worker = startWorker();
    this.pending = new Map();
    this.nextId = 1;
    this.worker.onmessage = ({ data }) => this.#reply(data);
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      this.#failAll(new DuoclipError('internal',
        `the detector worker stopped: ${event.message ?? 'script error'} (if this happens at ` +
        "start, this site's files are incomplete or out of date: its owner must rebuild it)"));
    };
  }

  /** `onItem` receives a score request's results one by one, as the worker finishes them. */
  request(message, transfer = [], onProgress, onItem) {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress, onItem });
      this.worker.postMessage({ ...message, id }, transfer);
    });
  }

  #reply(data) {
    const entry = this.pending.get(data.id);
    if (!entry) return;
    if (data.type === 'progress') {
      entry.onProgress?.({ stage: data.stage, done: data.done, total: data.total });
      return;
    }
    if (data.type === 'item') {
      entry.onItem?.(data);
      return;
    }
    this.pending.delete(data.id);
    if (data.type === 'error') {
      entry.reject(Object.assign(new DuoclipError(data.code, data.message), { trap: data.trap }));
    } else {
      entry.resolve(data);
    }
  }

  #failAll(error) {
    this.failure = error; // a dead worker answers nothing: later requests fail at once
    for (const { reject } of this.pending.values()) reject(error);
    this.pending.clear();
  }

  terminate(error) {
    this.worker.terminate();
    this.#failAll(error);
  }
}

// A worker started to answer registry() is handed to the next Detector.load: the wasm is then
// compiled once per page, not twice.
let spare = null;
const takeWorker = () => {
  const link = spare ?? new WorkerLink();
  spare = null;
  return link;
};

/**
 * Asks the site's service worker (sw.js) to keep the wasm build in `dir` for offline use: the
 * first visit's worker fetched it before the service worker controlled the page. Without a
 * service worker `ready` never settles, and nothing happens.
 */
function keepBuildOffline(dir) {
  globalThis.navigator?.serviceWorker?.ready
    .then((registration) => registration.active?.postMessage({ type: 'keep-build', dir }))
    .catch(() => {});
}

let registryPromise = null;

/**
 * What the wasm knows without a model, { models, version }: asked of `link` the first time,
 * then remembered.
 */
function registryFrom(link) {
  registryPromise ??= link.request({ type: 'registry' }).then(({ models, version, wasmDir }) => {
    keepBuildOffline(wasmDir);
    return { models, version };
  }, (e) => {
    registryPromise = null;
    throw e;
  });
  return registryPromise;
}

/** registryFrom() on a spare worker, which the next Detector.load takes over. */
function askSpare() {
  const link = (spare ??= new WorkerLink());
  return registryFrom(link).catch((e) => {
    if (spare === link) spare = null;
    link.terminate(e);
    throw e;
  });
}

/** The built-in model registry: [{name, arch, imageSize, license, notes, browser, files}]. */
export async function registry() {
  return (await askSpare()).models;
}

/** The version of duoclip this site runs (Cargo.toml's), e.g. for an export to say what made it. */
export async function version() {
  return (await askSpare()).version;
}

// ---------------------------------------------------------------- images

async function imageBytes(image, index) {
  if (image instanceof Blob) return new Uint8Array(await image.arrayBuffer());
  if (image instanceof ArrayBuffer) return new Uint8Array(image.slice(0));
  if (ArrayBuffer.isView(image)) {
    return new Uint8Array(image.buffer.slice(image.byteOffset, image.byteOffset + image.byteLength));
  }
  if (typeof image === 'string' || image instanceof URL) {
    const url = new URL(String(image), globalThis.document?.baseURI ?? location.href);
    let response;
    try {
      response = await fetch(url);
    } catch (e) {
      throw new DuoclipError('network', `image ${index + 1} (${url}): ${e.message}`);
    }
    if (!response.ok) throw new DuoclipError('network', `image ${index + 1} (${url}): HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }
  const drawable = typeof ImageBitmap !== 'undefined' && image instanceof ImageBitmap
    ? image
    : await createImageBitmap(image).catch(() => null);
  if (!drawable) {
    throw new DuoclipError('bad_image',
      `image ${index + 1} is a ${image?.constructor?.name ?? typeof image}; pass a Blob/File, ` +
      'ImageBitmap, <img>, <canvas>, URL or ArrayBuffer');
  }
  // The model decodes PNG/JPEG itself (same decoder as the CLI), so pixels go in as lossless PNG.
  const canvas = new OffscreenCanvas(drawable.width, drawable.height);
  canvas.getContext('2d').drawImage(drawable, 0, 0);
  const png = await canvas.convertToBlob({ type: 'image/png' });
  return new Uint8Array(await png.arrayBuffer());
}

const imagesBytes = (images) => Promise.all(images.map((im, i) => imageBytes(im, i)));

/**
 * What the worker gets for each image to score: a Blob/File as it is (cloning one to the
 * worker copies no bytes; the wasm reads each when its turn comes, so a large folder is never
 * all in memory), anything else as bytes.
 */
const imagesToScore = (images) =>
  Promise.all(images.map((im, i) => (im instanceof Blob ? im : imageBytes(im, i))));

// ---------------------------------------------------------------- Detector

/** A promise that rejects when `signal` aborts (never settles without one). */
const aborted = (signal) => new Promise((_, reject) => {
  signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
});

/** A failure the CPU may not have: WebGPU lost or broken (a trap included; memory aside). */
const isDeviceFailure = (e) => e?.code !== 'out_of_memory' && (e?.trap || e?.code === 'device');

export class Detector {
  #link = null;
  #source;
  #requestedDevice;
  #precision;
  #info = null;
  #ready = null;
  #onProgress;
  /** Bumped by cancel(): work started before it must not reach the fresh worker. */
  #generation = 0;
  /** The restart a cancel() began, until it settles: a second cancel() waits for it. */
  #restarting = null;

  /** What the caller passed, so Cancel can start a fresh worker and reload (from cache). */
  constructor(source, device, onProgress, precision = 'auto') {
    this.#source = source;
    this.#requestedDevice = device;
    this.#precision = precision;
    this.#onProgress = onProgress;
    /** Set when scoring had to leave WebGPU; says why. */
    this.fallbackNote = null;
    this.modelLabel = null;
    /** The bundle manifest (parsed) when the model came from a bundle. */
    this.manifest = null;
  }

  static async load({ model, device = 'auto', precision = 'auto', onProgress, signal } = {}) {
    if (!['auto', 'webgpu', 'cpu'].includes(device)) {
      throw new DuoclipError('bad_option', `device must be auto, webgpu or cpu, not ${device}`);
    }
    if (!['auto', 'f32', 'f16'].includes(precision)) {
      throw new DuoclipError('bad_option', `precision must be auto, f32 or f16, not ${precision}`);
    }
    if (model == null) throw new DuoclipError('bad_option', 'Detector.load needs { model }');
    throwIfCancelled(signal);
    const detector = new Detector(model, device, onProgress, precision);
    try {
      // An abort answers at once, even while a cached file is still being read (which cannot
      // be stopped); the load left running stops at its next step (model-files.js).
      await Promise.race([detector.#start(device, takeWorker(), signal), aborted(signal)]);
    } catch (e) {
      detector.dispose();
      throwIfCancelled(signal);
      throw e;
    }
    return detector;
  }

  /** `signal` only for the first load: a restart's reload is the detector's own. */
  #start(device, link, signal) {
    this.#link = link;
    this.#ready = (async () => {
      const io = { onProgress: this.#onProgress, signal };
      const resolved = await resolveModel(this.#source, io, async () => (await registryFrom(link)).models);
      throwIfCancelled(signal);
      this.modelLabel = resolved.label;
      this.manifest = resolved.bundle;
      const transfer = [resolved.weights.buffer, ...(resolved.anchors ? [resolved.anchors.buffer] : [])];
      const { info } = await link.request({
        type: 'load', weights: resolved.weights, anchors: resolved.anchors,
        manifest: resolved.manifest, hfConfig: resolved.hfConfig ?? null, device,
        // After WebGPU failed, the CPU runs whatever precision was asked for the GPU: auto.
        precision: device === this.#requestedDevice ? this.#precision : 'auto',
      }, transfer, this.#onProgress);
      this.#info = info;
      keepBuildOffline(info.wasmDir);
    })();
    this.#ready.catch(() => {});
    return this.#ready;
  }

  /** "webgpu" or "cpu": what the model actually runs on. */
  get device() { return this.#info?.device; }
  /** "f16" or "f32": the number format of the towers' linear layers on that device. */
  get precision() { return this.#info?.precision; }
  /** Why that device (e.g. "no WebGPU adapter; running on the CPU"). */
  get deviceNote() { return this.fallbackNote ?? this.#info?.deviceNote; }
  get imageSize() { return this.#info?.imageSize; }
  get hasTextTower() { return this.#info?.hasTextTower; }
  get anchorSets() { return this.#info?.anchorSets ?? []; }
  /**
   * Times this model's text tower has run since it was loaded: once per domain and object that
   * has neither precomputed anchors in the bundle nor stored ones from an earlier visit.
   */
  get textTowerRuns() { return this.#info?.textTowerRuns ?? 0; }
  /** Size of the wasm memory in bytes, the peak so far (wasm memory never shrinks). */
  get wasmMemoryBytes() { return this.#info?.wasmMemoryBytes; }
  /** Bytes the model's code has allocated and not freed, after the last call (leaks climb). */
  get wasmHeapInUseBytes() { return this.#info?.wasmHeapInUseBytes; }
  /**
   * The module build running: "relaxed-simd" (fused multiply-add) or "simd128", with "+threads"
   * for the CPU builds on a pool of workers (cross-origin isolated pages).
   */
  get wasmBuild() { return this.#info?.wasmBuild; }
  /** Threads the wasm CPU path computes on: the pool's workers in a threaded build, else 1. */
  get wasmThreads() { return this.#info?.wasmThreads; }

  /**
   * What a file holds before it is scored (no model needed once loaded):
   * { images, labels, private, domain: {name, because} | null } — a volume's slices or a DICOM
   * file's frames, their names, whether images are named by series/instance alone (DICOM), and
   * the prompt domain the file suggests. `opts`: window, sliceAxis, sliceStride.
   */
  async inspect(file, opts = {}) {
    await this.#ready;
    if (!this.#link) throw new DuoclipError('cancelled', 'the detector was disposed');
    const [input] = await imagesToScore([file]);
    return (await this.#link.request({ type: 'inspect', file: input, opts })).info;
  }

  /**
   * Thresholds for verdicts from known-good images (`goods`, files as score calls take them):
   * each is scored against the other good images (a set without references; one image, or the
   * anovl preset, alone) in the setting `opts` gives, then duoclip's rule (split conformal: a
   * good image is called anomalous with probability at most `falseAlarm`, default 0.05)
   * gives `{image, band, pixel, false_alarm, bound, good: {count, min, median, max, mad}}`.
   * Pass it as `opts.calibration` to score calls: results gain `verdict`, `margin` and
   * `regions`.
   */
  async calibrate(goods, opts = {}) {
    const { falseAlarm, references, calibration, onResult, ...rest } = opts;
    const results = goods.length > 1 ? await this.scoreSet(goods, rest) : await this.scoreImage(goods[0], rest);
    const peaks = results.map((r) => r.map.reduce((a, b) => Math.max(a, b), -Infinity));
    const reply = await this.#link.request({ type: 'calibrate', scores: results.map((r) => r.score), peaks, falseAlarm });
    return reply.info;
  }

  scorePair(a, b, opts = {}) { return this.#score('pair', [a, b], opts); }
  scoreSet(images, opts = {}) { return this.#score('set', [...images], opts); }
  scoreImage(a, opts = {}) { return this.#score('image', [a], opts); }

  async #score(kind, images, opts) {
    const { onProgress, onResult, references, ...rest } = opts;
    const generation = this.#generation;
    const inputs = await imagesToScore(images);
    const refs = references?.length ? await imagesBytes([...references]) : undefined;
    await this.#ready;
    if (generation !== this.#generation) throw new DuoclipError('cancelled', 'cancelled');
    if (!this.#link) throw new DuoclipError('cancelled', 'the detector was disposed');
    // Images are copied to the worker, not transferred: a WebGPU failure reruns with the same input.
    const message = { type: 'score', kind, images: inputs, opts: refs ? { ...rest, references: refs } : rest };
    const onDevice = this.device;
    // Every image's result as soon as it is final, kept here so that a failure, a Cancel or a
    // worker that stops answering loses none of them (a rerun's results replace earlier ones).
    const finished = new Map();
    const onItem = ({ type, id, index, ...result }) => {
      finished.set(index, result);
      onResult?.({ index, ...result });
    };
    const attempt = async () => {
      const reply = await this.#link.request(message, [], onProgress, onItem);
      return this.#finish(reply, finished);
    };
    try {
      try {
        return await attempt();
      } catch (e) {
        if (onDevice !== 'webgpu' || !isDeviceFailure(e)) throw e;
        // A trap poisons the wasm instance: a fresh worker on the CPU, same model, same images.
        await this.#restart('cpu', takeWorker());
        if (generation !== this.#generation) throw new DuoclipError('cancelled', 'cancelled');
        this.fallbackNote = `WebGPU failed while scoring (${e.message}); restarted on the CPU and re-ran.`;
        return await attempt();
      }
    } catch (e) {
      if (e.trap) await this.#recover(e);
      throw Object.assign(e, { partial: [...finished].sort(([a], [b]) => a - b).map(([index, r]) => ({ index, ...r })) });
    }
  }

  /**
   * After a trap (e.g. out of memory) the worker's wasm is unusable: a fresh worker reloads
   * the model (from Cache Storage or the picked files), so the next call works. If even that
   * fails, the error says so and the detector stays unusable.
   */
  async #recover(e) {
    try {
      await this.#restart(this.#device(), new WorkerLink());
    } catch (reload) {
      e.message += `; reloading the model afterwards failed too (${reload.message}): load it again`;
    }
  }

  /** The device a fresh worker should use: the CPU once WebGPU has failed, else the choice. */
  #device() {
    return this.fallbackNote ? 'cpu' : this.#requestedDevice;
  }

  /** The results in input order, from the items the worker sent before its `result`. */
  #finish({ info, fallback, count }, finished) {
    this.#info = info;
    if (fallback) this.fallbackNote = fallback;
    const results = Array.from({ length: count }, (_, i) => finished.get(i));
    const missing = results.findIndex((r) => !r);
    if (missing >= 0) throw new DuoclipError('internal', `the worker finished without the result of image ${missing + 1}`);
    return results;
  }

  async #restart(device, link) {
    this.#link?.terminate(new DuoclipError('cancelled', 'cancelled'));
    await this.#start(device, link);
  }

  /**
   * Stops the work in progress (its promise rejects with code "cancelled"), starts a fresh
   * worker and reloads the model — from Cache Storage or the picked files, not the network.
   * Called again before that reload is done, it returns the same promise: a second restart
   * would end the first's worker and fail its reload.
   */
  cancel() {
    this.#generation += 1;
    this.#restarting ??= this.#restart(this.#device(), new WorkerLink()).finally(() => {
      this.#restarting = null;
    });
    return this.#restarting;
  }

  /** Frees the worker and the model's memory. */
  dispose() {
    this.#link?.terminate(new DuoclipError('cancelled', 'the detector was disposed'));
    this.#link = null;
  }
}
