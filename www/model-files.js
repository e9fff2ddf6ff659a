// Model files for duoclip.js: finding a model's bytes wherever `model` points (bundle URL,
// registry entry, picked files, a Blob or bytes), checking them against the sha256 and size the
// manifest or registry promises, and keeping downloads in Cache Storage for the next visit.

import { DuoclipError } from './errors.js';

const MODEL_CACHE = 'duoclip-models-v1';

// ---------------------------------------------------------------- downloads

/** Response header of a cached model file: the sha256 its bytes had when they were verified. */
const VERIFIED_SHA256 = 'X-Duoclip-Sha256';

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

export async function sha256(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

/** The error of a load whose AbortSignal fired: every step checks it before it goes on. */
export function throwIfCancelled(signal) {
  if (signal?.aborted) throw new DuoclipError('cancelled', 'the model load was cancelled');
}

async function openCache() {
  try {
    return await globalThis.caches?.open(MODEL_CACHE);
  } catch {
    return undefined; // storage disabled (private mode, opaque origin): download every time
  }
}

async function verify(bytes, expect, where) {
  if (expect.bytes != null && bytes.byteLength !== expect.bytes) {
    return `${where} has ${bytes.byteLength} bytes, expected ${expect.bytes}`;
  }
  if (!expect.sha256) return null;
  const actual = await sha256(bytes);
  return actual === expect.sha256.toLowerCase()
    ? null
    : `${where} has sha256 ${actual}, expected ${expect.sha256}`;
}

/**
 * Calls `onProgress` at most once per percent and per 250 ms (a screen reader's live region
 * must not be flooded), and always for the last call (`last`).
 */
function throttled(onProgress) {
  let shownAt = -Infinity;
  let shownPercent = -1;
  return (event, last = false) => {
    const now = performance.now();
    const percent = event.total ? Math.floor((100 * event.done) / event.total) : event.done;
    if (!last && (now - shownAt < 250 || percent === shownPercent)) return;
    shownAt = now;
    shownPercent = percent;
    onProgress?.(event);
  };
}

/**
 * A response body as one Uint8Array. With `sizeHint` (the promised or announced size) the
 * bytes are read straight into one buffer of that size: a model of gigabytes is never held
 * twice. A body longer than the hint (a wrong Content-Length) or without one grows the
 * buffer by half each time; a longer body than `limit` is refused before it is all read.
 */
async function readBody(response, { sizeHint, limit, where, onChunk, signal }) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer()); // a null-body status
  const reader = response.body.getReader();
  const stop = () => reader.cancel().catch(() => {});
  signal?.addEventListener('abort', stop, { once: true });
  try {
    let buffer = new Uint8Array(sizeHint ?? 1 << 20);
    let received = 0;
    for (;;) {
      const { done, value } = await reader.read();
      throwIfCancelled(signal);
      if (done) break;
      if (limit != null && received + value.byteLength > limit) {
        await stop();
        throw new DuoclipError('integrity', `${where} has more than ${limit} bytes, expected ${limit}; the file was not used`);
      }
      if (received + value.byteLength > buffer.byteLength) {
        buffer = grown(buffer, received, Math.max(received + value.byteLength, Math.ceil(buffer.byteLength * 1.5)));
      }
      buffer.set(value, received);
      received += value.byteLength;
      onChunk(received);
    }
    // Only a hint that was too large (or the growth's slack) leaves spare room: drop it.
    return received === buffer.byteLength ? buffer : buffer.slice(0, received);
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}

function grown(buffer, used, size) {
  const bigger = new Uint8Array(size);
  bigger.set(buffer.subarray(0, used));
  return bigger;
}

/** Asks once per page that the browser not evict the cached models under storage pressure. */
let persistAsked = false;
function askToPersist() {
  if (persistAsked) return;
  persistAsked = true;
  globalThis.navigator?.storage?.persist?.().catch(() => {}); // a refusal only risks eviction
}

/**
 * Keeps verified bytes for the next visit, with the sha256 they were verified against: Cache
 * Storage is private to this origin and only this module writes to it, so a copy carrying
 * the expected sha256 need not be hashed again (gigabytes take seconds to hash).
 */
async function store(cache, url, bytes, expect) {
  const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.byteLength) };
  if (expect.sha256) headers[VERIFIED_SHA256] = expect.sha256.toLowerCase();
  try {
    await cache.put(url, new Response(bytes, { headers }));
    askToPersist();
  } catch {
    // a full disk only costs the next visit a download
  }
}

