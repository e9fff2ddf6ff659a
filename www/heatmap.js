// Anomaly maps as pictures, the same colours as the CLI's overlay (src/overlay.rs): matplotlib's
// "inferno" at 9 stops, dark for low scores so the image stays visible underneath.

const INFERNO = [
  [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
  [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164],
];

/** Colour of t in [0, 1] (clamped), as [r, g, b] bytes. */
export function inferno(t) {
  const x = (Number.isNaN(t) ? 0 : Math.min(Math.max(t, 0), 1)) * (INFERNO.length - 1);
  const i = Math.min(Math.floor(x), INFERNO.length - 2);
  const f = x - i;
  return [0, 1, 2].map((c) => Math.round(INFERNO[i][c] + f * (INFERNO[i + 1][c] - INFERNO[i][c])));
}

/** Smallest and largest value over several maps (one colour scale for a whole run, like the CLI). */
export function mapRange(results) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const { map } of results) {
    for (const v of map) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return [lo, hi];
}

/**
 * The colour scale's ends: `run` (the lowest and highest value over `results`, like the CLI),
 * `fixed` (0 to 1, the range every map value lies in, so that a batch of good images stays
 * dark) or `custom` ([low, high] as given).
 */
export function scaleRange(mode, results, custom = [0, 1]) {
  if (mode === 'fixed') return [0, 1];
  if (mode === 'custom') return custom;
  return mapRange(results);
}

/** The map as a small canvas of its own grid (see mapImage), to be stretched over the image. */
export function mapCanvas(result, range, opacity, threshold) {
  const small = new OffscreenCanvas(result.width, result.height);
  small.getContext('2d').putImageData(mapImage(result, range, opacity, threshold), 0, 0);
  return small;
}

/**
 * The map as a w×h RGBA picture: inferno colour with `opacity` where the value is at least
 * `threshold` (a fraction of the range), transparent elsewhere.
 */
export function mapImage(result, range, opacity, threshold) {
  const { width, height, map } = result;
  const span = Math.max(range[1] - range[0], Number.MIN_VALUE);
  const data = new Uint8ClampedArray(width * height * 4);
  const alpha = Math.round(opacity * 255);
  for (let i = 0; i < map.length; i++) {
    const t = (map[i] - range[0]) / span;
    if (t < threshold) continue;
    const [r, g, b] = inferno(t);
    data.set([r, g, b, alpha], i * 4);
  }
  return new ImageData(data, width, height);
}

/**
 * Draws `image` (an ImageBitmap) on `canvas` with the map stretched over all of it: the model
 * resized the whole image to the map's grid, so the grid covers the whole picture.
 */
export function drawOverlay(canvas, image, result, { range, opacity, threshold }) {
  const ctx = canvas.getContext('2d');
  canvas.width = image.width;
  canvas.height = image.height;
  ctx.drawImage(image, 0, 0);
  if (opacity <= 0) return;
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(mapCanvas(result, range, opacity, threshold), 0, 0, canvas.width, canvas.height);
}

/** A horizontal colour bar; the labels are HTML next to it so they stay crisp. */
export function drawLegend(canvas, threshold) {
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  for (let x = 0; x < width; x++) {
    const [r, g, b] = inferno(x / Math.max(width - 1, 1));
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(x, 0, 1, height);
  }
  if (threshold > 0) {
    // Values under the threshold are not drawn: grey them out on the bar too.
    ctx.fillStyle = 'rgba(255,255,255,0.7)';
    ctx.fillRect(0, 0, Math.round(threshold * width), height);
  }
}
