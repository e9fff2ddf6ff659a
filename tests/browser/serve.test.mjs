// scripts/serve.mjs: the MIME types browsers insist on, the cross-origin isolation headers,
// and no file outside the served folder.

import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { serve } from '../../scripts/serve.mjs';
import { tempDir } from './harness.mjs';

let server;
let base;
const outside = tempDir('duoclip-serve-');
const root = path.join(outside, 'site');

before(async () => {
  mkdirSync(path.join(root, 'pkg'), { recursive: true });
  writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>t</title>');
  writeFileSync(path.join(root, 'pkg', 'm.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  writeFileSync(path.join(root, 'app.js'), 'export {};');
  writeFileSync(path.join(outside, 'secret.txt'), 'not served');
  server = await serve({ root, port: 0 });
  base = server.url;
});

after(async () => {
  await server.close();
  rmSync(outside, { recursive: true, force: true });
});

/** A GET with the path sent exactly as written (fetch would normalize '..' away). */
function get(rawPath) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ hostname, port, path: rawPath, method: 'GET' }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('types and isolation headers', async () => {
  const cases = [['/pkg/m.wasm', 'application/wasm'], ['/app.js', 'text/javascript; charset=utf-8'],
    ['/', 'text/html; charset=utf-8']];
  for (const [p, type] of cases) {
    const res = await get(p);
    assert.equal(res.status, 200, p);
    assert.equal(res.headers['content-type'], type, p);
    assert.equal(res.headers['cross-origin-opener-policy'], 'same-origin', p);
    assert.equal(res.headers['cross-origin-embedder-policy'], 'require-corp', p);
  }
  assert.deepEqual([...(await get('/pkg/m.wasm')).body], [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
});

test('nothing outside the folder is served', async () => {
  for (const p of ['/../secret.txt', '/%2e%2e/secret.txt', '/pkg/..%2f..%2fsecret.txt']) {
    const res = await get(p);
    assert.notEqual(res.status, 200, p);
    assert.ok(!res.body.toString().includes('not served'), p);
  }
});

test('a folder without its slash is redirected; a missing file is 404', async () => {
  const res = await get('/pkg');
  assert.equal(res.status, 301);
  assert.equal(res.headers.location, '/pkg/');
  assert.equal((await get('/nope.js')).status, 404);
});