/** A cached copy of `url` that is the expected file, or null (a stale copy is dropped). */
async function readCached(cache, url, expect, label, onProgress) {
  const hit = await cache?.match(url);
  if (!hit) return null;
  const bytes = new Uint8Array(await hit.arrayBuffer());
  const sizeOk = expect.bytes == null || bytes.byteLength === expect.bytes;
  const vouched = sizeOk && (expect.sha256 == null ||
    hit.headers.get(VERIFIED_SHA256) === expect.sha256.toLowerCase());
  if (!vouched) {
    onProgress?.({ stage: 'verify', file: label, done: 0, total: 1 });
    if (await verify(bytes, expect, label)) {
      await cache.delete(url); // stale copy of a file that changed on the server
      return null;
    }
    await store(cache, url, bytes, expect); // vouched for from now on
  }
  onProgress?.({
    stage: 'download', file: label, done: bytes.byteLength, total: bytes.byteLength, cached: true, approximate: false,
  });
  return bytes;
}

/**
 * Downloads `url` into memory with throttled progress. The total shown is the promised size,
 * else the announced one, else the registry's approximate size (`approximate: true`), which
 * is never used to check the file.
 */
async function download(url, expect, label, { onProgress, signal }) {
  const response = await fetch(url, { credentials: 'omit', signal });
  if (!response.ok) return { problem: `${url}: HTTP ${response.status}` };
  const announced = Number(response.headers.get('content-length')) || null;
  const sizeHint = expect.bytes ?? announced;
  const total = sizeHint ?? expect.approxBytes ?? null;
  const approximate = sizeHint == null && total != null;
  const report = throttled(onProgress);
  const event = (done) => ({ stage: 'download', file: label, done, total, cached: false, approximate });
  const bytes = await readBody(response, {
    sizeHint, limit: expect.bytes, where: `${label} from ${url}`, onChunk: (done) => report(event(done)), signal,
  });
  report(event(bytes.byteLength), true);
  return { bytes };
}

/**
 * The bytes of one model file: from Cache Storage when a verified copy is there, else
 * downloaded from the first URL that works, verified, and cached. `signal` (an AbortSignal)
 * stops the download; nothing is cached then.
 */
async function fetchModelFile(urls, expect, label, { onProgress, signal } = {}) {
  const cache = await openCache();
  for (const url of urls) {
    const bytes = await readCached(cache, url, expect, label, onProgress);
    if (bytes) return bytes;
  }
  const problems = [];
  for (const url of urls) {
    throwIfCancelled(signal);
    let got;
    try {
      got = await download(url, expect, label, { onProgress, signal });
    } catch (e) {
      throwIfCancelled(signal);
      if (e instanceof DuoclipError) throw e;
      problems.push(`${url}: ${e.message}`);
      continue;
    }
    if (got.problem) {
      problems.push(got.problem);
      continue;
    }
    onProgress?.({ stage: 'verify', file: label, done: 0, total: 1 });
    const problem = await verify(got.bytes, expect, `${label} from ${url}`);
    if (problem) throw new DuoclipError('integrity', `${problem}; the file was not used`);
    throwIfCancelled(signal); // a cancelled load leaves nothing behind, even a verified file
    if (cache) await store(cache, url, got.bytes, expect);
    return got.bytes;
  }
  throw new DuoclipError('network', `could not download ${label}: ${problems.join('; ')}`);
}

async function fetchText(url, signal) {
  let response;
  try {
    response = await fetch(url, { credentials: 'omit', signal });
  } catch (e) {
    throwIfCancelled(signal);
    throw new DuoclipError('network', `could not fetch ${url}: ${e.message}`);
  }
  if (!response.ok) throw new DuoclipError('network', `could not fetch ${url}: HTTP ${response.status}`);
  return response.text();
}

// ---------------------------------------------------------------- model sources

function parseManifest(text, where) {
  let manifest;
  try {
    manifest = JSON.parse(text);
  } catch (e) {
    throw new DuoclipError('bad_weights', `${where} is not JSON: ${e.message}`);
  }
  if (manifest?.format !== 'duoclip-bundle' || !manifest.weights?.file) {
    throw new DuoclipError('bad_weights',
      `${where} is not a duoclip bundle manifest (expected "format": "duoclip-bundle" and a ` +
      '"weights" entry; bundles are written by `duoclip convert`)');
  }
  return manifest;
}

/** A bundle on the web: manifest.json next to its weights and anchors files. */
async function loadBundleFromUrl(manifestUrl, io) {
  const text = await fetchText(manifestUrl, io.signal);
  const manifest = parseManifest(text, manifestUrl);
  const fileUrl = (name) => new URL(name, manifestUrl).href;
  const weights = await fetchModelFile([fileUrl(manifest.weights.file)], manifest.weights,
    manifest.weights.file, io);
  const anchors = manifest.anchors?.file
    ? await fetchModelFile([fileUrl(manifest.anchors.file)], manifest.anchors, manifest.anchors.file, io)
    : null;
  return { weights, anchors, manifest: text, label: manifest.name ?? manifestUrl, bundle: manifest };
}

