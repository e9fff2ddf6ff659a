// What the results panel exports. Every file says what made it: the app's version, the model's
// name and sha256, device, options, colour scale and threshold, and the time. The PNG is the
// overlay at the image's own resolution with a band below it holding the legend, the score and
// the threshold, so it reads correctly when it is all that is left of a run.

import { drawLegend, mapCanvas, mapRange } from './heatmap.js';
import { resultBitmap } from './result-image.js';
import { zip } from './zip.js';

const BAND_FONT = 14;
const MIN_WIDTH = 480; // narrower images are scaled up so that the band's text stays legible

/** The overlay of one result (its decoded `bitmap`) with its legend band, as a PNG Blob. */
export async function overlayPng(item, bitmap, settings, meta) {
  const scale = Math.max(1, MIN_WIDTH / bitmap.width);
  const w = Math.round(bitmap.width * scale);
  const h = Math.round(bitmap.height * scale);
  const band = BAND_FONT * 6;
  const canvas = new OffscreenCanvas(w, h + band);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(bitmap, 0, 0, w, h);
  if (settings.opacity > 0) {
    ctx.drawImage(mapCanvas(item, settings.range, settings.opacity, settings.threshold), 0, 0, w, h);
  }
  drawBand(ctx, item, settings, meta, { y: h, width: w });
  return canvas.convertToBlob({ type: 'image/png' });
}

function drawBand(ctx, item, { range: [lo, hi], threshold }, meta, { y, width }) {
  const pad = 8;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, y, width, BAND_FONT * 6);
  ctx.fillStyle = '#111111';
  ctx.font = `${BAND_FONT}px sans-serif`;
  ctx.textBaseline = 'top';
  const line = (text, row) => ctx.fillText(text, pad, y + pad + row * (BAND_FONT + 4), width - 2 * pad);
  line(`${item.name}: image score ${item.score.toFixed(4)} (higher = more anomalous)` +
    (item.verdict ? `, ${item.verdict} (${item.regions.length} region(s) outlined)` : ''), 0);
  line(`${meta.model?.name ?? 'model'} sha256 ${(meta.model?.sha256 ?? 'unknown').slice(0, 16)}… · duoclip ${meta.version ?? '?'}`, 1);
  const bar = new OffscreenCanvas(256, 12);
  drawLegend(bar, threshold);
  const barY = y + pad + 2 * (BAND_FONT + 4) + 4;
  const labelW = 56;
  ctx.fillText(lo.toFixed(3), pad, barY - 1);
  ctx.drawImage(bar, pad + labelW, barY, width - 2 * pad - 2 * labelW, 12);
  ctx.fillText(hi.toFixed(3), width - pad - labelW + 6, barY - 1);
  const from = lo + threshold * (hi - lo);
  line(`colours span ${lo.toFixed(3)} … ${hi.toFixed(3)}; values below ${from.toFixed(3)} not drawn`, 3.3);
}

/** The record of a run: what made it and every image's score and map. */
export function runRecord(items, settings, meta) {
  const [lo, hi] = settings.range;
  return {
    tool: 'duoclip',
    version: meta.version ?? null,
    created: new Date().toISOString(),
    model: meta.model,
    device: meta.device,
    precision: meta.precision ?? null,
    options: meta.options,
    colour_scale: { mode: settings.mode, range: settings.range },
    threshold: { fraction: settings.threshold, value: lo + settings.threshold * (hi - lo) },
    calibration: meta.calibration ?? null,
    images: items.map((it, i) => ({
      file: it.name, score: it.score, rank: rankOf(items, i), width: it.width, height: it.height,
      ...readAs(it), map: Array.from(it.map),
    })),
  };
}

/**
 * How a medical or wide-valued image was read, as the CLI's scores.json says it: its name
 * within the file, the window, and the identifying DICOM attributes withheld (a DICOM image's
 * `file` is its label alone: the file's name may carry the patient's).
 */
function readAs({ label, window, withheld, verdict, margin, regions }) {
  return {
    ...(label ? { label } : {}),
    ...(window ? { window } : {}),
    ...(withheld ? { withheld } : {}),
    // Regions' boxes are in map pixels (the map's width × height spans the whole image).
    ...(verdict ? { verdict, margin, regions } : {}),
  };
}

const rankOf = (items, i) => 1 + items.filter((it) => it.score > items[i].score).length;

/** One row per image (file, score, rank, the map's lowest and highest value, its size; verdict, margin and region count where calibrated). */
export function scoresCsv(items) {
  const decided = items.some((it) => it.verdict);
  const rows = items.map((it, i) => {
    const [lo, hi] = mapRange([it]);
    const verdict = decided ? [it.verdict, it.margin, it.regions.length] : [];
    return [csvField(it.name), it.score, rankOf(items, i), lo, hi, it.width, it.height, ...verdict].join(',');
  });
  const header = `file,score,rank,map_min,map_max,width,height${decided ? ',verdict,margin,regions' : ''}`;
  return [header, ...rows].join('\r\n') + '\r\n';
}

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
const csvField = (s) => (/[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);

export async function exportPng(item, bitmap, settings, meta) {
  download(await overlayPng(item, bitmap, settings, meta), `${stem(item.name)}-overlay.png`);
}

export function exportJson(items, settings, meta) {
  download(new Blob([JSON.stringify(runRecord(items, settings, meta))], { type: 'application/json' }),
    'duoclip-scores.json');
}

export function exportCsv(items) {
  download(new Blob([scoresCsv(items)], { type: 'text/csv' }), 'duoclip-scores.csv');
}

/**
 * Everything in one ZIP: scores.json, scores.csv and each image's overlay PNG. Images are
 * decoded one at a time and let go, so a large set does not fill the memory.
 */
export async function exportAll(items, settings, meta) {
  const files = [
    { name: 'scores.json', data: JSON.stringify(runRecord(items, settings, meta)) },
    { name: 'scores.csv', data: scoresCsv(items) },
  ];
  const names = uniqueNames(items.map((it) => `overlays/${stem(it.name)}-overlay.png`));
  for (const [i, item] of items.entries()) {
    const bitmap = await resultBitmap(item);
    const png = await overlayPng(item, bitmap, settings, meta);
    bitmap.close();
    files.push({ name: names[i], data: new Uint8Array(await png.arrayBuffer()) });
  }
  download(zip(files), 'duoclip-results.zip');
}

/** Same names get -2, -3, … (a folder can hold a.png in two subfolders). */
function uniqueNames(names) {
  const seen = new Map();
  return names.map((name) => {
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    return n === 1 ? name : name.replace(/(\.[^.]*)$/, `-${n}$1`);
  });
}

/** A file name from an image's name: its extension(s) dropped, "scan.nii.gz#k=12" → "scan_k_12". */
const stem = (name) => {
  const [file, label] = name.split('#');
  const base = file.replace(/\.(nii\.gz|[^.]*)$/i, '');
  return [base, label].filter(Boolean).join('_').replace(/[^\w.-]/g, '_') || 'image';
};

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
