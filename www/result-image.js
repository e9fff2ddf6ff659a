// The image under a result's map, decoded for the screen or an export: the file itself where
// the browser can draw it (PNG, JPEG, WebP, BMP), else the picture the model saw, which the
// wasm sends with the result (`display`: DICOM, NIfTI, TIFF and 16-bit images, windowed).

/** `item`'s image as an ImageBitmap (at most `size` px square where given); a grey field of the map's size if nothing decodes. */
export async function resultBitmap(item, size) {
  const resize = size ? { resizeWidth: size, resizeHeight: size } : {};
  try {
    if (item.display) return await createImageBitmap(displayPixels(item.display), resize);
    return await createImageBitmap(item.file, resize);
  } catch {
    return greyField(size ?? item.width, size ?? item.height);
  }
}

/** The wasm's grey (1 channel) or RGB (3) picture as ImageData. */
function displayPixels({ width, height, channels, pixels }) {
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0, j = 0; i < width * height; i++, j += channels) {
    rgba[4 * i] = pixels[j];
    rgba[4 * i + 1] = pixels[j + (channels === 3 ? 1 : 0)];
    rgba[4 * i + 2] = pixels[j + (channels === 3 ? 2 : 0)];
    rgba[4 * i + 3] = 255;
  }
  return new ImageData(rgba, width, height);
}

function greyField(width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#777';
  ctx.fillRect(0, 0, width, height);
  return canvas.transferToImageBitmap();
}
