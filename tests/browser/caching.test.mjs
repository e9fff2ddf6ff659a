// What the site downloads and keeps (issue #21), each test on a fresh browser profile and a
// copy of www/ it may change (site-copy.mjs):
// - before the first click the page fetches its shell and exactly one wasm build;
// - after one visit the page loads the tiny model and scores with the server gone;
// - a rebuilt site (another build id) replaces the old shell cache; a rebuild missing a shell
//   file fails to install and the old version keeps serving;
// - an aborted load rejects with "cancelled", ends its worker and caches nothing;
// - a verified model file is not hashed again when read from the cache, and a download's
//   progress is reported at most once per percent.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { startSite } from './harness.mjs';
import { openApiPage, siteCopy } from './site-copy.mjs';
import { tinyManifest } from './tiny-model.mjs';

const MODEL_CACHE = 'duoclip-models-v1'; // www/model-files.js
const TIMEOUT = 60_000;

/** Starts a browser on a copy of the site; `body` gets both and the copy is removed after. */
async function withSite(options, body) {
  const copy = siteCopy(options);
  const site = await startSite({ root: copy.root });
  try {
    return await body(site, copy);
  } finally {
    if (site.consoleLines.length) console.log(`browser console:\n  ${site.consoleLines.join('\n  ')}`);
    assert.deepEqual(site.offsite, [], 'no request left 127.0.0.1');
    await site.close();
    copy.remove();
  }
}

/** Polls `check` (in Node) until it returns something truthy. */
async function until(check, what, timeout = TIMEOUT) {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Waits until the server has answered nothing new for `ms`. */
async function quiet(site, ms) {
  let seen = -1;
  await until(async () => {
    const now = site.served.length;
    const still = now === seen;
    seen = now;
    if (!still) await new Promise((resolve) => setTimeout(resolve, ms));
    return still;
  }, 'the page to stop fetching');
}

/** The site's service worker, registered (again: the page does it too) and controlling the page. */
const controlledBySw = (page) => page.evaluate(async () => {
  await navigator.serviceWorker.register('sw.js');
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller) {
    await new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
  }
});

/** Cache name → the site paths it holds. */
const cacheContents = (page) => page.evaluate(async () => {
  const out = {};
  for (const name of await caches.keys()) {
    const keys = await (await caches.open(name)).keys();
    out[name] = keys.map((r) => new URL(r.url).pathname.slice(1)).sort();
  }
  return out;
});

/**
 * What the shell cache `name` (else the only one) holds once it holds a wasm build: { shell:
 * its paths, wasm: its duoclip_bg.wasm files }. The page asks for its build to be kept after
 * it started it, so this waits.
 */
const keptWasm = (page, name) => until(async () => {
  const contents = await cacheContents(page);
  const shell = contents[name] ?? Object.entries(contents).find(([n]) => n.startsWith('duoclip-shell-'))?.[1];
  const wasm = wasmFiles(shell ?? []);
  return wasm.length > 0 && { shell, wasm };
}, 'the wasm build to be kept');

const wasmFiles = (paths) => [...new Set(paths.map((p) => p.split('?')[0]).filter((p) => p.endsWith('duoclip_bg.wasm')))];

/**
 * Loads the tiny model on the CPU and scores the fixture pair, through the module the page
 * itself imports; returns the scores and the progress events.
 */
const loadAndScore = (page) => page.evaluate(async () => {
  const { Detector } = await import('./duoclip.js');
  const events = [];
  const detector = await Detector.load({ model: 'models/tiny/', device: 'cpu', onProgress: (e) => events.push(e) });
  const image = async (name) => (await fetch(`fixtures/${name}`)).blob();
  const results = await detector.scorePair(await image('image.png'), await image('image_big.png'),
    { domain: 'object', object: 'bottle' });
  detector.dispose();
  return { scores: results.map((r) => r.score), events };
});

