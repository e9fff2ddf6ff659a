// Model files for duoclip.js: finding a model's bytes wherever `model` points (bundle URL,
// registry entry, picked files, a Blob or bytes), checking them against the sha256 and size the
// manifest or registry promises, and keeping downloads in Cache Storage for the next visit.

import { DuoclipError } from './errors.js';

const MODEL_CACHE = 'duoclip-models-v1';

// ---------------------------------------------------------------- downloads

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

export async function sha256(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
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

/** Reads a response body in chunks so the caller can show download progress. */
async function readWithProgress(response, total, onProgress) {
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.byteLength;
    onProgress?.(received, total);
  }
  const out = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * The bytes of one model file: from Cache Storage when a verified copy is there, else
 * downloaded from the first URL that works, verified, and cached.
 */
async function fetchModelFile(urls, expect, label, onProgress) {
  const cache = await openCache();
  for (const url of urls) {
    const hit = await cache?.match(url);
    if (!hit) continue;
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if (!(await verify(bytes, expect, label))) {
      onProgress?.({ stage: 'download', file: label, done: bytes.byteLength, total: bytes.byteLength, cached: true });
      return bytes;
    }
    await cache.delete(url); // stale copy of a file that changed on the server
  }
  const problems = [];
  for (const url of urls) {
    let response;
    try {
      response = await fetch(url, { credentials: 'omit' });
    } catch (e) {
      problems.push(`${url}: ${e.message}`);
      continue;
    }
    if (!response.ok) {
      problems.push(`${url}: HTTP ${response.status}`);
      continue;
    }
    const total = expect.bytes ?? (Number(response.headers.get('content-length')) || null);
    const bytes = await readWithProgress(response, total,
      (done, all) => onProgress?.({ stage: 'download', file: label, done, total: all, cached: false }));
    onProgress?.({ stage: 'verify', file: label, done: 0, total: 1 });
    const problem = await verify(bytes, expect, `${label} from ${url}`);
    if (problem) throw new DuoclipError('integrity', `${problem}; the file was not used`);
    await cache?.put(url, new Response(bytes, {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.byteLength) },
    })).catch(() => {}); // a full disk only costs the next visit a download
    return bytes;
  }
  throw new DuoclipError('network', `could not download ${label}: ${problems.join('; ')}`);
}

async function fetchText(url) {
  let response;
  try {
    response = await fetch(url, { credentials: 'omit' });
  } catch (e) {
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
async function loadBundleFromUrl(manifestUrl, onProgress) {
  const text = await fetchText(manifestUrl);
  const manifest = parseManifest(text, manifestUrl);
  const fileUrl = (name) => new URL(name, manifestUrl).href;
  const weights = await fetchModelFile([fileUrl(manifest.weights.file)], manifest.weights,
    manifest.weights.file, onProgress);
  const anchors = manifest.anchors?.file
    ? await fetchModelFile([fileUrl(manifest.anchors.file)], manifest.anchors, manifest.anchors.file, onProgress)
    : null;
  return { weights, anchors, manifest: text, label: manifest.name ?? manifestUrl, bundle: manifest };
}

/** A bundle picked from disk: the files are matched by the names the manifest gives. */
async function loadBundleFromFiles(files, onProgress) {
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
    onProgress?.({ stage: 'verify', file: entry.file, done: 0, total: 1 });
    const problem = await verify(bytes, entry, entry.file);
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

async function loadRegistryModel(entry, onProgress) {
  if (!entry.browser) {
    throw new DuoclipError('not_in_browser',
      `${entry.name} cannot be loaded by the browser as published. Convert it once on your ` +
      `machine with \`duoclip convert --model ${entry.name} --fp16 --out DIR\`, then pick the ` +
      "bundle's files (manifest.json, model.safetensors, anchors.safetensors) here.");
  }
  const weightsFile = entry.files.find((f) => /\.safetensors$/i.test(f.path));
  const configFile = entry.files.find((f) => f.path === 'config.json');
  // Hugging Face layouts keep their architecture in config.json; the wasm reads its text.
  const hfConfig = configFile
    ? new TextDecoder().decode(await fetchModelFile(configFile.urls, configFile, configFile.path, onProgress))
    : null;
  const weights = await fetchModelFile(weightsFile.urls, weightsFile, weightsFile.path, onProgress);
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

/** Turns any accepted `model` value into the bytes the worker needs. */
export async function resolveModel(model, onProgress, lookupRegistry) {
  if (model instanceof ArrayBuffer || ArrayBuffer.isView(model)) {
    const view = model instanceof ArrayBuffer ? new Uint8Array(model)
      : new Uint8Array(model.buffer, model.byteOffset, model.byteLength);
    return { weights: view.slice(), anchors: null, manifest: null, label: 'weights', bundle: null };
  }
  if (isFileList(model)) return loadBundleFromFiles([...model], onProgress);
  if (model instanceof Blob) return loadWeightsBlob(model);
  if (typeof model === 'string' || model instanceof URL) {
    const spec = String(model);
    const named = REGISTRY_NAME.test(spec) && !/\.(json|safetensors)$/.test(spec);
    const entry = named ? (await lookupRegistry()).find((e) => e.name === spec) : undefined;
    if (entry) return loadRegistryModel(entry, onProgress);
    const url = new URL(spec, globalThis.document?.baseURI ?? location.href);
    if (url.pathname.endsWith('/')) return loadBundleFromUrl(new URL('manifest.json', url).href, onProgress);
    if (url.pathname.endsWith('.json')) return loadBundleFromUrl(url.href, onProgress);
    const weights = await fetchModelFile([url.href], {}, url.pathname.split('/').pop(), onProgress);
    return { weights, anchors: null, manifest: null, label: spec, bundle: null };
  }
  throw new DuoclipError('bad_option',
    'model must be a URL, a registry name, a File/Blob, a list of bundle files, or an ArrayBuffer');
}
