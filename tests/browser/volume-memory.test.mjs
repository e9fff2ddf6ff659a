// A CT-sized volume in the browser (issue #22): a 512×512×300 int16 NIfTI (157 MB) scored with
// the tiny model on the CPU, in consecutive sets of 16 slices (mutual scoring of all 300 at once
// costs N²: minutes even for the tiny model). The wasm memory may grow by at most 1.3× the
// volume's int16 size over what the loaded model took: the file's bytes become the volume's
// voxels without a copy, and slices are decoded as they are scored, not all at once. The
// numbers go to the log (BENCHMARKS.md).
//
//   node --test tests/browser/volume-memory.test.mjs

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { startSite } from './harness.mjs';
import { openPage } from './page-driver.mjs';

const [X, Y, Z] = [512, 512, 300];
const SET_SIZE = 16;

describe('a 512×512×300 int16 volume', () => {
  let site;
  let page;

  before(async () => {
    site = await startSite();
    page = await openPage(site);
  });

  after(async () => {
    await site?.close();
  });

  test('is scored slice by slice within the model + 1.3× the volume', { timeout: 900_000 }, async () => {
    const r = await page.evaluate(async ([x, y, z, setSize]) => {
      // A NIfTI-1 file: a 348-byte header, 4 bytes of extension flag, then int16 voxels: an
      // ellipse of "tissue" (values around 40) in "air" (−1000), a brighter blob in some slices.
      const header = new DataView(new ArrayBuffer(352));
      header.setInt32(0, 348, true);
      [3, x, y, z, 1, 1, 1, 1].forEach((d, i) => header.setInt16(40 + 2 * i, d, true));
      header.setInt16(70, 4, true); // datatype int16
      header.setInt16(72, 16, true); // bitpix
      [1, 0.7, 0.7, 1.5, 1, 1, 1, 1].forEach((p, i) => header.setFloat32(76 + 4 * i, p, true));
      header.setFloat32(108, 352, true); // vox_offset
      [0x6e, 0x2b, 0x31, 0].forEach((c, i) => header.setUint8(344 + i, c)); // "n+1\0"
      const voxels = new Int16Array(x * y * z);
      for (let k = 0; k < z; k++) {
        for (let j = 0; j < y; j++) {
          for (let i = 0; i < x; i++) {
            const e = ((i - x / 2) / (0.4 * x)) ** 2 + ((j - y / 2) / (0.35 * y)) ** 2;
            const blob = (i - 300) ** 2 + (j - 200) ** 2 < 400 && k % 50 < 10;
            voxels[(k * y + j) * x + i] = e > 1 ? -1000 : blob ? 400 : 40 + ((i * 7 + j * 13 + k) % 23);
          }
        }
      }
      const file = new File([header.buffer, voxels.buffer], 'ct.nii');
      const { Detector } = await import('./duoclip.js');
      const detector = await Detector.load({ model: 'models/tiny/', device: 'cpu' });
      const loaded = detector.wasmMemoryBytes;
      const started = performance.now();
      const results = await detector.scoreSet([file], { domain: 'liver-ct', setSize });
      const out = {
        volumeBytes: voxels.byteLength,
        loaded,
        after: detector.wasmMemoryBytes,
        seconds: (performance.now() - started) / 1000,
        count: results.length,
        labels: [results[0].label, results.at(-1).label],
        build: detector.wasmBuild,
      };
      detector.dispose();
      return out;
    }, [X, Y, Z, SET_SIZE]);
    const mb = (n) => (n / 1e6).toFixed(1);
    console.log(`volume ${mb(r.volumeBytes)} MB: wasm memory ${mb(r.loaded)} MB with the model, ` +
      `${mb(r.after)} MB after scoring ${r.count} slices in ${r.seconds.toFixed(1)} s (${r.build}); ` +
      `growth ${(((r.after - r.loaded) / r.volumeBytes)).toFixed(2)}× the volume`);
    assert.equal(r.count, Z, 'every slice holds tissue: none is skipped as background');
    assert.deepEqual(r.labels, ['k=0', `k=${Z - 1}`]);
    assert.ok(r.after - r.loaded <= 1.3 * r.volumeBytes,
      `the wasm memory grew by ${mb(r.after - r.loaded)} MB, more than 1.3× the volume (${mb(1.3 * r.volumeBytes)} MB)`);
  });
});