describe('caching (tiny model)', { concurrency: false }, () => {
  test('before the first click: the shell and one wasm build, no other', async () => {
    await withSite({}, async (site, copy) => {
      const page = await site.context.newPage();
      await page.goto(site.url);
      await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
      await until(() => wasmFiles(site.served).length > 0, 'the page to fetch a wasm build');
      await quiet(site, 2000);
      const wasm = wasmFiles(site.served);
      assert.equal(wasm.length, 1, `exactly one wasm build fetched, not ${wasm.join(', ')}`);
      // Each file's body once: later requests for it are revalidations (the server answers 304).
      const files = [...new Set(site.served.map((p) => p.split('?')[0]))];
      const bytes = files.reduce((sum, p) => sum + statSync(path.join(copy.root, p.endsWith('/') ? `${p}index.html` : p)).size, 0);
      console.log(`before the first click: ${files.length} files, ${(bytes / 1e6).toFixed(2)} MB; ` +
        `wasm build ${wasm[0]} (${(statSync(path.join(copy.root, wasm[0])).size / 1e6).toFixed(2)} MB)`);
      // The build the page runs is kept for offline use, though fetched before the service
      // worker controlled the page.
      const { wasm: kept } = await keptWasm(page);
      assert.deepEqual(kept, [wasm[0].slice(1)], 'the shell cache holds that build and no other');
    });
  });

  test('after one visit the page loads the model and scores with the server gone', async () => {
    await withSite({}, async (site) => {
      const page = await site.context.newPage();
      await page.goto(site.url);
      await controlledBySw(page);
      const online = await loadAndScore(page);
      assert.equal(online.scores.length, 2);
      // Its wasm build started before the service worker controlled the page: going offline
      // before it is kept would test nothing but that race.
      await keptWasm(page);
      await quiet(site, 1000);
      await site.context.setOffline(true);
      try {
        const served = site.served.length;
        await page.reload();
        const offline = await loadAndScore(page);
        assert.deepEqual(offline.scores, online.scores, 'the same scores offline');
        // The browser's own update check of the service worker (sw.js and what it imports,
        // asked of the server: the page registers it with updateViaCache 'none') is not
        // offline-emulated by Chromium; on a real offline machine it simply fails.
        const reached = site.served.slice(served).filter((p) => !/^\/(sw|build-id)\.js(\?|$)/.test(p));
        assert.deepEqual(reached, [], 'nothing but the update check reached the server');
      } finally {
        await site.context.setOffline(false);
      }
    });
  });

  test('a rebuild replaces the shell cache; a rebuild missing a shell file does not install', async () => {
    await withSite({ buildId: 'build-one' }, async (site, copy) => {
      const page = await site.context.newPage();
      await page.goto(site.url);
      await controlledBySw(page);
      const { shell: first } = await keptWasm(page, 'duoclip-shell-build-one');

      /** Reloads, asks for an update, and waits until the new version installed or failed. */
      const update = async () => {
        await page.reload();
        return page.evaluate(async () => {
          const registration = await navigator.serviceWorker.getRegistration();
          await registration.update().catch(() => {});
          const worker = registration.installing ?? registration.waiting;
          if (worker) {
            await new Promise((resolve) => {
              const settled = () => ['activated', 'redundant'].includes(worker.state) && resolve();
              worker.addEventListener('statechange', settled);
              settled();
            });
          }
          return (await caches.keys()).filter((name) => name.startsWith('duoclip-shell-')).sort();
        });
      };

      copy.setBuildId('build-two');
      rmSync(path.join(copy.root, 'style.css'));
      assert.deepEqual(await update(), ['duoclip-shell-build-one'], 'a failed install leaves the old version');
      assert.deepEqual((await cacheContents(page))['duoclip-shell-build-one'], first, 'and its cache as it was');

      copy.restore('style.css');
      assert.deepEqual(await update(), ['duoclip-shell-build-two'], 'the new version replaced the old cache');
      const second = (await cacheContents(page))['duoclip-shell-build-two'];
      assert.deepEqual(wasmFiles(second), wasmFiles(first), 'the build this browser ran was fetched again at install');
    });
  });

  test('an aborted load rejects with "cancelled", ends its worker and caches nothing', async () => {
    await withSite({}, async (site, copy) => {
      // A bundle whose weights take a while: 64 MB, the abort comes with the first progress.
      const big = path.join(copy.root, 'big');
      mkdirSync(big);
      const weights = Buffer.alloc(64 << 20);
      writeFileSync(path.join(big, 'model.safetensors'), weights);
      const manifest = tinyManifest();
      manifest.weights = { ...manifest.weights, bytes: weights.length, sha256: createHash('sha256').update(weights).digest('hex') };
      delete manifest.anchors;
      writeFileSync(path.join(big, 'manifest.json'), JSON.stringify(manifest));

      const { page, detectors } = await openApiPage(site);
      const outcome = await page.evaluate(async (cacheName) => {
        const { Detector } = window.duoclip;
        const abortAt = async (model, when) => {
          const controller = new AbortController();
          const events = [];
          const onProgress = (e) => {
            events.push(e);
            if (when(e)) controller.abort();
          };
          try {
            await Detector.load({ model, device: 'cpu', signal: controller.signal, onProgress });
            return { resolved: true };
          } catch (e) {
            return { code: e.code, message: e.message, events };
          }
        };
        const download = await abortAt('big/', (e) => e.stage === 'download' && e.done > 0);
        const init = await abortAt('models/tiny/', (e) => e.stage === 'init');
        const before = await Detector.load({ model: 'models/tiny/', signal: AbortSignal.abort() })
          .then(() => ({ resolved: true }), (e) => ({ code: e.code }));
        const cached = (await (await caches.open(cacheName)).keys()).map((r) => new URL(r.url).pathname);
        return { download, init, before, cached };
      }, MODEL_CACHE);

      assert.equal(outcome.download.code, 'cancelled', JSON.stringify(outcome.download));
      const last = outcome.download.events.at(-1);
      assert.ok(last.stage === 'download' && last.done < last.total, `stopped mid-download: ${JSON.stringify(last)}`);
      assert.equal(outcome.init.code, 'cancelled', JSON.stringify(outcome.init));
      assert.equal(outcome.init.events.at(-1).stage, 'init');
      assert.deepEqual(outcome.before, { code: 'cancelled' });
      // The tiny bundle's files, verified before its load was aborted in the worker, are kept;
      // nothing of the aborted download is.
      assert.deepEqual(outcome.cached.sort(), ['/models/tiny/anchors.safetensors', '/models/tiny/model.safetensors']);
      await until(() => detectors.length === 2 && detectors.every((d) => d.closed), 'both workers to end');
    });
  });

  test('a verified file is not hashed again; download progress at most once per percent', async () => {
    await withSite({}, async (site, copy) => {
      const weights = Buffer.alloc(64 << 20, 7);
      writeFileSync(path.join(copy.root, 'zeros.safetensors'), weights);
      const { page } = await openApiPage(site);
      const [first, second] = [await loadAndScore(page), await loadAndScore(page)];
      const files = ['model.safetensors', 'anchors.safetensors'];
      const stages = (events, file) => events.filter((e) => e.file === file).map((e) => `${e.stage}${e.cached ? ' (cached)' : ''}`);
      for (const file of files) {
        assert.ok(stages(first.events, file).includes('verify'), `first load checks ${file}`);
        assert.deepEqual(stages(second.events, file), ['download (cached)'], `second load reads ${file} unchecked`);
      }
      assert.deepEqual(second.scores, first.scores);
      const vouched = await page.evaluate(async (cacheName) => {
        const hit = await (await caches.open(cacheName)).match('models/tiny/model.safetensors');
        return hit.headers.get('X-Duoclip-Sha256');
      }, MODEL_CACHE);
      assert.equal(vouched, tinyManifest().weights.sha256);

      // A 64 MB file whose size the server announces: progress once per percent at most.
      const events = await page.evaluate(async () => {
        const seen = [];
        await window.duoclip.Detector.load({ model: 'zeros.safetensors', device: 'cpu', onProgress: (e) => seen.push(e) })
          .catch(() => {}); // not a model: only its download matters here
        return seen.filter((e) => e.stage === 'download');
      });
      const percents = events.map((e) => Math.floor((100 * e.done) / e.total));
      assert.ok(events.length >= 2 && events.length <= 101, `${events.length} progress events`);
      assert.ok(percents.every((p, i) => i === 0 || p > percents[i - 1]), `percents rise: ${percents}`);
      assert.deepEqual(events.at(-1), {
        stage: 'download', file: 'zeros.safetensors', done: weights.length, total: weights.length, cached: false, approximate: false,
      });
    });
  });
});
