// The module-API half of example.html: draws two images, scores them as a pair with the tiny
// model, and shows the maps. Published as window.__example for the browser tests.
// example.html?device=cpu (or webgpu) picks the device for both halves; default auto.

import { Detector } from './duoclip.js';
import { drawOverlay, mapRange } from './heatmap.js';

const device = new URLSearchParams(location.search).get('device') ?? 'auto';
// Runs before duoclip-detector.js defines the element (module scripts run in document order),
// so the element loads on the same device.
document.getElementById('element-demo').setAttribute('device', device);

/** A striped "part"; with `scratch`, a bright diagonal line across it. */
function drawPart(scratch) {
  const canvas = new OffscreenCanvas(96, 96);
  const ctx = canvas.getContext('2d');
  for (let y = 0; y < 96; y += 8) {
    ctx.fillStyle = y % 16 ? '#5b6470' : '#7b8490';
    ctx.fillRect(0, y, 96, 8);
  }
  if (scratch) {
    ctx.strokeStyle = '#f4e04d';
    ctx.lineWidth = 5;
    ctx.beginPath();
    ctx.moveTo(20, 70);
    ctx.lineTo(70, 25);
    ctx.stroke();
  }
  return canvas.transferToImageBitmap();
}

async function main() {
  const status = document.getElementById('api-status');
  try {
    const detector = await Detector.load({ model: 'models/tiny/', device });
    const images = [drawPart(false), drawPart(true)];
    const results = await detector.scorePair(images[0], images[1], { domain: 'object', object: 'bottle' });
    const range = mapRange(results);
    const out = document.getElementById('api-output');
    for (const [i, result] of results.entries()) {
      const canvas = document.createElement('canvas');
      drawOverlay(canvas, images[i], result, { range, opacity: 0.5, threshold: 0 });
      out.append(canvas);
    }
    status.textContent = `On ${detector.device}: scores ${results.map((r) => r.score.toFixed(4)).join(' and ')}.`;
    window.__example = { device: detector.device, scores: results.map((r) => r.score) };
  } catch (e) {
    status.textContent = `Error (${e.code}): ${e.message}`;
    window.__example = { error: { code: e.code, message: e.message } };
  }
}

main();
