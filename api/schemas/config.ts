import { z } from 'zod';
import { StreamId } from './common.js';
import { streamSettingsShape } from './streams.js';

/** A camera in the config file: the same fields as `POST /v1/streams`, with the id required. */
export const CameraConfig = z.strictObject({
  ...streamSettingsShape,
  id: StreamId,
  source: z.string().trim().min(1).max(4096).meta({ description: 'May use ${VAR} placeholders (expanded from the environment when the stream starts; never stored expanded).' }),
});

const Cidr = z.string().min(1).max(64);

/** `vigil serve --config vigil.yaml`. Every string may use ${VAR} placeholders for environment variables. */
export const ServiceConfigSchema = z.strictObject({
  model: z.string().min(1).optional().meta({ description: 'Model folder or probe model name. Default probe-needle.' }),
  queryTaps: z
    .enum(['auto', 'off'])
    .optional()
    .meta({ description: "Query taps for retrieval: auto (default) exposes each decoder layer's pre-RoPE query (falling back to the question's keys when that fails); off always uses the keys." }),
  data: z.string().min(1).optional().meta({ description: 'Data folder. Default $VIGIL_DATA_DIR or ~/.local/share/vigil.' }),
  host: z.string().min(1).optional(),
  port: z.int().min(0).max(65535).optional(),
  auth: z
    .strictObject({
      tokens: z.array(z.string().min(16, 'API tokens must have at least 16 characters')).optional(),
      disabled: z.boolean().optional().meta({ description: 'No authentication at all: local use only.' }),
    })
    .optional(),
  urlPolicy: z
    .strictObject({
      allowedSchemes: z.array(z.enum(['rtsp', 'rtsps', 'http', 'https'])).min(1).optional(),
      allowPrivateNetworks: z.boolean().optional(),
      allowNetworks: z.array(Cidr).optional().meta({ description: 'CIDR ranges exempt from the private-network rule.' }),
      allowFilesDir: z.string().min(1).optional().meta({ description: 'Server-side video files may be read from this folder.' }),
    })
    .optional(),
  limits: z
    .strictObject({
      maxUploadBytes: z.int().min(1).optional(),
      maxBodyBytes: z.int().min(1024).optional(),
      maxStreams: z.int().min(1).optional(),
      questionsPerStream: z.int().min(1).optional(),
      questionsTotal: z.int().min(1).optional(),
    })
    .optional(),
  defaults: z
    .strictObject({
      fps: streamSettingsShape.fps,
      window: streamSettingsShape.window,
      sinks: streamSettingsShape.sinks,
      storage: streamSettingsShape.storage,
      gate: streamSettingsShape.gate,
      budget: streamSettingsShape.budget,
      tiers: streamSettingsShape.tiers,
    })
    .optional(),
  diskBudget: streamSettingsShape.budget.meta({ description: 'Disk budget of the whole data folder (every stream): shared equally among streams. Default: none.' }),
  cameras: z.array(CameraConfig).optional(),
});

export type ServiceConfig = z.output<typeof ServiceConfigSchema>;
export type CameraConfigEntry = z.output<typeof CameraConfig>;
