import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { removeStalePartials } from '../../common/stalePartials.js';
import { vigilCacheDir } from '../cacheDir.js';

/** A generated test card (red square on a blue screen), so `vigil chat` runs with no file at hand. */
export async function defaultTestImage(): Promise<string> {
  const file = path.join(vigilCacheDir(), 'images', 'test-card-red-on-blue.png');
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const square = await sharp({ create: { width: 256, height: 256, channels: 3, background: '#ff0000' } }).png().toBuffer();
  removeStalePartials(file);
  const partial = `${file}.partial-${process.pid}`;
  await sharp({ create: { width: 640, height: 480, channels: 3, background: '#0000ff' } })
    .composite([{ input: square, left: 192, top: 112 }])
    .png()
    .toFile(partial);
  fs.renameSync(partial, file);
  return file;
}
