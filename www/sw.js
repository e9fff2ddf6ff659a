// Service worker: keeps the app shell so the page opens offline after one visit. Network first
// (a rebuilt site is picked up at once), the cache when the network fails. Model files are not
// kept here: model-files.js stores them, verified, in its own cache ("duoclip-models-v1").
//
// One cache per build, "duoclip-shell-<build id>". build-id.js, written by scripts/build-id.sh
// (the last step of scripts/build-web.sh), names the build and lists the sha256 of each of its files; importing
// it makes this script's bytes change with every build, so the browser installs the new
// version, which fills its own cache and, once active, deletes the older ones. Install
// fetches only the shell (a few hundred kB): a wasm build (megabytes each, four of them) is
// kept when the page first runs it (duoclip.js asks), so only the one this browser runs is
// downloaded.
// A listed file is kept only when its bytes are this build's: a file fetched just after the
// site was rebuilt, while this older version still answers, is the newer build's and must not
// sit offline next to this build's worker.js (an old wasm never runs against a newer worker).

try {
  importScripts('build-id.js');
} catch {
  // A checkout served without a build: one cache named "dev", every file kept as fetched.
}
const BUILD = self.DUOCLIP_BUILD ?? 'dev';
const BUILD_FILES = self.DUOCLIP_BUILD_FILES ?? null;

const SHELL_PREFIX = 'duoclip-shell-';
const SHELL_CACHE = `${SHELL_PREFIX}${BUILD}`;
// A wasm build's folder (pkg/, pkg-relaxed/, pkg-threads/, pkg-threads-relaxed/) in a path.
const BUILD_DIR = /^(pkg[\w-]*)\//;
// The shell: the page and every file of the build outside the wasm builds (build-id.sh lists
// the site's html, js and css and the tiny model's manifest). Install fails if one cannot be
// fetched (a site copied in part), and the version installed before keeps serving. A checkout
// without a build precaches the page alone and keeps the rest as it is fetched.
const SHELL = ['./', ...Object.keys(BUILD_FILES ?? {}).filter((path) => !BUILD_DIR.test(path))];

/** A path inside the site, as build-id.js lists it (the folder itself is its index.html). */
const sitePath = (url) => url.slice(self.registration.scope.length).split(/[?#]/)[0] || 'index.html';

/** `no-cache`: revalidated with the server, never an older build from the HTTP cache. */
const fresh = (path) => new Request(path, { cache: 'no-cache' });

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const existed = await caches.has(SHELL_CACHE);
    const cache = await caches.open(SHELL_CACHE);
    try {
      await cache.addAll(SHELL.map(fresh)); // all or nothing
    } catch (e) {
      if (!existed) await caches.delete(SHELL_CACHE);
      throw e;
    }
    await Promise.all((await buildsKeptBefore()).map(keepBuild));
    await self.skipWaiting();
  })());
});

/**
 * The folders of the wasm builds an earlier version kept: the builds this browser runs. Kept
 * again at install, so the page still works offline right after an update.
 */
async function buildsKeptBefore() {
  const dirs = new Set();
  for (const name of await caches.keys()) {
    if (!name.startsWith(SHELL_PREFIX) || name === SHELL_CACHE) continue;
    for (const request of await (await caches.open(name)).keys()) {
      dirs.add(BUILD_DIR.exec(sitePath(request.url))?.[1]);
    }
  }
  dirs.delete(undefined);
  return [...dirs];
}

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const old = (await caches.keys()).filter((n) => n.startsWith(SHELL_PREFIX) && n !== SHELL_CACHE);
    await Promise.all(old.map((name) => caches.delete(name)));
    await self.clients.claim();
  })());
});

const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');

/**
 * Whether a fetched response belongs in this build's cache: not a model file (model-files.js
 * keeps those), and, for a file the build lists, not already there and this build's bytes.
 */
async function worthKeeping(cache, request, response) {
  const path = sitePath(request.url);
  if (response.status !== 200 || path.endsWith('.safetensors')) return false;
  const expected = BUILD_FILES?.[path];
  if (!expected) return true; // an extra page, or a checkout without a build
  if (await cache.match(request, { ignoreSearch: true })) return false; // kept at install or before
  return hex(await crypto.subtle.digest('SHA-256', await response.clone().arrayBuffer())) === expected;
}

async function keep(request, response) {
  const cache = await caches.open(SHELL_CACHE);
  if (await worthKeeping(cache, request, response)) await cache.put(request, response);
}

// The headers that make a page cross-origin isolated (shared memory: the threaded wasm builds),
// added to each response this worker serves where the host did not send them. A static host
// that cannot send headers (GitHub Pages, most object stores) so gets threads from the page's
// second load on (app.js reloads once); the site loads only its own files, which these allow.
const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

function isolated(response) {
  if (response.type === 'opaque' || response.status < 200) return response;
  const headers = new Headers(response.headers);
  for (const [name, value] of Object.entries(ISOLATION)) {
    if (!headers.has(name)) headers.set(name, value);
  }
  return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
}

async function networkFirst(event) {
  const { request } = event;
  try {
    const response = await fetch(request);
    event.waitUntil(keep(request, response.clone()).catch(() => {})); // a full disk: not kept
    return isolated(response);
  } catch (offline) {
    const cached = await (await caches.open(SHELL_CACHE)).match(request, { ignoreSearch: true });
    if (cached) return isolated(cached);
    throw offline;
  }
}

/** The files of the wasm build in `dir`, as build-id.js lists them (a checkout: the two). */
const buildFiles = (dir) => (BUILD_FILES
  ? Object.keys(BUILD_FILES).filter((path) => path.startsWith(`${dir}/`))
  : [`${dir}/duoclip.js`, `${dir}/duoclip_bg.wasm`]);

/**
 * Keeps the build a page runs (duoclip.js says which): fetched on a first visit before this
 * worker controlled the page, it went past the fetch handler. Revalidated, not downloaded
 * again: the browser's HTTP cache holds it from that fetch.
 */
async function keepBuild(dir) {
  const cache = await caches.open(SHELL_CACHE);
  const keepFile = async (path) => {
    if (await cache.match(path)) return;
    const request = fresh(path);
    await keep(request, await fetch(request));
  };
  // Offline or a full disk: the next visit's fetches keep it.
  await Promise.all(buildFiles(dir).map((path) => keepFile(path).catch(() => {})));
}

self.addEventListener('message', (event) => {
  const { type, dir } = event.data ?? {};
  if (type === 'keep-build' && BUILD_DIR.exec(`${dir}/`)?.[1] === dir) event.waitUntil(keepBuild(dir));
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || !request.url.startsWith(self.registration.scope)) return;
  event.respondWith(networkFirst(event));
});
