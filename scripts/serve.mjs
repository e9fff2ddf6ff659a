// A static file server for www/: the site needs no server logic, only correct MIME types (the
// browser refuses to compile .wasm served as anything but application/wasm) and the two headers
// that make the page cross-origin isolated. Binds to 127.0.0.1 only: the page is for this machine.
//
//   node scripts/serve.mjs [ROOT]      (PORT=8080, HOST=127.0.0.1 by default; PORT=0 picks a free one)
//
// Tests import serve() to run it in-process on a free port.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.safetensors': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
};

const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
  // Revalidate every time: a rebuilt www/pkg must never be mixed with a stale cached copy.
  'Cache-Control': 'no-cache',
};

const PLAIN = {
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-cache',
};

/** Resolves a request path inside root, or null when it would leave root. */
function resolveInside(root, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath.split('?')[0].split('#')[0]);
  } catch {
    return null;
  }
  const file = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  return file === root || file.startsWith(root + path.sep) ? file : null;
}

async function handle(root, req, res, headers) {
  const send = (status, body) => {
    res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'only GET and HEAD\n');
  let file = resolveInside(root, req.url);
  if (!file) return send(403, 'outside the served folder\n');
  let info = await stat(file).catch(() => null);
  if (info?.isDirectory()) {
    if (!req.url.split('?')[0].endsWith('/')) {
      res.writeHead(301, { ...headers, Location: req.url.split('?')[0] + '/' });
      return res.end();
    }
    file = path.join(file, 'index.html');
    info = await stat(file).catch(() => null);
  }
  if (!info?.isFile()) return send(404, `not found: ${req.url}\n`);
  const modified = info.mtime.toUTCString();
  if (req.headers['if-modified-since'] === modified) {
    res.writeHead(304, headers);
    return res.end();
  }
  res.writeHead(200, {
    ...headers,
    'Content-Type': MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
    'Content-Length': info.size,
    'Last-Modified': modified,
  });
  if (req.method === 'HEAD') return res.end();
  createReadStream(file).on('error', () => res.destroy()).pipe(res);
}

/** Starts serving root; resolves to { url, close() } once listening. */
/**
 * `isolation: false` leaves out the cross-origin isolation headers, as a plain static host
 * (GitHub Pages, an object store) would: the tests of the page's own isolation use it.
 */
export function serve({ root, port = 8080, host = '127.0.0.1', isolation = true }) {
  const absolute = path.resolve(root);
  const server = createServer((req, res) => {
    handle(absolute, req, res, isolation ? ISOLATION : PLAIN).catch((e) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`server error: ${e.message}\n`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: actual } = server.address();
      resolve({
        url: `http://${host}:${actual}/`,
        close: () => new Promise((done) => server.close(done)),
        server,
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = process.argv[2] ?? path.join(here, '..', 'www');
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? '127.0.0.1';
  serve({ root, port, host }).then(
    ({ url }) => console.log(`duoclip: serving ${root} on ${url} (Ctrl-C to stop)`),
    (e) => {
      console.error(`duoclip: cannot serve on ${host}:${port}: ${e.message}` +
        (e.code === 'EADDRINUSE' ? ' (set PORT=... to use another port)' : ''));
      process.exit(1);
    },
  );
}
