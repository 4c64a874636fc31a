import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PreprocessedImage } from '../../src/model/preprocess/imagePreprocessor.js';
import { VisionLanguageModel } from '../../src/model/visionLanguageModel.js';
import { haystackFrame, needleFrame, preprocessFrame } from './needleFrames.js';
import { probeModelDir } from './probeModels.js';

/** What the stream tests over probe-needle share: the model, a scratch folder, a haystack frame and a red-screen/green-square needle. */
export interface NeedleStreamParts {
  model: VisionLanguageModel;
  scratch: string;
  haystack: PreprocessedImage;
  needle: PreprocessedImage;
}

export async function loadNeedleStreamParts(scratchPrefix: string): Promise<NeedleStreamParts> {
  const model = await VisionLanguageModel.load(probeModelDir('probe-needle'));
  return {
    model,
    scratch: fs.mkdtempSync(path.join(os.tmpdir(), scratchPrefix)),
    haystack: await preprocessFrame(model, await haystackFrame()),
    needle: await preprocessFrame(model, await needleFrame({ background: 'red', square: 'green' })),
  };
}

export async function disposeNeedleStreamParts(parts: Partial<NeedleStreamParts>): Promise<void> {
  await parts.model?.dispose();
  if (parts.scratch) fs.rmSync(parts.scratch, { recursive: true, force: true });
}
