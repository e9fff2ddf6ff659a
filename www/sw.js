// Service worker: keeps the app shell so the page opens offline after one visit. Network first
// (a rebuilt site is picked up at once), the cache when the network fails. Model files are not
// kept here: model-files.js stores them, verified, in its own cache ("duoclip-models-v1"), which
// the offline fallback also searches.

const SHELL_CACHE = 'duoclip-shell-v1';
const SHELL = [
  './', 'index.html', 'style.css', 'app.js', 'results-view.js', 'heatmap.js', 'duoclip.js',
  'errors.js', 'model-files.js', 'worker.js', 'duoclip-detector.js', 'duoclip-detector.css',
  'example.html', 'example.js',
  ...['pkg', 'pkg-relaxed', 'pkg-threads', 'pkg-threads-relaxed']
    .flatMap((dir) => [`${dir}/duoclip.js`, `${dir}/duoclip_bg.wasm`]),
  'models/tiny/manifest.json',
];

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL_CACHE);
    // One by one: a missing optional file must not stop the rest from being kept.
    await Promise.all(SHELL.map((path) => cache.add(path).catch(() => {})));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

// Also the builds' JavaScript snippets (the threaded builds' pool worker), whose folder
// names carry a hash of the build: kept when first fetched.
const SNIPPET = /\/pkg[\w-]*\/snippets\//;
const isShell = (url) => SHELL.some((path) => new URL(path, self.registration.scope).href === url)
  || (url.startsWith(self.registration.scope) && SNIPPET.test(url.slice(self.registration.scope.length - 1)));

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(request);
      if (response.ok && isShell(request.url.split('?')[0])) {
        const copy = response.clone();
        event.waitUntil(caches.open(SHELL_CACHE).then((c) => c.put(request, copy)));
      }
      return response;
    } catch (offline) {
      const cached = await caches.match(request, { ignoreSearch: true });
      if (cached) return cached;
      throw offline;
    }
  })());
});
