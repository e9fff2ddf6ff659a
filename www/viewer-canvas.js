// One pane of the result viewer: a canvas that shows an image (and the map stretched over all
// of it, as the model saw the whole image) at a zoom and pan. The canvas keeps the image's
// aspect and fits the space it has: half the row each in the two-up view, and never taller
// than most of the window, so the controls stay in sight. Two panes share one `view`.

const MAX_ZOOM = 32;

export class ViewerCanvas {
  constructor(canvas) {
    this.canvas = canvas;
    /** zoom 1 = the whole image fits; (cx, cy) = the image point at the canvas's centre. */
    this.view = { zoom: 1, cx: null, cy: null };
    this.image = null;
  }

  fit() {
    this.view = { zoom: 1, cx: null, cy: null };
  }

  /** Zooms by `factor` about `at` (an image point; the centre when absent). */
  zoom(factor, at) {
    const v = this.#resolved();
    const zoom = Math.min(Math.max(v.zoom * factor, 1), MAX_ZOOM);
    const [px, py] = at ?? [v.cx, v.cy];
    // The point under the pointer stays under it: move the centre towards it by 1 − 1/f.
    const f = zoom / v.zoom;
    this.view = this.#clamped({ zoom, cx: px + (v.cx - px) / f, cy: py + (v.cy - py) / f });
  }

  /** Moves the picture by (dx, dy) CSS pixels, as a drag does. */
  pan(dx, dy) {
    const v = this.#resolved();
    const perPixel = this.image ? this.image.width / (this.canvas.clientWidth * v.zoom) : 1;
    this.view = this.#clamped({ ...v, cx: v.cx - dx * perPixel, cy: v.cy - dy * perPixel });
  }

  /** The image point under a pointer event, for zooming about it. */
  pointAt(event) {
    const rect = this.canvas.getBoundingClientRect();
    if (!this.image || !rect.width || event.clientX < rect.left || event.clientX > rect.right) return undefined;
    const v = this.#resolved();
    const perPixel = this.image.width / (rect.width * v.zoom);
    return [v.cx + (event.clientX - rect.left - rect.width / 2) * perPixel,
      v.cy + (event.clientY - rect.top - rect.height / 2) * perPixel];
  }

  /**
   * Draws `image` (and `map`, a small canvas, over all of it) into a share 1/columns of the
   * row, with the boxes of `result.regions` (in map pixels) outlined where given.
   */
  draw(image, map, columns, result) {
    this.image = image;
    this.#size(columns);
    const { canvas } = this;
    const ctx = canvas.getContext('2d');
    const v = this.#resolved();
    const scale = (canvas.width / image.width) * v.zoom;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(scale, 0, 0, scale, canvas.width / 2 - scale * v.cx, canvas.height / 2 - scale * v.cy);
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(image, 0, 0);
    if (map) ctx.drawImage(map, 0, 0, image.width, image.height);
    if (result?.regions) outline(ctx, result, image, scale);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
  }

  /** CSS size from the room there is; backing pixels at the screen's density. */
  #size(columns) {
    const { canvas, image } = this;
    const area = canvas.parentElement;
    const gap = columns > 1 ? 12 : 0;
    const room = Math.max((area.clientWidth - gap * (columns - 1)) / columns, 80);
    const tallest = Math.max(window.innerHeight * 0.7, 160);
    const width = Math.min(room, (tallest * image.width) / image.height);
    const height = (width * image.height) / image.width;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(width * dpr));
    const h = Math.max(1, Math.round(height * dpr));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
  }

  #resolved() {
    const { image, view } = this;
    if (!image) return { zoom: 1, cx: 0, cy: 0 };
    return { zoom: view.zoom, cx: view.cx ?? image.width / 2, cy: view.cy ?? image.height / 2 };
  }

  /** The centre stays where the zoomed picture still covers the canvas. */
  #clamped(v) {
    if (!this.image) return v;
    const halfW = this.image.width / (2 * v.zoom);
    const halfH = this.image.height / (2 * v.zoom);
    const clamp = (x, half, size) => Math.min(Math.max(x, half), size - half);
    return { zoom: v.zoom, cx: clamp(v.cx, halfW, this.image.width), cy: clamp(v.cy, halfH, this.image.height) };
  }
}

/** Region boxes, 2 screen pixels wide whatever the zoom, light on dark so they show on any map. */
function outline(ctx, { regions, width, height }, image, scale) {
  const [sx, sy] = [image.width / width, image.height / height];
  for (const [colour, px] of [['#000000', 4], ['#00e5ff', 2]]) {
    ctx.strokeStyle = colour;
    ctx.lineWidth = px / scale;
    for (const r of regions) ctx.strokeRect(r.x * sx, r.y * sy, r.width * sx, r.height * sy);
  }
}
