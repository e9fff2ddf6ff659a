// Benchmark (not a test): time to the first map for a registry-sized model on the wasm CPU,
// on a first visit (the text tower embeds a new object's prompts) and on the next (the page
// reads the anchors it stored then). A full-size random ViT-B-16-plus-240 with its text tower,
// converted to a bundle whose precomputed anchors are for another object.
//
//   node tests/browser/bench-first-map.mjs [--object screw] [--out bench-first-map.json]

import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { runDuoclip, startSite, tempDir } from './harness.mjs';
import { IMAGES } from './page-driver.mjs';
import { openApiPage, siteCopy } from './site-copy.mjs';

const { values: args } = parseArgs({
  options: {
    object: { type: 'string', default: 'screw' },
    out: { type: 'string', default: 'bench-first-map.json' },
  },
});

const bundle = path.join(tempDir('duoclip-first-map-'), 'model');
console.error('writing a random full-size bundle with its text tower …');
await runDuoclip(['convert', '--random', 'vit-b-16-plus-240', '--text', 'full', '--fp16',
  '--domains', 'object:bottle', '--out', bundle]);
const copy = siteCopy();
symlinkSync(bundle, path.join(copy.root, 'bench-model'));
const site = await startSite({ root: copy.root });
const images = IMAGES.map((f) => [...readFileSync(f)]);

/** One visit: a new page loads the bundle and scores the pair; seconds to load and to the first map. */
async function visit() {
  const { page } = await openApiPage(site);
  try {
    return await page.evaluate(async ([bytes, object]) => {
      const { Detector } = await import('./duoclip.js');
      const t0 = performance.now();
      const detector = await Detector.load({ model: 'bench-model/', device: 'cpu' });
      const t1 = performance.now();
      let first = null;
      const blobs = bytes.map((b) => new Blob([new Uint8Array(b)], { type: 'image/png' }));
      await detector.scorePair(blobs[0], blobs[1], {
        domain: 'object', object, onResult: () => { first ??= performance.now(); },
      });
      const out = {
        load_s: (t1 - t0) / 1000,
        first_map_s: (first - t1) / 1000,
        text_tower_runs: detector.textTowerRuns,
        build: detector.wasmBuild,
        threads: detector.wasmThreads,
      };
      detector.dispose();
      return out;
    }, [images, args.object]);
  } finally {
    await page.close();
  }
}

const cold = await visit();
console.error('first visit', cold);
const warm = await visit();
console.error('second visit', warm);
await site.close();
copy.remove();
writeFileSync(args.out, `${JSON.stringify({ object: args.object, cold, warm }, null, 1)}\n`);
