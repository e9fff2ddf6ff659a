// A ZIP archive of a few files, stored without compression (APPNOTE.TXT 6.3: local headers,
// data, central directory, end record; UTF-8 names, flag bit 11). PNGs are compressed already
// and the page has no bundler to bring a zip library in, so the ~60 lines here are the whole
// need. Sizes stay under 4 GiB (no ZIP64): the page's exports are far smaller.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (ISO 3309, as zlib's crc32) of `bytes`. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** files: [{ name, data: string | Uint8Array }] → a Blob of type application/zip. */
export function zip(files) {
  const encoder = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const { name, data } of files) {
    const bytes = typeof data === 'string' ? encoder.encode(data) : data;
    const nameBytes = encoder.encode(name);
    const crc = crc32(bytes);
    const local = header(0x04034b50, [20, 0x0800, 0, 0, 0x21], crc, bytes.length, nameBytes.length, []);
    parts.push(local, nameBytes, bytes);
    central.push({ nameBytes, crc, size: bytes.length, offset });
    offset += local.length + nameBytes.length + bytes.length;
  }
  let directory = 0;
  for (const { nameBytes, crc, size, offset: at } of central) {
    const entry = header(0x02014b50, [20, 20, 0x0800, 0, 0, 0x21], crc, size, nameBytes.length, [0, 0, 0, 0, 0, at]);
    parts.push(entry, nameBytes);
    directory += entry.length + nameBytes.length;
  }
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, central.length, true);
  end.setUint16(10, central.length, true);
  end.setUint32(12, directory, true);
  end.setUint32(16, offset, true);
  parts.push(new Uint8Array(end.buffer));
  return new Blob(parts, { type: 'application/zip' });
}

/**
 * A local (30 bytes) or central (46 bytes) header: signature, the 16-bit fields before the CRC
 * (versions, flags, method 0 = stored, time 0, date 0x21 = 1980-01-01), CRC, sizes, name
 * length, then (central only) extra, comment, disk, internal attributes (16-bit) and external
 * attributes and the local header's offset (32-bit).
 */
function header(signature, before, crc, size, nameLength, after) {
  const central = after.length > 0;
  const view = new DataView(new ArrayBuffer(central ? 46 : 30));
  let at = 0;
  const u16 = (v) => { view.setUint16(at, v, true); at += 2; };
  const u32 = (v) => { view.setUint32(at, v, true); at += 4; };
  u32(signature);
  before.forEach(u16);
  u32(crc);
  u32(size);
  u32(size);
  u16(nameLength);
  if (!central) {
    u16(0); // extra field length
    return new Uint8Array(view.buffer);
  }
  const [extra, comment, disk, internal, external, offset] = after;
  [extra, comment, disk, internal].forEach(u16);
  u32(external);
  u32(offset);
  return new Uint8Array(view.buffer);
}
