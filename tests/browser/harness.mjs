// Shared pieces of the browser tests and the browser benchmark: the site's server, a headless
// Chromium with a fresh profile that may talk to nobody but that server, the native CLI, and
// a .npy reader.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

import { serve } from '../../scripts/serve.mjs';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// DUOCLIP_WWW serves another copy of the site (e.g. a release build kept elsewhere).
export const WWW = process.env.DUOCLIP_WWW ?? path.join(REPO, 'www');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** BROWSER.md's flags: no background traffic, and a (software) WebGPU adapter where one exists. */
const FLAGS = [
  '--no-sandbox', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--enable-unsafe-webgpu',
];

/**
 * More Chromium flags, space-separated, from DUOCLIP_CHROMIUM_FLAGS: for measurements such as
 * BENCHMARKS.md's `--js-flags=--no-wasm-dynamic-tiering` run; the tests set none.
 */
const extraFlags = () => (process.env.DUOCLIP_CHROMIUM_FLAGS ?? '').split(' ').filter(Boolean);

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/**
 * Starts the server for `root` on a free port (`isolation: false`: without the cross-origin
 * isolation headers, as a plain static host) and Chromium on a fresh profile. Every request the page
 * makes goes through `offsite`: anything not for the server's host is aborted and recorded, so
 * a test can assert that nothing left 127.0.0.1.
 */
export async function startSite({ root = WWW, isolation = true } = {}) {
  const server = await serve({ root, port: 0, isolation });
  const profile = tempDir('duoclip-chromium-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...FLAGS, ...extraFlags()],
    acceptDownloads: true,
  });
  const origin = new URL(server.url).origin;
  const offsite = [];
  const served = []; // paths the server answered, to tell downloads from cache reads
  server.server.on('request', (req) => served.push(req.url));
  const consoleLines = [];
  await context.route('**', (route) => {
    const url = route.request().url();
    if (url.startsWith(origin + '/') || url.startsWith('blob:') || url.startsWith('data:')) {
      return route.continue();
    }
    offsite.push(url);
    return route.abort('blockedbyclient');
  });
  context.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  context.on('weberror', (e) => consoleLines.push(`pageerror: ${e.error().message}`));
  return {
    url: server.url,
    context,
    offsite,
    served,
    consoleLines,
    async close() {
      await context.close();
      await server.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The native `duoclip` binary: $DUOCLIP_BIN, else a debug build in the usual places. */
export function duoclipBinary() {
  const candidates = [
    process.env.DUOCLIP_BIN,
    process.env.CARGO_TARGET_DIR && path.join(process.env.CARGO_TARGET_DIR, 'debug', 'duoclip'),
    path.join(REPO, 'target', 'debug', 'duoclip'),
  ].filter(Boolean);
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new Error(`no duoclip binary at ${candidates.join(', ')}: run \`cargo build\` or set DUOCLIP_BIN`);
  }
  return found;
}

const run = promisify(execFile);

/** Runs the CLI; `env` adds variables (e.g. DUOCLIP_CACHE for a private anchor cache). */
export async function runDuoclip(args, env = {}) {
  const { stdout, stderr } = await run(duoclipBinary(), args, {
    env: { ...process.env, ...env },
    maxBuffer: 64 << 20,
  });
  return { stdout, stderr };
}

/** Reads a little-endian float32 .npy (format 1.0/2.0, C order): { shape, data: Float32Array }. */
export function readNpy(file) {
  const buf = readFileSync(file);
  if (buf.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + headerLen);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1]
    .split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (descr !== '<f4' || fortran !== 'False' || !shape) {
    throw new Error(`${file}: expected little-endian float32 in C order, header ${header}`);
  }
  const offset = start + headerLen;
  const count = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset + offset, buf.byteOffset + offset + count * 4));
  return { shape, data };
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}
