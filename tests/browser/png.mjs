// PNG files for the browser tests, written here so that a test can ask for any size or
// content: 8-bit RGB, one IDAT, no filtering.

import { crc32, deflateSync } from 'node:zlib';

/** An RGB PNG of `width`×`height` whose pixel (x, y) is `pixel(x, y)` = [r, g, b]. */
export function png(width, height, pixel) {
  return encode(width, height, (y) => {
    const row = Buffer.alloc(1 + 3 * width); // filter byte 0: none
    for (let x = 0; x < width; x++) row.set(pixel(x, y), 1 + 3 * x);
    return row;
  });
}

/** A flat grey PNG: small on disk, large once decoded (one row, repeated). */
export function greyPng(width, height) {
  const row = Buffer.alloc(1 + 3 * width, 128);
  row[0] = 0; // filter: none
  return encode(width, height, () => row);
}

function encode(width, height, rowAt) {
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per channel
  header[9] = 2; // RGB
  const rows = Array.from({ length: height }, (_, y) => rowAt(y));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk('IHDR', header), chunk('IDAT', deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))]);
}

/** Width and height from a PNG's IHDR. */
export function pngSize(bytes) {
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}