/** A bundle picked from disk: the files are matched by the names the manifest gives. */
async function loadBundleFromFiles(files, { onProgress, signal }) {
  const byName = new Map(files.map((f) => [f.name, f]));
  const manifestFile = byName.get('manifest.json');
  if (!manifestFile) {
    const weightsFiles = files.filter((f) => /\.safetensors$/i.test(f.name));
    if (files.length === 1 || weightsFiles.length === 1) return loadWeightsBlob(weightsFiles[0] ?? files[0]);
    throw new DuoclipError('bad_weights',
      `picked ${files.map((f) => f.name).join(', ')}: pick one .safetensors weights file, or a ` +
      "bundle's manifest.json together with the files it names");
  }
  const text = await manifestFile.text();
  const manifest = parseManifest(text, 'manifest.json');
  const read = async (entry) => {
    const file = byName.get(entry.file);
    if (!file) {
      throw new DuoclipError('bad_weights',
        `manifest.json names ${entry.file}, which was not among the picked files`);
    }
    const bytes = new Uint8Array(await file.arrayBuffer());
    throwIfCancelled(signal);
    onProgress?.({ stage: 'verify', file: entry.file, done: 0, total: 1 });
    const problem = await verify(bytes, entry, entry.file);
    throwIfCancelled(signal);
    if (problem) throw new DuoclipError('integrity', problem);
    return bytes;
  };
  const weights = await read(manifest.weights);
  const anchors = manifest.anchors?.file ? await read(manifest.anchors) : null;
  return { weights, anchors, manifest: text, label: manifest.name ?? 'local bundle', bundle: manifest };
}

async function loadWeightsBlob(blob) {
  return {
    weights: new Uint8Array(await blob.arrayBuffer()),
    anchors: null,
    manifest: null,
    label: blob.name ?? 'weights',
    bundle: null,
  };
}

async function loadRegistryModel(entry, io) {
  if (!entry.browser) {
    throw new DuoclipError('not_in_browser',
      `${entry.name} cannot be loaded in the browser as published: its weights are a PyTorch ` +
      'pickle, a format the browser cannot read safely. Someone with the duoclip command-line ' +
      'tool converts them once into a browser bundle (its "duoclip convert" command); choose ' +
      "\"Local files\" and pick that bundle's manifest.json, model.safetensors and " +
      'anchors.safetensors.');
  }
  const weightsFile = entry.files.find((f) => /\.safetensors$/i.test(f.path));
  const configFile = entry.files.find((f) => f.path === 'config.json');
  // Hugging Face layouts keep their architecture in config.json; the wasm reads its text.
  const hfConfig = configFile
    ? new TextDecoder().decode(await fetchModelFile(configFile.urls, configFile, configFile.path, io))
    : null;
  const weights = await fetchModelFile(weightsFile.urls, weightsFile, weightsFile.path, io);
  return {
    weights,
    anchors: null,
    // The registry knows what the weights do not say (activation, input size).
    manifest: JSON.stringify({ format: 'duoclip-registry', name: entry.name }),
    hfConfig,
    label: entry.name,
    bundle: null,
  };
}

const isFileList = (x) => (typeof FileList !== 'undefined' && x instanceof FileList) ||
  (Array.isArray(x) && x.length > 0 && x.every((f) => f instanceof Blob));

/** Registry names: lowercase letters, digits, '-', '.', '_' (models/registry.toml). */
const REGISTRY_NAME = /^[a-z0-9][a-z0-9._-]*$/;

/**
 * Turns any accepted `model` value into the bytes the worker needs. `io`: { onProgress,
 * signal } (an AbortSignal: the load then rejects with code "cancelled").
 */
export async function resolveModel(model, io, lookupRegistry) {
  if (model instanceof ArrayBuffer || ArrayBuffer.isView(model)) {
    const view = model instanceof ArrayBuffer ? new Uint8Array(model)
      : new Uint8Array(model.buffer, model.byteOffset, model.byteLength);
    return { weights: view.slice(), anchors: null, manifest: null, label: 'weights', bundle: null };
  }
  if (isFileList(model)) return loadBundleFromFiles([...model], io);
  if (model instanceof Blob) return loadWeightsBlob(model);
  if (typeof model === 'string' || model instanceof URL) {
    const spec = String(model);
    const named = REGISTRY_NAME.test(spec) && !/\.(json|safetensors)$/.test(spec);
    const entry = named ? (await lookupRegistry()).find((e) => e.name === spec) : undefined;
    if (entry) return loadRegistryModel(entry, io);
    const url = new URL(spec, globalThis.document?.baseURI ?? location.href);
    if (url.pathname.endsWith('/')) return loadBundleFromUrl(new URL('manifest.json', url).href, io);
    if (url.pathname.endsWith('.json')) return loadBundleFromUrl(url.href, io);
    const weights = await fetchModelFile([url.href], {}, url.pathname.split('/').pop(), io);
    return { weights, anchors: null, manifest: null, label: spec, bundle: null };
  }
  throw new DuoclipError('bad_option',
    'model must be a URL, a registry name, a File/Blob, a list of bundle files, or an ArrayBuffer');
}
